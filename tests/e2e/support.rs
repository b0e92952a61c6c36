//! Test support for the sync, daemon, delete and discover tests: a `TestApp` with a fresh ledger
//! file, an in-process GUN relay emulator and a strict ES emulator, and helpers that run the real
//! `gunsync` binary against them. Waits are on conditions (`eventually`), never fixed sleeps.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use gunsync::domain::{Did, Soul};
use gunsync::emulator::es::EsEmulator;
use gunsync::emulator::relay::RelayEmulator;
use gunsync::ledger::{JobFilter, JobKind, JobState, JobView, Ledger, LedgerOptions};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[path = "../common/postgres.rs"]
mod postgres;
pub use postgres::PgTestDb;

pub const BIN: &str = env!("CARGO_BIN_EXE_gunsync");
/// The public key of the tests' publisher: every test soul starts with its hash, and the
/// deletions the tests seed are marked by it (so they pass verification).
pub const PUBLISHER_KEY: &str = "gunsync-test-publisher";

/// The publisher part of every test soul: the first 12 hex of sha256 of [`PUBLISHER_KEY`].
pub fn publisher() -> String {
    gunsync::domain::publisher_hash(PUBLISHER_KEY)
}

pub struct TestApp {
    /// Holds the ledger file; removed when the app is dropped.
    pub _dir: tempfile::TempDir,
    /// The SQLite ledger's file (unused when the app runs on PostgreSQL).
    pub db: PathBuf,
    /// A PostgreSQL database of this test's own, used instead of `db` when set.
    pub postgres: Option<PgTestDb>,
    pub relay: RelayEmulator,
    pub es: EsEmulator,
    /// Extra env for every command (overrides the defaults below).
    pub env: Vec<(String, String)>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gunsync.db");
        TestApp {
            _dir: dir,
            db,
            postgres: None,
            relay: RelayEmulator::start().await,
            es: EsEmulator::start().await.unwrap(),
            env: Vec::new(),
        }
    }

    /// As [`TestApp::start`], with the ledger in a fresh PostgreSQL database.
    pub async fn start_postgres() -> TestApp {
        let mut app = TestApp::start().await;
        app.postgres = Some(PgTestDb::create().await);
        app
    }

    /// What `GUNSYNC_DATABASE` says: the PostgreSQL URL, or the ledger file.
    pub fn database(&self) -> String {
        match &self.postgres {
            Some(db) => db.url.clone(),
            None => self.db.to_string_lossy().into_owned(),
        }
    }

    pub fn set(&mut self, name: &str, value: impl ToString) -> &mut Self {
        self.env.push((name.to_owned(), value.to_string()));
        self
    }

    /// The environment a command runs with: nothing inherited but PATH.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                if std::env::var("TEST_LOG").is_ok() {
                    "info,gunsync=debug"
                } else {
                    "warn"
                },
            )
            .env("GUNSYNC_DATABASE", self.database())
            .env("GUN_PEERS", self.relay.url().as_str())
            .env("ELASTICSEARCHHOST", self.es.url().as_str())
            .env("GUN_REGISTRY_TIMEOUT_MS", "5000")
            .env("GUNSYNC_BACKOFF_BASE_MS", "100")
            .env("GUNSYNC_BACKOFF_MAX_MS", "1000")
            .env("GUNSYNC_SYNCHRONOUS", "normal")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `gunsync <args>` to completion.
    pub async fn cli(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().await.unwrap();
        if std::env::var("TEST_LOG").is_ok() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        }
        output
    }

    /// Runs `gunsync <args>` and asserts exit 0.
    pub async fn cli_ok(&self, args: &[&str]) -> Output {
        let output = self.cli(args).await;
        assert!(
            output.status.success(),
            "gunsync {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts `gunsync <args>` without waiting for it (its output is discarded).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.spawn().unwrap()
    }

    /// Starts `gunsync run` on a free port.
    pub fn spawn_daemon(&self) -> Daemon {
        self.spawn_daemon_with(if std::env::var("TEST_LOG").is_err() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
    }

    /// Starts `gunsync run` with its stderr captured, for [`Daemon::exit_and_stderr`].
    pub fn spawn_daemon_capturing_stderr(&self) -> Daemon {
        self.spawn_daemon_with(Stdio::piped())
    }

    fn spawn_daemon_with(&self, stderr: Stdio) -> Daemon {
        let port = free_port();
        let mut cmd = self.command(&["run"]);
        cmd.env("GUNSYNC_LISTEN", format!("127.0.0.1:{port}"));
        cmd.stderr(stderr).stdout(Stdio::null());
        Daemon {
            child: cmd.spawn().unwrap(),
            port,
        }
    }

    /// The ledger, opened from the test process (WAL lets it read while the daemon writes).
    pub async fn ledger(&self) -> Ledger {
        Ledger::open(LedgerOptions::new(self.database()))
            .await
            .unwrap()
    }

    pub async fn jobs(&self, kind: JobKind) -> Vec<JobView> {
        let ledger = self.ledger().await;
        let jobs = ledger
            .list_jobs(&JobFilter {
                kind: Some(kind),
                limit: 1_000_000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        ledger.close().await;
        jobs
    }

    pub async fn count(&self, kind: JobKind, state: JobState) -> usize {
        self.jobs(kind)
            .await
            .iter()
            .filter(|j| j.state == state.as_str())
            .count()
    }

    /// Marks `did` deleted by the tests' publisher (a deletion that passes verification).
    pub fn seed_deletion(&self, did: &Did) {
        self.relay.seed_deletion(did, PUBLISHER_KEY).unwrap();
    }

    /// Seeds a valid OIP v0.8 record; returns its DID.
    pub fn seed_record(&self, local: &str, record_type: &str) -> Did {
        let soul = soul(local);
        self.relay
            .seed_record(
                soul.as_str(),
                record_type,
                json!({ "basic": { "name": format!("record {local}") } }),
                json!({ "ver": "0.8.0", "creator": { "didAddress": "did:arweave:creator", "publicKey": "pk" } }),
            )
            .unwrap();
        Did::from_soul(&soul)
    }

    /// ES DELETE requests received for this DID's document.
    pub fn es_deletes(&self, did: &Did) -> usize {
        self.es.count(
            "DELETE",
            &gunsync::demo::es_doc_path("records", did.as_str()),
        )
    }

    /// Asserts the strict ES never refused a request for a parameter or shape (400).
    pub fn assert_es_saw_no_bad_request(&self) {
        let bad: Vec<_> = self
            .es
            .requests()
            .into_iter()
            .filter(|r| r.status == 400)
            .collect();
        assert!(bad.is_empty(), "ES answered 400 to: {bad:?}");
        for r in self.es.requests() {
            if let Some(q) = &r.query {
                assert!(
                    !q.contains("ignore"),
                    "client-only parameter sent: {} {}?{q}",
                    r.method,
                    r.path
                );
            }
        }
    }
}

pub fn soul(local: &str) -> Soul {
    Soul::parse(&format!("{}:{local}", publisher())).unwrap()
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

impl Daemon {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("daemon still running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit and returns the status code (`None` = killed by a signal).
    pub async fn wait(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("daemon did not exit in time")
            .unwrap()
            .code()
    }

    /// Waits for the exit of a daemon started with [`TestApp::spawn_daemon_capturing_stderr`]:
    /// its exit code and everything it logged.
    pub async fn exit_and_stderr(self, within: Duration) -> (Option<i32>, String) {
        let output = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .expect("daemon did not exit in time")
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// GET `path` as JSON once the daemon answers.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let url = self.url(path);
        eventually(Duration::from_secs(20), || async {
            let response = reqwest::get(&url).await.ok()?;
            let status = response.status().as_u16();
            Some((status, response.json::<Value>().await.ok()?))
        })
        .await
    }

    pub async fn get_text(&self, path: &str) -> String {
        let url = self.url(path);
        eventually(Duration::from_secs(20), || async {
            reqwest::get(&url).await.ok()?.text().await.ok()
        })
        .await
    }
}

/// Runs each named `async fn name(app: TestApp)` as two tests, `sqlite::name` and
/// `postgres::name`: on a fresh SQLite ledger file and on a fresh PostgreSQL database.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::support::TestApp::start().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::support::TestApp::start_postgres().await).await
                }
            )*
        }
    };
}
pub(crate) use both_backends;

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
