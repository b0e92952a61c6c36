//! The web dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver +
//! fantoccini) against the daemon on the relay and ES emulators, then against `gunsync ui` over
//! the ledger it left. Checks what an operator sees and that clicks change the ledger.
//!
//! Without Chromium and chromedriver the test says so and passes, except under CI (`CI` set),
//! where `.ci/run` installs them and their absence is a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::http::Method;
use fantoccini::{Client, ClientBuilder, Locator};
use gunsync::emulator::faults::FaultRule;
use gunsync::ledger::{JobId, JobKind, JobState, NewJob};
use gunsync::timestamp::Timestamp;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::{Daemon, TestApp, eventually};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(60);

/// A chromedriver process and one headless Chromium session through it.
struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// `None` (after saying why) when Chromium is not installed and this is not CI.
    async fn start(shots: &Path) -> Option<Browser> {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        if !Path::new(&chromium).exists() || !Path::new(&driver).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{chromium} or {driver} is missing: .ci/run installs Debian's chromium and \
                 chromium-driver"
            );
            eprintln!(
                "SKIPPED: the dashboard browser test needs {chromium} and {driver} \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let status = format!("http://127.0.0.1:{port}/status");
        eventually(WAIT, || async {
            let ready = reqwest::get(&status)
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()?;
            ready["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Some(Browser {
            client,
            _driver: driver,
            _profile: profile,
            shots: shots.to_owned(),
        })
    }

    async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The element `css` selects, once the page has it.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// Runs `act` on the element `css` selects. Pages refresh their content every few seconds,
    /// so an element found just before a refresh is stale: find it again and retry.
    async fn on<T, F, Fut>(&self, css: &str, act: F) -> T
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match act(self.element(css).await).await {
                Ok(value) => return value,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("{css} again: {e}");
                }
                Err(e) => panic!("{css}: {e}"),
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.on(css, |e| async move { e.text().await }).await
    }

    async fn click(&self, css: &str) {
        self.on(css, |e| async move { e.click().await }).await
    }

    /// The text of every element `css` selects, read in one script (so no refresh can come
    /// between two of them), once there is at least one.
    async fn rows(&self, css: &str) -> Vec<String> {
        self.element(css).await;
        let script =
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText);";
        let texts = self.client.execute(script, vec![json!(css)]).await.unwrap();
        serde_json::from_value(texts).unwrap()
    }

    /// Saves a PNG of the page as `name.png` and prints where (copied to
    /// `$GUNSYNC_SCREENSHOTS` too, which is how `docs/` gets its pictures).
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot: {}", path.display());
        if let Some(dir) = std::env::var_os("GUNSYNC_SCREENSHOTS") {
            std::fs::write(Path::new(&dir).join(format!("dashboard-{name}.png")), &png).unwrap();
        }
    }
}

/// Starts `gunsync ui` on a free port (with `token` as GUNSYNC_UI_TOKEN) and waits for it.
async fn spawn_ui(app: &TestApp, token: Option<&str>) -> Daemon {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = app.command(&["ui"]);
    cmd.env("GUNSYNC_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(token) = token {
        cmd.env("GUNSYNC_UI_TOKEN", token);
    }
    let ui = Daemon {
        child: cmd.spawn().unwrap(),
        port,
    };
    ui.get_text("/ui").await;
    ui
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_ledger_and_requeues_in_a_real_browser() {
    let mut app = TestApp::start().await;
    // Kept after the test, so the printed paths can be opened.
    let shots = tempfile::Builder::new()
        .prefix("gunsync-dashboard-")
        .tempdir()
        .unwrap()
        .keep();
    let Some(browser) = Browser::start(&shots).await else {
        return;
    };

    // Five records; one of them was deleted, and ES refuses that delete until the test says so.
    for i in 1..=5 {
        app.seed_record(&format!("post-ui-{i}"), "post");
    }
    let doomed = app.seed_record("post-ui-deleted", "post");
    app.seed_deletion(&doomed);
    app.es.faults().add(
        FaultRule::status(gunsync::demo::es_doc_path("records", doomed.as_str()), 500)
            .method(Method::DELETE),
    );
    app.set("GUN_SYNC_INTERVAL", 200)
        .set("GUNSYNC_MAX_ATTEMPTS", 3)
        .set("GUNSYNC_RECORD_TYPES", "post");
    let mut daemon = app.spawn_daemon();
    let ledger = app.ledger().await;
    let stats = eventually(WAIT, || async {
        let stats = ledger.stats(Timestamp::now(), 0).await.ok()?;
        let settled = ["pending", "running", "retrying"]
            .iter()
            .all(|s| stats.states[*s] == 0);
        (settled && stats.states["dead"] == 1 && stats.states["done"] >= 5).then_some(stats)
    })
    .await;
    let dead = ledger
        .latest_job(JobKind::Delete, doomed.as_str())
        .await
        .unwrap()
        .unwrap();
    let (_, attempts) = ledger.get_job(JobId(dead.id)).await.unwrap().unwrap();
    assert_eq!(attempts.len(), 3);

    // The overview counts what the ledger holds.
    daemon.get_text("/ui").await;
    browser.open(&daemon.url("/ui")).await;
    let cell =
        |kind: &str, state: &str| format!("#counts tr[data-kind={kind}] td[data-state={state}]");
    let discovered = stats.kinds["discover"]["done"];
    assert_eq!(
        browser.text(&cell("discover", "done")).await,
        discovered.to_string()
    );
    assert_eq!(browser.text(&cell("delete", "dead")).await, "1");
    assert_eq!(browser.text("#dead-count .n").await, "1");
    for (column, state) in JobState::ALL.iter().enumerate() {
        let css = format!("#counts tr:last-child td:nth-child({})", column + 2);
        let shown = browser.text(&css).await;
        assert_eq!(shown, stats.states[state.as_str()].to_string(), "{state:?}");
    }
    assert!(browser.text("#cycles").await.contains("127.0.0.1"));
    browser.screenshot("overview").await;

    browser.open(&daemon.url("/ui/jobs")).await;
    let listed = browser.rows("#jobs tbody tr").await;
    assert_eq!(listed.len() as i64, stats.total);
    browser.screenshot("jobs").await;

    // The dead job's page explains it and lists its three attempts with the HTTP status.
    browser
        .open(&daemon.url(&format!("/ui/jobs/{}", dead.id)))
        .await;
    assert!(
        browser.text("#why").await.contains("dead"),
        "{}",
        browser.text("#why").await
    );
    let rows = browser.rows("#attempts tbody tr").await;
    assert_eq!(rows.len(), 3);
    for text in rows {
        assert!(text.contains("500"), "{text}");
    }
    browser.screenshot("job").await;

    browser.open(&daemon.url("/ui/dead")).await;
    assert!(browser.text("#dead").await.contains("500"));
    browser.screenshot("dead").await;

    // Stop the daemon; inspect and act with `gunsync ui` and a token.
    daemon.signal("TERM");
    assert_eq!(daemon.wait(WAIT).await, Some(0));
    let mut ui = spawn_ui(&app, Some("let-me-in")).await;

    // Pages are readable on loopback, but a click without the token is refused.
    browser
        .open(&ui.url(&format!("/ui/jobs/{}", dead.id)))
        .await;
    browser.click("#requeue").await;
    assert!(browser.text("#refusal").await.contains("sign in"));
    assert_eq!(
        ledger
            .latest_job(JobKind::Delete, doomed.as_str())
            .await
            .unwrap()
            .unwrap()
            .state,
        "dead"
    );
    // So is a forged POST: no cookie, no CSRF token.
    let forged = reqwest::Client::new()
        .post(ui.url("/ui/actions"))
        .form(&[("action", "requeue"), ("id", &dead.id.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // Sign in once: the cookie is HttpOnly and SameSite=Strict.
    browser.open(&ui.url("/ui/login")).await;
    browser
        .client
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys("let-me-in")
        .await
        .unwrap();
    browser.click("form button[type=submit]").await;
    browser.text("#counts").await;
    // The overview refreshes itself in place: a job enqueued now shows up without a reload.
    browser
        .client
        .execute("window.kept = 1;", vec![])
        .await
        .unwrap();
    ledger
        .enqueue(
            &NewJob::new(JobKind::Discover, "did:gun:added-later"),
            Timestamp::now(),
        )
        .await
        .unwrap();
    eventually(WAIT, || async {
        let css = "#counts tr[data-kind=discover] td[data-state=pending]";
        (browser.text(css).await == "1").then_some(())
    })
    .await;
    let kept = browser
        .client
        .execute("return window.kept === 1;", vec![])
        .await
        .unwrap();
    assert_eq!(
        kept,
        json!(true),
        "the page was reloaded instead of refreshed in place"
    );
    let cookie = browser.client.get_named_cookie("gunsync_ui").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()),
        Some("Strict".to_owned())
    );

    // Requeue from the job's page: the ledger has it pending, attempts reset.
    browser
        .open(&ui.url(&format!("/ui/jobs/{}", dead.id)))
        .await;
    browser.click("#requeue").await;
    assert!(browser.text("#result").await.contains("1 of 1"));
    let job = ledger
        .latest_job(JobKind::Delete, doomed.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.id, job.state.as_str(), job.attempts),
        (dead.id, "pending", 0)
    );

    // Cancel it from the jobs list by ticking its box.
    browser.open(&ui.url("/ui/jobs?state=pending")).await;
    browser
        .click(&format!(
            "#jobs tr[data-id='{}'] input[type=checkbox]",
            dead.id
        ))
        .await;
    browser.click("#cancel-selected").await;
    assert!(browser.text("#result").await.contains("1 job(s) cancelled"));
    let job = ledger
        .latest_job(JobKind::Delete, doomed.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, "cancelled");

    // Requeue it by filter; then the daemon, with ES answering again, finishes it.
    browser
        .open(&ui.url("/ui/jobs?state=cancelled&kind=delete"))
        .await;
    browser.click("#requeue-filter").await;
    assert!(browser.text("#result").await.contains("1 of 1"));
    ui.signal("TERM");
    ui.wait(WAIT).await;
    app.es.faults().clear();
    let mut daemon = app.spawn_daemon();
    eventually(WAIT, || async {
        (app.count(JobKind::Delete, JobState::Done).await == 1).then_some(())
    })
    .await;
    daemon.signal("TERM");
    daemon.wait(WAIT).await;
    ledger.close().await;
    browser.client.close().await.unwrap();
}
