//! The kill -9 matrix (issue 6): `gunsync run` against the emulators is SIGKILLed at random
//! moments (seeded; the seed is printed) and restarted on the same ledger, again and again; a
//! last run is allowed to finish and stopped with SIGTERM. Then every live record is indexed,
//! every deletion is done (ES document gone, relay record tombstoned and out of its type index),
//! no job is left running, no job completed twice, every attempt is on record once, and the
//! SQLite file passes `PRAGMA integrity_check`.
//!
//! `GUNSYNC_KILLS` sets the number of kills (default 20; `scripts/kill-matrix` runs 200) and
//! `GUNSYNC_KILL_SEED` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::http::Method;
use gunsync::domain::Did;
use gunsync::emulator::faults::FaultRule;
use gunsync::ledger::JobKind;
use gunsync::timestamp::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::{TestApp, eventually, soul};

const TYPES: [&str; 6] = ["post", "image", "video", "audio", "recipe", "organization"];
/// Records at the default 20 kills; longer runs seed `RECORDS_PER_KILL` a kill, so work is still
/// in flight when most kills land.
const RECORDS: usize = 300;
const RECORDS_PER_KILL: usize = 15;
/// Seeded records that are also in the deletion registry.
const DELETED_RECORDS: usize = 12;
/// DIDs in the registry whose record no relay holds.
const DELETED_UNKNOWN: usize = 8;
const LEASE_MS: u64 = 1000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kill_9s_lose_nothing_and_complete_nothing_twice() {
    let kills = env_u64("GUNSYNC_KILLS").unwrap_or(20);
    let seed = env_u64("GUNSYNC_KILL_SEED").unwrap_or_else(rand::random);
    println!(
        "kill matrix: {kills} kills, seed {seed} (replay with GUNSYNC_KILL_SEED={seed} GUNSYNC_KILLS={kills})"
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let records = RECORDS.max(RECORDS_PER_KILL * kills as usize);
    let mut app = TestApp::start().await;
    let mut live = Vec::new();
    let mut deleted = Vec::new();
    for i in 0..records {
        let record_type = TYPES[i % TYPES.len()];
        let did = app.seed_record(&format!("{record_type}-{i:04}"), record_type);
        if i % (records / DELETED_RECORDS) == 0 && deleted.len() < DELETED_RECORDS {
            deleted.push((did, Some(record_type)));
        } else {
            live.push(did);
        }
    }
    for i in 0..DELETED_UNKNOWN {
        deleted.push((Did::from_soul(&soul(&format!("gone-{i:02}"))), None));
    }
    for (n, (did, _)) in deleted.iter().enumerate() {
        app.seed_deletion(did);
        // An earlier indexer put it in ES, so each delete has work to do.
        app.es.put_doc(
            "records",
            did.as_str(),
            json!({ "oip": { "did": did.as_str() } }),
        );
        // Some deletes fail twice first, so retries are in flight when kills land.
        if n % 4 == 0 {
            app.es.faults().add(
                FaultRule::status(gunsync::demo::es_doc_path("records", did.as_str()), 503)
                    .method(Method::DELETE)
                    .times(2),
            );
        }
    }
    // Slow relay reads keep several jobs running at any moment, so kills catch them mid-way.
    app.relay
        .fail(FaultRule::delay("/get", Duration::from_millis(40)));
    app.set("GUN_SYNC_INTERVAL", 300)
        .set("GUNSYNC_LEASE_MS", LEASE_MS)
        .set("GUNSYNC_BACKOFF_BASE_MS", 50)
        .set("GUNSYNC_BACKOFF_MAX_MS", 400)
        .set("GUNSYNC_MAX_ATTEMPTS", 12)
        .set("GUNSYNC_SYNCHRONOUS", "full")
        .set("GUNSYNC_RECORD_TYPES", TYPES.join(","));

    let started = Instant::now();
    // Each (job, lease) a kill cut short: its attempt must be reclaimed exactly once.
    let mut killed_leases = BTreeSet::new();
    for kill in 1..=kills {
        let mut daemon = app.spawn_daemon();
        // Anywhere from start-up (migrations, first cycle) to well into the work.
        let after = Duration::from_millis(rng.random_range(20..=700));
        tokio::time::sleep(after).await;
        daemon.signal("KILL");
        assert_eq!(
            daemon.wait(Duration::from_secs(10)).await,
            None,
            "kill {kill}: the daemon should die by the signal"
        );
        let running = running_leases(&app).await;
        let now_running = running.len();
        killed_leases.extend(running);
        // A lease must never outlive its term: nothing may be held past now + lease.
        let beyond = sql_i64_at(
            &app,
            "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_expires_at > ?1",
            Timestamp::now().plus(Duration::from_millis(LEASE_MS + 500)),
        )
        .await;
        assert_eq!(beyond, 0, "kill {kill}: a lease runs past its term");
        if std::env::var("TEST_LOG").is_ok() || kill % 10 == 0 || kill == kills {
            println!(
                "kill {kill}/{kills} after {after:?}: {now_running} running, {} done so far",
                sql_i64(&app, "SELECT count(*) FROM jobs WHERE state = 'done'").await
            );
        }
    }
    println!(
        "{kills} kills in {:.1}s; they cut {} leases short",
        started.elapsed().as_secs_f64(),
        killed_leases.len()
    );

    // The last run is allowed to finish: leases expire, are reclaimed, everything completes.
    let expected_jobs = (live.len() + deleted.len()) as i64;
    let mut daemon = app.spawn_daemon();
    // Up, with its signal handlers installed, before anything else is judged.
    let (status, _) = daemon.get_json("/healthz").await;
    assert_eq!(status, 200);
    let done_at = eventually(Duration::from_secs(60), || async {
        let done = sql_i64(&app, "SELECT count(*) FROM jobs WHERE state = 'done'").await;
        let deletes_done = deleted
            .iter()
            .all(|(did, _)| app.es.doc("records", did.as_str()).is_none());
        (done == expected_jobs && deletes_done && app.es.doc_count("records") == live.len())
            .then(Instant::now)
    })
    .await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
    println!(
        "final run settled; total {:.1}s",
        (done_at - started).as_secs_f64()
    );

    // Every live record indexed, as its own document.
    for did in &live {
        let doc = app
            .es
            .doc("records", did.as_str())
            .unwrap_or_else(|| panic!("{did} not indexed"));
        assert_eq!(doc["oip"]["did"], did.as_str());
    }
    assert_eq!(app.es.doc_count("records"), live.len());
    // Every deletion done: ES document gone, relay record tombstoned and out of its type index.
    for (did, record_type) in &deleted {
        assert!(app.es.doc("records", did.as_str()).is_none(), "{did} in ES");
        if let Some(record_type) = record_type {
            let node = app.relay.node(did.soul().as_str()).unwrap();
            assert!(
                node["deleted"] == Value::Bool(true) && node["data"].is_null(),
                "{did} not tombstoned: {node}"
            );
            let index = app
                .relay
                .node(&format!("oip:registry:index:{record_type}"))
                .unwrap();
            assert!(
                index[did.soul().as_str()].is_null(),
                "{did} still in its type index"
            );
        }
    }

    // The ledger: one job per record or deletion, all done, none running.
    let states = state_counts(&app).await;
    assert_eq!(
        states,
        BTreeMap::from([("done".to_owned(), expected_jobs)]),
        "every job done, none running, retrying or dead"
    );
    assert_eq!(
        app.jobs(JobKind::Delete).await.len(),
        deleted.len(),
        "one delete job per DID"
    );
    assert_eq!(
        app.jobs(JobKind::Discover).await.len(),
        live.len(),
        "one discover job per live record, none for deleted ones"
    );
    let done_twice = sql_i64(
        &app,
        "SELECT count(*) FROM (SELECT job_id FROM job_attempts WHERE outcome = 'done'
                               GROUP BY job_id HAVING count(*) > 1)",
    )
    .await;
    assert_eq!(done_twice, 0, "a job was completed twice");
    let done_not_once = sql_i64(
        &app,
        "SELECT count(*) FROM jobs AS j WHERE j.state = 'done' AND
           (SELECT count(*) FROM job_attempts AS a WHERE a.job_id = j.id AND a.outcome = 'done') <> 1",
    )
    .await;
    assert_eq!(
        done_not_once, 0,
        "a done job without exactly one done attempt"
    );
    // Every counted attempt is on record exactly once (interrupted ones are not counted).
    let unaccounted = sql_i64(
        &app,
        "SELECT count(*) FROM jobs AS j WHERE j.attempts <>
           (SELECT count(*) FROM job_attempts AS a WHERE a.job_id = j.id AND a.outcome <> 'interrupted')",
    )
    .await;
    assert_eq!(unaccounted, 0, "attempts and their history disagree");
    let expired_rows = sql_i64(
        &app,
        "SELECT count(*) FROM job_attempts WHERE outcome = 'lease_expired'",
    )
    .await;
    let expired = reclaimed_leases(&app).await;
    assert_eq!(
        expired_rows as usize,
        expired.len(),
        "a lease reclaimed twice"
    );
    let missing: Vec<_> = killed_leases.difference(&expired).collect();
    assert!(
        missing.is_empty(),
        "each lease a kill cut short is reclaimed once, as lease_expired; not: {missing:?}"
    );
    // A 1 s lease may also expire under a live daemon starved of CPU; it is reclaimed the same
    // way, and the checks above (done once, every attempt on record) hold for it too.
    println!(
        "{} attempts cut short by a kill were reclaimed (lease_expired), {} more expired under a live daemon",
        killed_leases.len(),
        expired.len() - killed_leases.len()
    );
    let mut conn = connect(&app).await;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    assert_eq!(integrity, "ok");
    app.assert_es_saw_no_bad_request();
}

/// A plain SQLite connection to the ledger file, as an operator's `sqlite3` would read it.
async fn connect(app: &TestApp) -> sqlx::SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&app.db)
        .busy_timeout(Duration::from_secs(10));
    sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("connect to the ledger file")
}

/// `job id:lease token` of every attempt reclaimed after its lease expired.
async fn reclaimed_leases(app: &TestApp) -> BTreeSet<String> {
    let mut conn = connect(app).await;
    let leases: Vec<String> = sqlx::query_scalar(
        "SELECT job_id || ':' || lease_token FROM job_attempts WHERE outcome = 'lease_expired'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    leases.into_iter().collect()
}

/// `job id:lease token` of every running job.
async fn running_leases(app: &TestApp) -> Vec<String> {
    let mut conn = connect(app).await;
    let leases =
        sqlx::query_scalar("SELECT id || ':' || lease_token FROM jobs WHERE state = 'running'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    leases
}

async fn state_counts(app: &TestApp) -> BTreeMap<String, i64> {
    let mut conn = connect(app).await;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    rows.into_iter().collect()
}

async fn sql_i64(app: &TestApp, sql: &'static str) -> i64 {
    let mut conn = connect(app).await;
    let value = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
    value
}

async fn sql_i64_at(app: &TestApp, sql: &'static str, at: Timestamp) -> i64 {
    let mut conn = connect(app).await;
    let value = sqlx::query_scalar(sql)
        .bind(at.to_string())
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
    value
}
