//! Fault injection (issue 6, part 1): `gunsync run` against emulators that time out, fail with
//! 500/503/429, reset connections, answer truncated or garbage JSON, a 50 MB body or a body that
//! trickles, or are down for a whole cycle. For each fault: the daemon keeps working (healthy
//! records are indexed, a job enqueued afterwards is done, SIGTERM still exits 0), the affected
//! jobs retry on the backoff and end `done` (a fault that stops) or `dead` with an error naming
//! the operation, the key and the cause, every job is in the ledger, and the requests sent are
//! bounded by the schedule (counted in the emulator's log).
//!
//! Settings are fast (backoff 50 ms doubling to 400 ms, 3 attempts, one cycle at start-up over
//! one record type), so each test takes a few seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::Method;
use gunsync::demo::es_doc_path;
use gunsync::domain::Did;
use gunsync::emulator::faults::FaultRule;
use gunsync::emulator::relay::RelayEmulator;
use gunsync::ledger::{AttemptView, JobFilter, JobId, JobKind, JobView, Ledger, Requeue};
use gunsync::timestamp::Timestamp;

use crate::support::{Daemon, TestApp, eventually, publisher, soul};

const MAX_ATTEMPTS: i64 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(400);
/// The relay or ES timeout in the timeout tests; the faults there hold requests much longer.
const SHORT_TIMEOUT_MS: u64 = 300;
/// Records no fault touches.
const HEALTHY: [&str; 4] = ["ok-0", "ok-1", "ok-2", "ok-3"];
/// Longest wait for the ledger to settle; generous, as the suite shares two cores.
const SETTLE: Duration = Duration::from_secs(30);

/// A `TestApp` with the healthy records and `affected` records (type `post`) seeded, and fast
/// settings: one cycle at start-up, 3 attempts, backoff 50 ms → 400 ms, 2 s timeouts.
async fn app_with(affected: &[&str]) -> TestApp {
    let mut app = TestApp::start().await;
    for local in HEALTHY.iter().chain(affected) {
        app.seed_record(local, "post");
    }
    app.set("GUN_SYNC_INTERVAL", 600_000)
        .set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUNSYNC_MAX_ATTEMPTS", MAX_ATTEMPTS)
        .set("GUNSYNC_BACKOFF_BASE_MS", BACKOFF_BASE.as_millis())
        .set("GUNSYNC_BACKOFF_MAX_MS", BACKOFF_MAX.as_millis())
        .set("GUN_REGISTRY_TIMEOUT_MS", 2000)
        .set("GUNSYNC_ES_TIMEOUT_MS", 2000)
        .set("GUNSYNC_WORKERS", 4);
    app
}

fn did(local: &str) -> Did {
    Did::from_soul(&soul(local))
}

/// The soul of a test record as it appears in a relay request.
fn soul_of(local: &str) -> String {
    format!("{}:{local}", publisher())
}

/// A running daemon, the ledger it writes, and the peak RSS seen while it runs.
struct Running {
    app: TestApp,
    daemon: Daemon,
    ledger: Ledger,
    rss: RssWatch,
}

impl Running {
    /// Creates the ledger, then starts `gunsync run` on it.
    async fn start(app: TestApp) -> Running {
        app.cli_ok(&["migrate"]).await;
        let ledger = app.ledger().await;
        let daemon = app.spawn_daemon();
        let rss = RssWatch::start(daemon.child.id().expect("daemon started"));
        Running {
            app,
            daemon,
            ledger,
            rss,
        }
    }

    /// Waits until the ledger holds `jobs` jobs and none is pending, running or retrying.
    async fn settle(&self, jobs: i64) {
        eventually(SETTLE, || async {
            let stats = self.ledger.stats(Timestamp::now(), 0).await.ok()?;
            let active =
                stats.states["pending"] + stats.states["running"] + stats.states["retrying"];
            (stats.total == jobs && active == 0).then_some(())
        })
        .await;
    }

    async fn all_jobs(&self) -> Vec<JobView> {
        self.ledger
            .list_jobs(&JobFilter {
                limit: 1_000_000,
                ..JobFilter::default()
            })
            .await
            .unwrap()
    }

    /// The one job of this kind for the record, and its attempts (oldest first).
    async fn job(&self, kind: JobKind, local: &str) -> (JobView, Vec<AttemptView>) {
        let did = did(local);
        let jobs: Vec<_> = self
            .all_jobs()
            .await
            .into_iter()
            .filter(|j| j.kind == kind.as_str() && j.key == did.as_str())
            .collect();
        assert_eq!(jobs.len(), 1, "one {kind:?} job for {did}: {jobs:#?}");
        let (job, attempts) = self
            .ledger
            .get_job(JobId(jobs[0].id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            attempts.len() as i64,
            job.attempts,
            "every attempt of {did} is in job_attempts: {attempts:#?}"
        );
        (job, attempts)
    }

    /// Asserts the record's discover job ended `done` after `attempts` attempts, on schedule, and
    /// that the record is in ES.
    async fn assert_done(&self, local: &str, attempts: i64) -> Vec<AttemptView> {
        let (job, history) = self.job(JobKind::Discover, local).await;
        assert_eq!(
            (job.state.as_str(), job.attempts),
            ("done", attempts),
            "{job:#?}\n{history:#?}"
        );
        assert_eq!(history.last().unwrap().outcome, "done");
        assert_on_schedule(&history, None);
        assert!(
            self.app.es.doc("records", did(local).as_str()).is_some(),
            "{local} indexed"
        );
        history
    }

    /// Asserts the job ended `dead` after `attempts` attempts, on schedule, and returns its
    /// `last_error` (which must name the key).
    async fn assert_dead(&self, kind: JobKind, local: &str, attempts: i64) -> String {
        let (job, history) = self.job(kind, local).await;
        assert_eq!(
            (job.state.as_str(), job.attempts),
            ("dead", attempts),
            "{job:#?}\n{history:#?}"
        );
        assert_eq!(history.last().unwrap().outcome, "dead");
        assert!(
            history[..history.len() - 1]
                .iter()
                .all(|a| a.outcome == "retry")
        );
        assert_on_schedule(&history, None);
        let error = job.last_error.clone().expect("a dead job says why");
        assert!(error.contains(&soul_of(local)), "names the key: {error}");
        if attempts == MAX_ATTEMPTS && attempts > 1 {
            assert!(
                error.contains(&format!("gave up after {attempts} attempts")),
                "{error}"
            );
        }
        error
    }

    /// Every healthy record was discovered at the first attempt and indexed.
    async fn assert_healthy_indexed(&self) {
        for local in HEALTHY {
            self.assert_done(local, 1).await;
        }
    }

    /// The daemon is alive and still works: a job enqueued now (by another process) is done,
    /// then SIGTERM stops it with exit 0.
    async fn assert_still_working_then_stop(mut self) {
        assert!(
            self.daemon.child.try_wait().unwrap().is_none(),
            "the daemon must survive the fault"
        );
        let later = self.app.seed_record("later-1", "post");
        self.app
            .cli_ok(&["enqueue", "discover", later.as_str()])
            .await;
        eventually(SETTLE, || async {
            (self.app.es.doc("records", later.as_str()).is_some()).then_some(())
        })
        .await;
        self.daemon.signal("TERM");
        assert_eq!(self.daemon.wait(Duration::from_secs(20)).await, Some(0));
        self.ledger.close().await;
        self.app.assert_es_saw_no_bad_request();
    }
}

/// Attempt `n + 1` starts no earlier than attempt `n` started plus the backoff's lower bound for
/// attempt `n` (−20 % jitter), or the peer's `Retry-After` when that is longer.
#[track_caller]
fn assert_on_schedule(history: &[AttemptView], retry_after: Option<Duration>) {
    for (n, pair) in history.windows(2).enumerate() {
        let backoff = (BACKOFF_BASE * (1 << n)).min(BACKOFF_MAX).mul_f64(0.8);
        let floor = backoff.max(retry_after.unwrap_or_default());
        let gap = pair[1].started_at.since(pair[0].started_at);
        // Timestamps have millisecond resolution.
        assert!(
            gap + Duration::from_millis(2) >= floor,
            "attempt {} started {gap:?} after attempt {} (at least {floor:?} expected): {history:#?}",
            n + 2,
            n + 1
        );
    }
}

/// `GET /get` requests for exactly this soul (not its children).
fn relay_gets(relay: &RelayEmulator, soul: &str) -> usize {
    relay
        .requests()
        .iter()
        .filter(|r| {
            r.path == "/get"
                && r.query.as_deref().is_some_and(|q| {
                    url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "soul" && v == soul)
                })
        })
        .count()
}

/// Requests (any method) for this record's ES document.
fn es_doc_requests(app: &TestApp, local: &str) -> usize {
    let path = es_doc_path("records", did(local).as_str());
    app.es.requests().iter().filter(|r| r.path == path).count()
}

/// A relay fault on one record's reads (its root soul and its children).
fn on_record(rule: FaultRule, local: &str) -> FaultRule {
    rule.method(Method::GET)
        .query(format!("soul={}", soul_of(local)))
}

/// An ES fault on one record's document.
fn on_doc(local: &str) -> String {
    es_doc_path("records", did(local).as_str())
}

/// Samples the daemon's VmRSS every 10 ms and keeps the peak.
struct RssWatch {
    peak_kb: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    fn start(pid: u32) -> Self {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let peak = peak_kb.clone();
        let task = tokio::spawn(async move {
            let path = format!("/proc/{pid}/status");
            while let Ok(status) = tokio::fs::read_to_string(&path).await {
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
                if let Some(rss) = rss {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        RssWatch { peak_kb, task }
    }

    fn peak_mb(&self) -> u64 {
        self.peak_kb.load(Ordering::Relaxed) / 1024
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_read_that_outlasts_the_timeout_is_retried_on_schedule_then_parked_dead() {
    let mut app = app_with(&["dead-1", "flaky-1"]).await;
    app.set("GUN_REGISTRY_TIMEOUT_MS", SHORT_TIMEOUT_MS);
    let hold = Duration::from_millis(SHORT_TIMEOUT_MS * 5);
    app.relay
        .fail(on_record(FaultRule::delay("/get", hold), "dead-1"));
    app.relay
        .fail(on_record(FaultRule::delay("/get", hold), "flaky-1").times(2));
    let run = Running::start(app).await;
    run.settle(6).await;

    let error = run
        .assert_dead(JobKind::Discover, "dead-1", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains(&format!(
            "get {}: relay did not answer within {SHORT_TIMEOUT_MS}ms",
            soul_of("dead-1")
        )),
        "{error}"
    );
    run.assert_done("flaky-1", 3).await;
    run.assert_healthy_indexed().await;
    // A held request is logged when the emulator answers, after the client gave up.
    eventually(Duration::from_secs(10), || async {
        (relay_gets(&run.app.relay, &soul_of("dead-1")) == MAX_ATTEMPTS as usize).then_some(())
    })
    .await;
    assert_eq!(relay_gets(&run.app.relay, &soul_of("flaky-1")), 3);
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elasticsearch_write_that_outlasts_the_timeout_is_retried_on_schedule_then_parked_dead()
{
    let mut app = app_with(&["dead-1", "flaky-1"]).await;
    app.set("GUNSYNC_ES_TIMEOUT_MS", SHORT_TIMEOUT_MS);
    let hold = Duration::from_millis(SHORT_TIMEOUT_MS * 5);
    app.es
        .faults()
        .add(FaultRule::delay(on_doc("dead-1"), hold));
    app.es
        .faults()
        .add(FaultRule::delay(on_doc("flaky-1"), hold).times(2));
    let run = Running::start(app).await;
    run.settle(6).await;

    let error = run
        .assert_dead(JobKind::Discover, "dead-1", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains("elasticsearch did not answer within 300ms"),
        "{error}"
    );
    assert!(
        error.contains("index did:gun:"),
        "names the operation: {error}"
    );
    run.assert_done("flaky-1", 3).await;
    run.assert_healthy_indexed().await;
    eventually(Duration::from_secs(10), || async {
        (es_doc_requests(&run.app, "dead-1") == MAX_ATTEMPTS as usize).then_some(())
    })
    .await;
    assert_eq!(es_doc_requests(&run.app, "flaky-1"), 3);
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elasticsearch_500_on_delete_is_retried_on_schedule_then_parked_dead_naming_the_status()
{
    let mut app = app_with(&["del-dead", "del-flaky", "del-ok"]).await;
    // A cycle every 100 ms: what the old service got wrong was re-sending failed deletions
    // every cycle, forever.
    app.set("GUN_SYNC_INTERVAL", 100);
    for local in ["del-dead", "del-flaky", "del-ok"] {
        app.seed_deletion(&did(local));
    }
    app.es.faults().add(
        FaultRule::status(on_doc("del-dead"), 500)
            .method(Method::DELETE)
            .body(r#"{"error":{"type":"emulated_failure_exception","reason":"injected"}}"#),
    );
    app.es.faults().add(
        FaultRule::status(on_doc("del-flaky"), 500)
            .method(Method::DELETE)
            .times(2),
    );
    let run = Running::start(app).await;
    // 4 healthy discovers and 3 deletes; deleted records are never discovered.
    run.settle(7).await;

    let error = run
        .assert_dead(JobKind::Delete, "del-dead", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains("elasticsearch answered 500")
            && error.contains("emulated_failure_exception"),
        "{error}"
    );
    let (_, history) = run.job(JobKind::Delete, "del-dead").await;
    assert!(history.iter().all(|a| a.http_status == Some(500)));
    // ES comes first: the relay was not touched for the dead delete.
    let node = run.app.relay.node(&soul_of("del-dead")).unwrap();
    assert!(node.get("deleted").is_none(), "{node}");
    for (local, attempts) in [("del-flaky", 3), ("del-ok", 1)] {
        let (job, history) = run.job(JobKind::Delete, local).await;
        assert_eq!((job.state.as_str(), job.attempts), ("done", attempts));
        assert_on_schedule(&history, None);
        let node = run.app.relay.node(&soul_of(local)).unwrap();
        assert_eq!(node["deleted"], true, "{local} tombstoned: {node}");
    }
    // Many more cycles, and not one more request for a finished delete.
    let since = run.ledger.recent_cycles(1).await.unwrap()[0].id;
    eventually(Duration::from_secs(20), || async {
        let last = run.ledger.recent_cycles(1).await.ok()?.first()?.id;
        (last >= since + 10).then_some(())
    })
    .await;
    let deletes = |local| run.app.es.count("DELETE", &on_doc(local));
    assert_eq!(deletes("del-dead"), MAX_ATTEMPTS as usize);
    assert_eq!(deletes("del-flaky"), 3);
    assert_eq!(deletes("del-ok"), 1);
    run.assert_healthy_indexed().await;
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_with_retry_after_holds_the_next_attempt_back_at_least_that_long() {
    let mut app = app_with(&["dead-1", "flaky-1"]).await;
    // The backoff (50 ms, capped at 2 s) is far below Retry-After: 1 s; the cap is above it.
    app.set("GUNSYNC_BACKOFF_MAX_MS", 2000);
    app.es
        .faults()
        .add(FaultRule::status(on_doc("dead-1"), 503).retry_after(1));
    app.es.faults().add(
        FaultRule::status(on_doc("flaky-1"), 503)
            .retry_after(1)
            .times(1),
    );
    let run = Running::start(app).await;
    run.settle(6).await;

    let retry_after = Some(Duration::from_secs(1));
    let (job, history) = run.job(JobKind::Discover, "flaky-1").await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2));
    assert_eq!(history[0].http_status, Some(503));
    assert_on_schedule(&history, retry_after);

    let (job, history) = run.job(JobKind::Discover, "dead-1").await;
    assert_eq!((job.state.as_str(), job.attempts), ("dead", MAX_ATTEMPTS));
    assert_on_schedule(&history, retry_after);
    let error = job.last_error.unwrap();
    assert!(
        error.contains("elasticsearch answered 503") && error.contains(did("dead-1").as_str()),
        "{error}"
    );
    assert_eq!(es_doc_requests(&run.app, "dead-1"), MAX_ATTEMPTS as usize);
    assert_eq!(es_doc_requests(&run.app, "flaky-1"), 2);
    run.assert_healthy_indexed().await;
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_429_is_retried_on_schedule_and_bounded_by_max_attempts() {
    let app = app_with(&["dead-1", "flaky-1"]).await;
    app.relay
        .fail(on_record(FaultRule::status("/get", 429), "dead-1"));
    app.relay
        .fail(on_record(FaultRule::status("/get", 429), "flaky-1").times(1));
    let run = Running::start(app).await;
    run.settle(6).await;

    let error = run
        .assert_dead(JobKind::Discover, "dead-1", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains(&format!("get {}: relay answered 429", soul_of("dead-1"))),
        "{error}"
    );
    let (_, history) = run.job(JobKind::Discover, "dead-1").await;
    assert!(history.iter().all(|a| a.http_status == Some(429)));
    run.assert_done("flaky-1", 2).await;
    run.assert_healthy_indexed().await;
    assert_eq!(relay_gets(&run.app.relay, &soul_of("dead-1")), 3);
    assert_eq!(relay_gets(&run.app.relay, &soul_of("flaky-1")), 2);
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_resets_are_retried_and_a_reset_that_stops_ends_done() {
    let app = app_with(&["dead-1", "flaky-relay", "flaky-es"]).await;
    app.relay
        .fail(on_record(FaultRule::reset("/get"), "dead-1"));
    app.relay
        .fail(on_record(FaultRule::reset("/get"), "flaky-relay").times(2));
    app.es
        .faults()
        .add(FaultRule::reset(on_doc("flaky-es")).times(2));
    let run = Running::start(app).await;
    run.settle(7).await;

    let error = run
        .assert_dead(JobKind::Discover, "dead-1", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains(&format!(
            "get {}: relay unreachable: connection closed before message completed",
            soul_of("dead-1")
        )),
        "{error}"
    );
    let history = run.assert_done("flaky-es", 3).await;
    assert!(
        history[0].error.as_deref().is_some_and(|e| e.contains(
            "elasticsearch connection failed: connection closed before message completed"
        )),
        "{history:#?}"
    );
    run.assert_done("flaky-relay", 3).await;
    run.assert_healthy_indexed().await;
    assert_eq!(relay_gets(&run.app.relay, &soul_of("dead-1")), 3);
    assert_eq!(relay_gets(&run.app.relay, &soul_of("flaky-relay")), 3);
    assert_eq!(es_doc_requests(&run.app, "flaky-es"), 3);
    run.assert_still_working_then_stop().await;
}

/// A 200 whose body is not the relay's answer (an HTML page, a cut-off body) is what a
/// restarting proxy sends: retried on schedule up to max attempts, then dead with the cause; a
/// requeue once the relay is fixed indexes the record.
async fn a_glitching_relay_answer_is_retried_then_dead_until_requeued(
    rule: FaultRule,
    cause: &str,
) {
    let app = app_with(&["bad-1"]).await;
    app.relay.fail(on_record(rule, "bad-1"));
    let run = Running::start(app).await;
    run.settle(5).await;

    let error = run
        .assert_dead(JobKind::Discover, "bad-1", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains(&format!(
            "get {}: unexpected response: {cause}",
            soul_of("bad-1")
        )),
        "{error}"
    );
    assert_eq!(
        relay_gets(&run.app.relay, &soul_of("bad-1")),
        MAX_ATTEMPTS as usize
    );
    run.assert_healthy_indexed().await;

    run.app.relay.faults().clear();
    let report = run
        .ledger
        .requeue(
            &Requeue {
                key: Some(did("bad-1").as_str().to_owned()),
                ..Requeue::default()
            },
            Timestamp::now(),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(report.requeued.len(), 1);
    run.settle(5).await;
    run.assert_done("bad-1", MAX_ATTEMPTS + 1).await;
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_json_from_the_relay_is_retried_on_schedule_then_dead() {
    a_glitching_relay_answer_is_retried_then_dead_until_requeued(
        FaultRule::truncated("/get"),
        "invalid json",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_html_page_from_the_relay_is_retried_on_schedule_then_dead() {
    a_glitching_relay_answer_is_retried_then_dead_until_requeued(
        FaultRule::garbage("/get"),
        "an html page, not json",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_50_mb_body_is_refused_at_the_size_cap_without_being_buffered() {
    const FIFTY_MB: usize = 50 * 1024 * 1024;
    let app = app_with(&["huge-relay", "huge-es"]).await;
    app.relay.fail(on_record(
        FaultRule::huge_body("/get", FIFTY_MB),
        "huge-relay",
    ));
    app.es
        .faults()
        .add(FaultRule::huge_body(on_doc("huge-es"), FIFTY_MB));
    let run = Running::start(app).await;
    run.settle(6).await;

    let error = run.assert_dead(JobKind::Discover, "huge-relay", 1).await;
    assert!(
        error.contains(&format!(
            "get {}: record exceeds its budget of 4194304 bytes",
            soul_of("huge-relay")
        )),
        "{error}"
    );
    let error = run.assert_dead(JobKind::Discover, "huge-es", 1).await;
    assert!(
        error.contains("index did:gun:") && error.contains("body of unknown length"),
        "{error}"
    );
    assert_eq!(relay_gets(&run.app.relay, &soul_of("huge-relay")), 1);
    assert_eq!(es_doc_requests(&run.app, "huge-es"), 1);
    let peak = run.rss.peak_mb();
    eprintln!("peak RSS while refusing two 50 MB bodies: {peak} MB");
    assert!(peak > 0, "RSS was sampled");
    assert!(peak < 200, "peak RSS {peak} MB while refusing 50 MB bodies");
    run.assert_healthy_indexed().await;
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_drip_body_ends_as_a_timeout_and_is_retried_on_schedule() {
    let mut app = app_with(&["drip-relay", "drip-es"]).await;
    app.set("GUN_REGISTRY_TIMEOUT_MS", SHORT_TIMEOUT_MS)
        .set("GUNSYNC_ES_TIMEOUT_MS", SHORT_TIMEOUT_MS);
    let interval = Duration::from_millis(50);
    app.relay.fail(on_record(
        FaultRule::slow_drip("/get", interval),
        "drip-relay",
    ));
    app.es
        .faults()
        .add(FaultRule::slow_drip(on_doc("drip-es"), interval));
    let run = Running::start(app).await;
    run.settle(6).await;

    let error = run
        .assert_dead(JobKind::Discover, "drip-relay", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains(&format!(
            "get {}: relay did not answer within {SHORT_TIMEOUT_MS}ms",
            soul_of("drip-relay")
        )),
        "{error}"
    );
    let error = run
        .assert_dead(JobKind::Discover, "drip-es", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains("elasticsearch did not answer within 300ms"),
        "{error}"
    );
    assert_eq!(
        relay_gets(&run.app.relay, &soul_of("drip-relay")),
        MAX_ATTEMPTS as usize
    );
    assert_eq!(es_doc_requests(&run.app, "drip-es"), MAX_ATTEMPTS as usize);
    run.assert_healthy_indexed().await;
    run.assert_still_working_then_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_down_for_a_whole_cycle_is_recorded_and_holds_back_no_other() {
    let mut app = app_with(&["gone-1"]).await;
    app.seed_deletion(&did("gone-1"));
    // A relay that resets every connection, listed first.
    let down = RelayEmulator::start().await;
    down.fail(FaultRule::reset(""));
    app.set("GUN_PEERS", format!("{},{}", down.url(), app.relay.url()));
    let run = Running::start(app).await;
    // 4 discovers and the delete.
    run.settle(5).await;
    run.assert_healthy_indexed().await;

    let cycles = run.ledger.recent_cycles(10).await.unwrap();
    assert_eq!(cycles.len(), 2, "one cycle row per peer: {cycles:#?}");
    let failed = cycles
        .iter()
        .find(|c| c.peer == down.url().as_str())
        .unwrap();
    let error = failed.error.as_deref().unwrap();
    assert!(
        error.contains("deletion registry") && error.contains("relay unreachable"),
        "{error}"
    );
    // The registry's failure held back no other read: the type index was tried too.
    assert!(error.contains("index post: "), "{error}");
    assert!(failed.finished_at.is_some());
    let live = cycles
        .iter()
        .find(|c| c.peer == run.app.relay.url().as_str())
        .unwrap();
    assert_eq!(live.error, None);
    assert_eq!((live.discover_enqueued, live.delete_enqueued), (4, 1));

    // The delete is done on ES and the live relay, but cannot finish on the down one.
    let error = run
        .assert_dead(JobKind::Delete, "gone-1", MAX_ATTEMPTS)
        .await;
    assert!(
        error.contains(&format!(
            "peer {}: get {}: relay unreachable",
            down.url().as_str().trim_end_matches('/'),
            soul_of("gone-1")
        )),
        "names the peer and the cause: {error}"
    );
    let node = run.app.relay.node(&soul_of("gone-1")).unwrap();
    assert_eq!(node["deleted"], true, "{node}");
    assert_eq!(
        run.app.es.count("DELETE", &on_doc("gone-1")),
        MAX_ATTEMPTS as usize
    );
    // The down relay saw the cycle's two reads (registry, type index) and one read per delete
    // attempt; the discovers were served by the live relay they were listed on, and the
    // deletion was verified on it too.
    assert_eq!(down.requests().len(), 2 + MAX_ATTEMPTS as usize);
    run.assert_still_working_then_stop().await;
}
