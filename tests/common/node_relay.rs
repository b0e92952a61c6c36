//! The tiny Node GUN relay in `tests/relay/` (npm `gun`, radisk in a temp dir), shared by the
//! real-GUN tests of every test binary. The first user installs its locked dependencies
//! (`npm ci`), whichever binary runs first.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

/// A running `tests/relay/server.js`, killed on drop.
pub struct NodeRelay {
    _child: Child,
    pub url: Url,
    _storage: tempfile::TempDir,
}

impl NodeRelay {
    /// Start the relay, installing its locked dependencies first if needed; `None` when node or
    /// npm is missing.
    pub async fn start() -> Option<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relay");
        if !runs("node").await {
            eprintln!("skipping real GUN tests: `node` is not installed (CI runs them on node 20)");
            return None;
        }
        if !dir.join("node_modules/gun").exists() {
            if !runs("npm").await {
                eprintln!("skipping real GUN tests: `npm` is not installed to fetch `gun`");
                return None;
            }
            install(&dir).await;
        }
        let storage = tempfile::tempdir().expect("temp dir for radisk");
        let mut child = Command::new("node")
            .arg("server.js")
            .current_dir(&dir)
            .env("RELAY_PORT", "0")
            .env("RELAY_DATA_DIR", storage.path())
            .env("RELAY_GET_WAIT", "1000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node server.js");
        let stdout = child.stdout.take().expect("piped stdout");
        let port = tokio::time::timeout(Duration::from_secs(20), listening_port(stdout))
            .await
            .expect("relay printed `listening <port>` within 20 s");
        Some(Self {
            _child: child,
            url: Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
            _storage: storage,
        })
    }
}

async fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

async fn install(dir: &PathBuf) {
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .await
        .expect("run npm ci");
    assert!(status.success(), "npm ci in tests/relay failed");
}

async fn listening_port(stdout: tokio::process::ChildStdout) -> u16 {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.expect("read relay stdout") {
        if let Some(port) = line.strip_prefix("listening ") {
            // Keep draining stdout so the relay never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return port.trim().parse().expect("a port number");
        }
    }
    panic!("relay exited before listening");
}
