//! Hostile and unlucky peers against the real daemon: a record built to take gigabytes, a job
//! that would run forever, a record listed before it is readable, a relay deleting records it
//! does not own, indexes grown past any response cap, a relay that gives up on an index,
//! chunked and redirected Elasticsearch answers. Nothing is lost, nothing wedged, nothing
//! unbounded.

use std::time::{Duration, Instant};

use gunsync::emulator::faults::FaultRule;
use gunsync::emulator::relay::RelayEmulator;
use gunsync::ledger::{JobKind, JobState};
use serde_json::{Value, json};

use crate::support::{PUBLISHER_KEY, TestApp, eventually, publisher, soul};

fn oip(record_type: &str) -> Value {
    json!({
        "ver": "0.8.0",
        "recordType": record_type,
        "creator": { "publicKey": PUBLISHER_KEY, "didAddress": "did:arweave:creator" },
    })
}

/// Lists `local` in the `post` index, as a publisher's registration does.
fn list(relay: &RelayEmulator, local: &str, timestamp: i64) {
    let soul = soul(local);
    relay
        .put(
            "oip:registry:index:post",
            json!({ soul.as_str(): { "soul": soul.as_str(), "nodeId": "n", "timestamp": timestamp } }),
        )
        .unwrap();
}

/// GET requests the relay received for souls starting with `prefix`.
fn gets_under(relay: &RelayEmulator, prefix: &str) -> usize {
    relay
        .requests()
        .iter()
        .filter(|r| r.path == "/get")
        .filter(|r| {
            r.query.as_deref().is_some_and(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .any(|(k, v)| k == "soul" && v.starts_with(prefix))
            })
        })
        .count()
}

/// The peak RSS of a process so far, in MiB (`VmHWM`); `None` once it has exited (a zombie's
/// status has no memory lines) or been reaped.
fn peak_rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    Some(kb / 1024)
}

/// Seeds the two hostile records on `relay`: `post-looped`, 300 KB of data whose node links back
/// to itself ten times (today's cycle sent 1 100 GETs for it), and `post-wide`, 40 × 40 distinct
/// nodes under `data` (six times the node budget).
fn seed_hostile_records(relay: &RelayEmulator) {
    let looped = soul("post-looped");
    relay
        .put(
            looped.as_str(),
            json!({ "oip": oip("post"), "data": { "#": format!("{looped}/data") } }),
        )
        .unwrap();
    let mut data = serde_json::Map::new();
    data.insert("blob".into(), Value::from("x".repeat(300 * 1024)));
    for i in 0..10 {
        data.insert(
            format!("again{i}"),
            json!({ "#": format!("{looped}/data") }),
        );
    }
    relay
        .put(&format!("{looped}/data"), Value::Object(data))
        .unwrap();
    list(relay, "post-looped", 1);

    let wide = soul("post-wide");
    relay
        .put(
            wide.as_str(),
            json!({ "oip": oip("post"), "data": { "#": format!("{wide}/data") } }),
        )
        .unwrap();
    let links = |parent: &str| -> Value {
        Value::Object(
            (0..40)
                .map(|i| (format!("k{i}"), json!({ "#": format!("{parent}/k{i}") })))
                .collect(),
        )
    };
    relay
        .put(&format!("{wide}/data"), links(&format!("{wide}/data")))
        .unwrap();
    for i in 0..40 {
        let child = format!("{wide}/data/k{i}");
        relay.put(&child, links(&child)).unwrap();
        for j in 0..40 {
            relay
                .put(&format!("{child}/k{j}"), json!({ "leaf": j }))
                .unwrap();
        }
    }
    list(relay, "post-wide", 1);
}

/// Runs the daemon until both hostile records' discover jobs ended; returns its peak RSS.
async fn discover_hostile_records(app: &mut TestApp) -> u64 {
    app.set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUN_SYNC_INTERVAL", 600_000);
    app.es.log().set_body_limit(usize::MAX);
    let mut daemon = app.spawn_daemon();
    let pid = daemon.child.id().unwrap();
    eventually(Duration::from_secs(60), || async {
        let done = app.count(JobKind::Discover, JobState::Done).await;
        let dead = app.count(JobKind::Discover, JobState::Dead).await;
        (done + dead == 2).then_some(())
    })
    .await;
    let peak = peak_rss_mb(pid).expect("the daemon is still running");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
    peak
}

fn job_of(jobs: &[gunsync::ledger::JobView], local: &str) -> gunsync::ledger::JobView {
    jobs.iter()
        .find(|j| j.key.ends_with(local))
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_plain_relay_a_cycle_costs_one_fetch_and_a_fan_out_stops_at_the_node_budget() {
    let mut app = TestApp::start().await;
    app.relay = RelayEmulator::start_with(gunsync::emulator::relay::Flavour::PlainGun).await;
    seed_hostile_records(&app.relay);
    let peak = discover_hostile_records(&mut app).await;
    eprintln!("daemon peak RSS: {peak} MB");
    assert!(peak < 100, "daemon peak RSS {peak} MB");

    let looped = soul("post-looped");
    let doc = app.es.doc("records", &format!("did:gun:{looped}")).unwrap();
    assert_eq!(doc["data"]["blob"].as_str().unwrap().len(), 300 * 1024);
    assert!(
        doc["data"].get("again0").is_none(),
        "a cycle is not followed"
    );
    // The record, its data (once, however often it links to itself), its oip and oip.creator.
    let looped_gets = gets_under(&app.relay, looped.as_str());
    assert!(looped_gets <= 4, "{looped_gets} GETs for the looped record");

    let jobs = app.jobs(JobKind::Discover).await;
    let wide = job_of(&jobs, "post-wide");
    assert_eq!(
        (wide.state.as_str(), wide.attempts),
        ("dead", 1),
        "{wide:?}"
    );
    let error = wide.last_error.as_deref().unwrap();
    assert!(error.contains("budget of 256 nodes"), "{error}");
    let wide_gets = gets_under(&app.relay, soul("post-wide").as_str());
    assert!(wide_gets <= 256, "{wide_gets} GETs for the wide record");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_oips_relay_a_self_linking_record_costs_a_few_requests_and_at_most_its_byte_budget() {
    let mut app = TestApp::start().await;
    seed_hostile_records(&app.relay);
    let peak = discover_hostile_records(&mut app).await;
    eprintln!("daemon peak RSS: {peak} MB");
    assert!(peak < 100, "daemon peak RSS {peak} MB");
    // OIP's relay answers a node with its links resolved one level, so the self-links come back
    // inline (ten copies of 300 KB): what bounds them is the record's 4 MiB byte budget.
    let looped = soul("post-looped");
    let looped_gets = gets_under(&app.relay, looped.as_str());
    assert!(looped_gets <= 3, "{looped_gets} GETs for the looped record");
    let largest_write = app
        .es
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.body.len())
        .max()
        .unwrap_or(0);
    assert!(
        largest_write <= 4 * 1024 * 1024 + 64 * 1024,
        "a document of {largest_write} bytes"
    );
    let wide_gets = gets_under(&app.relay, soul("post-wide").as_str());
    assert!(wide_gets <= 256, "{wide_gets} GETs for the wide record");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_deadline_is_dead_naming_the_deadline() {
    let mut app = TestApp::start().await;
    let slow = app.seed_record("post-slow", "post");
    // Each read of this record answers within the request timeout, but the record is four
    // nodes deep: together they outlast the job's deadline.
    app.relay.fail(
        FaultRule::delay("/get", Duration::from_millis(700)).query(format!("soul={}", slow.soul())),
    );
    app.set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUNSYNC_JOB_DEADLINE_MS", 1000)
        .set("GUN_SYNC_INTERVAL", 600_000);
    let mut daemon = app.spawn_daemon();
    let job = eventually(Duration::from_secs(60), || async {
        app.jobs(JobKind::Discover)
            .await
            .into_iter()
            .find(|j| j.state == "dead")
    })
    .await;
    assert_eq!(job.attempts, 1);
    assert!(
        job.last_error
            .as_deref()
            .unwrap()
            .contains("job deadline exceeded"),
        "{job:?}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_listed_before_it_is_readable_ends_indexed() {
    let mut app = TestApp::start().await;
    let did = app.seed_record("post-late", "post");
    // The index lists it, but the relay answers 404 for it for a while (GUN is eventually
    // consistent), then has it.
    app.relay.fail(
        FaultRule::status("/get", 404)
            .body(r#"{"error":"Not found"}"#)
            .query(format!("soul={}", did.soul()))
            .times(3),
    );
    app.set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUN_SYNC_INTERVAL", 600_000);
    let mut daemon = app.spawn_daemon();
    eventually(Duration::from_secs(60), || async {
        app.es.doc("records", did.as_str()).map(|_| ())
    })
    .await;
    let job = &app.jobs(JobKind::Discover).await[0];
    assert_eq!((job.state.as_str(), job.attempts), ("done", 4), "{job:?}");
    assert!(
        job.last_error
            .as_deref()
            .unwrap()
            .contains("listed but not readable on any peer yet"),
        "{job:?}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn deletions_are_trusted_only_from_deletion_peers_and_only_from_the_publisher() {
    let mut app = TestApp::start().await;
    let untrusted = RelayEmulator::start().await;
    let kept = app.seed_record("post-kept", "post");
    let forged = app.seed_record("post-forged", "post");
    let real = app.seed_record("post-really-deleted", "post");
    // Another relay (not trusted) lists a deletion of a record it does not hold.
    untrusted.seed_deletion(&kept, PUBLISHER_KEY).unwrap();
    // The trusted relay lists two: one by a stranger, one by the publisher.
    app.relay
        .seed_deletion(&forged, "an attacker's key")
        .unwrap();
    app.seed_deletion(&real);
    let trusted = app.relay.url();
    app.set("GUN_PEERS", format!("{trusted},{}", untrusted.url()))
        .set("GUNSYNC_DELETION_PEERS", trusted.as_str())
        .set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUN_SYNC_INTERVAL", 200);
    let mut daemon = app.spawn_daemon();
    // A discover that met the forged deletion in progress comes back once it is refused.
    eventually(Duration::from_secs(60), || async {
        let indexed = app.es.doc("records", kept.as_str()).is_some()
            && app.es.doc("records", forged.as_str()).is_some()
            && app.count(JobKind::Delete, JobState::Done).await == 1;
        indexed.then_some(())
    })
    .await;
    assert!(
        app.es.doc("records", real.as_str()).is_none(),
        "the publisher's deletion"
    );
    let deletes = app.jobs(JobKind::Delete).await;
    assert_eq!(
        deletes.len(),
        2,
        "none for the untrusted relay's entry: {deletes:?}"
    );
    let refused = deletes.iter().find(|j| j.key == forged.as_str()).unwrap();
    assert_eq!((refused.state.as_str(), refused.attempts), ("dead", 1));
    let error = refused.last_error.as_deref().unwrap();
    assert!(
        error.contains("deletion refused") && error.contains("not the record's publisher"),
        "{refused:?}"
    );
    let ledger = app.ledger().await;
    let cycles = ledger.recent_cycles(10).await.unwrap();
    let untrusted_shown = untrusted.url().to_string();
    assert!(
        cycles
            .iter()
            .filter(|c| c.peer == untrusted_shown)
            .all(|c| c.deletions_ignored == 1 && c.delete_enqueued == 0),
        "{cycles:#?}"
    );
    ledger.close().await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));

    // Verification off: the stranger's deletion is carried out (once its refusal is requeued).
    app.set("GUNSYNC_VERIFY_DELETIONS", "off");
    app.cli_ok(&["requeue", "--state", "dead", "--kind", "delete"])
        .await;
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert!(app.es.doc("records", forged.as_str()).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn indexes_past_every_response_cap_sync_with_flat_memory() {
    let app = TestApp::start().await;
    let prefix = publisher();
    let entries = (0..100_000).map(|i| {
        let soul = format!("{prefix}:big-{i:06}");
        (
            soul.clone(),
            json!({ "soul": soul, "nodeId": "n", "timestamp": i }),
        )
    });
    app.relay
        .seed_entries("oip:registry:index:post", entries)
        .unwrap();
    let deleted = (0..300_000).map(|i| (format!("did:gun:{prefix}:gone-{i:06}"), json!(true)));
    app.relay
        .seed_entries("oip:deleted:records:index", deleted)
        .unwrap();

    let mut app = app;
    app.set("GUNSYNC_RECORD_TYPES", "post");
    let mut child = app.spawn_cli(&["sync", "--once", "--json"]);
    let pid = child.id().unwrap();
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        // Between two polls the CLI may exit: its last sample stands.
        if let Some(now) = peak_rss_mb(pid) {
            peak = peak.max(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "sync --once over a 100 000-entry index and a 300 000-entry registry: {:.1}s, peak RSS {peak} MB",
        started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{status}");
    let ledger = app.ledger().await;
    let cycle = &ledger.recent_cycles(1).await.unwrap()[0];
    assert_eq!(
        (
            cycle.records_seen,
            cycle.discover_enqueued,
            cycle.deletions_seen,
            cycle.delete_enqueued
        ),
        (100_000, 100_000, 300_000, 300_000),
        "{cycle:?}"
    );
    assert_eq!(cycle.error, None);
    ledger.close().await;
    // The bodies were ~11 MB and ~29 MB: nothing was held whole.
    assert!(peak < 150, "peak RSS {peak} MB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_gives_up_on_an_index_it_listed_is_an_error_not_an_empty_index() {
    let mut app = TestApp::start().await;
    for i in 0..5 {
        app.seed_record(&format!("post-{i}"), "post");
    }
    app.set("GUNSYNC_RECORD_TYPES", "post");
    app.cli_ok(&["sync", "--once"]).await;
    // The relay now answers 404 for the index (a plain GUN relay does so past ~80 000 entries).
    app.relay.fail(
        FaultRule::status("/get", 404)
            .body(r#"{"error":"Not found"}"#)
            .query("soul=oip:registry:index:post"),
    );
    let out = app.cli(&["sync", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listed 5 records"), "{stderr}");
    let stats = app.cli_ok(&["stats", "--json"]).await;
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let error = stats["last_cycles"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("index post: the relay answered 404"),
        "{error}"
    );
    // A type that never had an index is not an error.
    app.relay.faults().clear();
    app.set("GUNSYNC_RECORD_TYPES", "post,recipe");
    app.cli_ok(&["sync", "--once"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_elasticsearch_answers_count_as_written() {
    let mut app = TestApp::start().await;
    app.es.set_chunked_answers(true);
    for i in 0..20 {
        app.seed_record(&format!("post-{i:02}"), "post");
    }
    app.set("GUNSYNC_RECORD_TYPES", "post");
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert_eq!(app.count(JobKind::Discover, JobState::Done).await, 20);
    assert_eq!(app.count(JobKind::Discover, JobState::Dead).await, 0);
    assert_eq!(app.es.doc_count("records"), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_never_followed() {
    let mut app = TestApp::start().await;
    let elsewhere = gunsync::emulator::es::EsEmulator::start().await.unwrap();
    let moved = app.seed_record("post-moved", "post");
    let redirected = app.seed_record("post-redirected", "post");
    // The relay redirects one record's read to another host; ES redirects one write.
    app.relay.fail(
        FaultRule::status("/get", 302)
            .location(format!("{}get?soul=x", elsewhere.url()))
            .query(format!("soul={}", moved.soul())),
    );
    app.es.faults().add(
        FaultRule::status(
            gunsync::demo::es_doc_path("records", redirected.as_str()),
            307,
        )
        .location(format!("{}records/_doc/x", elsewhere.url())),
    );
    app.set("GUNSYNC_RECORD_TYPES", "post");
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    for (did, location) in [(&moved, "get?soul=x"), (&redirected, "records/_doc/x")] {
        let job = app
            .jobs(JobKind::Discover)
            .await
            .into_iter()
            .find(|j| j.key == did.as_str())
            .unwrap();
        assert_eq!((job.state.as_str(), job.attempts), ("dead", 1), "{job:?}");
        let error = job.last_error.unwrap();
        assert!(error.contains(location), "names the Location: {error}");
    }
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_a_relay_url_are_never_shown_or_stored() {
    let mut app = TestApp::start().await;
    let did = app.seed_record("post-secret", "post");
    app.seed_deletion(&app.seed_record("post-gone", "post"));
    let mut peer = app.relay.url();
    peer.set_username("operator").unwrap();
    peer.set_password(Some("hunter2")).unwrap();
    app.set("GUN_PEERS", peer.as_str())
        .set("GUNSYNC_RECORD_TYPES", "post")
        .set("RUST_LOG", "debug");
    let out = app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert!(app.es.doc("records", did.as_str()).is_some());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("relay request"), "debug logs name peers");
    assert!(!printed.contains("hunter2"), "{printed}");
    let stats = app.cli_ok(&["stats", "--json"]).await;
    let jobs = app.cli_ok(&["jobs", "--json", "--limit", "0"]).await;
    for stored in [stats.stdout, jobs.stdout] {
        let stored = String::from_utf8_lossy(&stored);
        assert!(!stored.contains("hunter2"), "{stored}");
        assert!(!stored.contains("operator@"), "{stored}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discover_dead_of_a_long_glitch_is_tried_again_after_the_reprocess_window() {
    let mut app = TestApp::start().await;
    let did = app.seed_record("post-glitch", "post");
    // Unreadable for both attempts of the first discover.
    app.relay.fail(
        FaultRule::status("/get", 404)
            .body(r#"{"error":"Not found"}"#)
            .query(format!("soul={}", did.soul()))
            .times(2),
    );
    app.set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUNSYNC_MAX_ATTEMPTS", 2)
        .set("GUNSYNC_REPROCESS_AFTER_MS", 300)
        .set("GUN_SYNC_INTERVAL", 200);
    let mut daemon = app.spawn_daemon();
    eventually(Duration::from_secs(60), || async {
        app.es.doc("records", did.as_str()).map(|_| ())
    })
    .await;
    let jobs = app.jobs(JobKind::Discover).await;
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    assert_eq!(states, ["done", "dead"], "newest first: {jobs:#?}");
    let error = jobs[1].last_error.as_deref().unwrap();
    assert!(
        error.contains("listed but not readable on any peer yet")
            && error.contains("gave up after 2 attempts"),
        "{error}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elasticsearch_2xx_without_its_answer_is_retried_until_written() {
    let mut app = TestApp::start().await;
    let did = app.seed_record("post-proxy", "post");
    app.es
        .faults()
        .add(FaultRule::garbage(gunsync::demo::es_doc_path("records", did.as_str())).times(2));
    app.set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUN_SYNC_INTERVAL", 600_000);
    let mut daemon = app.spawn_daemon();
    eventually(Duration::from_secs(60), || async {
        (app.count(JobKind::Discover, JobState::Done).await == 1).then_some(())
    })
    .await;
    let job = &app.jobs(JobKind::Discover).await[0];
    assert_eq!(job.attempts, 3, "{job:?}");
    assert!(app.es.doc("records", did.as_str()).is_some());
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
}
