//! Specifications of the state machine in `state.rs`: one test per transition and guard.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Connection;

use super::lease::LeaseParams;
use super::testutil::both_backends;
use super::testutil::{JobSeed, ledger, seed};
use super::*;
use crate::timestamp::Timestamp;

const MINUTE: Duration = Duration::from_secs(60);

fn params(max: u32) -> LeaseParams<'static> {
    LeaseParams {
        max,
        worker: "test-worker",
        lease_for: MINUTE,
    }
}

async fn state_of(ledger: &Ledger, id: JobId) -> JobView {
    ledger.get_job(id).await.unwrap().unwrap().0
}

async fn attempts_of(ledger: &Ledger, id: JobId) -> Vec<AttemptView> {
    ledger.get_job(id).await.unwrap().unwrap().1
}

#[tokio::test]
async fn restart_keeps_every_job_and_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db").to_str().unwrap().to_string();
    let now = Timestamp::now();
    let (done_id, running_id) = {
        let ledger = Ledger::open(LedgerOptions::new(&path)).await.unwrap();
        ledger
            .enqueue(&NewJob::new(JobKind::Delete, "a"), now)
            .await
            .unwrap();
        ledger
            .enqueue(&NewJob::new(JobKind::Delete, "b"), now)
            .await
            .unwrap();
        let mut jobs = ledger.lease(params(2), now).await.unwrap();
        let done = jobs.remove(0);
        ledger
            .finish(done.id, &done.lease_token, Finish::Done, now)
            .await
            .unwrap();
        let running = jobs.remove(0).id;
        ledger.close().await;
        (done.id, running)
    };
    let ledger = Ledger::open(LedgerOptions::new(&path)).await.unwrap();
    assert_eq!(state_of(&ledger, done_id).await.state, "done");
    assert_eq!(
        state_of(&ledger, running_id).await.state,
        "running",
        "a lease survives a restart until it expires"
    );
    assert_eq!(attempts_of(&ledger, done_id).await.len(), 1);
    let stats = ledger.stats(now, 5).await.unwrap();
    assert_eq!(
        (stats.states["done"], stats.states["running"], stats.total),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "just some text that is long enough to not look like an empty database file at all",
    )
    .unwrap();
    let err = Ledger::open(LedgerOptions::new(path.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotALedger { .. }), "{err}");
}

#[tokio::test]
async fn a_ledger_from_a_newer_gunsync_is_refused() {
    let (dir, ledger) = ledger().await;
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99990101000000, 'future', '2099-01-01', 1, x'00', 0)")
        .execute(&ledger.sqlite().writer)
        .await
        .unwrap();
    ledger.close().await;
    let path = dir.path().join("ledger.db");
    let err = Ledger::open(LedgerOptions::new(path.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::SchemaTooNew {
                found: 99990101000000,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_workers_complete_each_of_5000_jobs_exactly_once() {
    let (_dir, ledger) = ledger().await;
    let now = Timestamp::now();
    let jobs: Vec<_> = (0..5000)
        .map(|i| NewJob::new(JobKind::Discover, format!("did:gun:x:{i}")))
        .collect();
    assert_eq!(
        ledger
            .enqueue_many(&jobs, Uniqueness::Active, now)
            .await
            .unwrap()
            .created,
        5000
    );
    let mut workers = Vec::new();
    for w in 0..8 {
        let ledger = ledger.clone();
        workers.push(tokio::spawn(async move {
            let name = format!("w{w}");
            let mut completed = Vec::new();
            loop {
                let leased = ledger
                    .lease(
                        LeaseParams {
                            max: 7,
                            worker: &name,
                            lease_for: MINUTE,
                        },
                        Timestamp::now(),
                    )
                    .await
                    .unwrap();
                if leased.is_empty() {
                    return completed;
                }
                let completions: Vec<_> =
                    leased.iter().map(|j| j.completion(Finish::Done)).collect();
                let finished = ledger
                    .finish_many(&completions, Timestamp::now())
                    .await
                    .unwrap();
                assert_eq!(
                    finished.len(),
                    leased.len(),
                    "a fresh lease is never fenced out"
                );
                completed.extend(finished.into_iter().map(|f| f.id));
            }
        }));
    }
    let mut per_job: HashMap<JobId, u32> = HashMap::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            *per_job.entry(id).or_default() += 1;
        }
    }
    assert_eq!(per_job.len(), 5000);
    assert!(
        per_job.values().all(|&n| n == 1),
        "a job was completed twice"
    );
    let stats = ledger.stats(Timestamp::now(), 0).await.unwrap();
    assert_eq!((stats.states["done"], stats.states["running"]), (5000, 0));
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_attempts WHERE outcome = 'done'")
            .fetch_one(&ledger.sqlite().reader)
            .await
            .unwrap();
    assert_eq!(attempts, 5000);
}

/// Caps the file at its current size on the writer connection, so the next write that needs a
/// new page fails with `SQLITE_FULL` — what a full disk does — until the connection is replaced.
async fn fill_the_disk(ledger: &Ledger) {
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&ledger.sqlite().writer)
        .await
        .unwrap();
    // An integer the database itself reported: nothing to inject.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA max_page_count = {pages}"
    )))
    .execute(&ledger.sqlite().writer)
    .await
    .unwrap();
}

fn many_jobs(n: usize, prefix: &str) -> Vec<NewJob> {
    (0..n)
        .map(|i| {
            NewJob::new(JobKind::Discover, format!("did:gun:{prefix}:{i}"))
                .payload(serde_json::json!({ "padding": "x".repeat(200) }))
        })
        .collect()
}

#[tokio::test]
async fn another_applications_database_is_refused_before_any_setting_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let err = Ledger::open(LedgerOptions::new(path.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotALedger { .. }), "{err}");
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "delete", "the file's journal mode was left alone");
    assert!(!dir.path().join("other.db-wal").exists());
}

#[tokio::test]
async fn read_only_open_needs_an_existing_ledger_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo").join("gunsync.db");
    let err = Ledger::open_read_only(LedgerOptions::new(missing.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NoLedger { .. }), "{err}");
    assert!(err.to_string().starts_with("no ledger at "), "{err}");
    assert!(
        !dir.path().join("typo").exists(),
        "no directory was created"
    );
}

#[tokio::test]
async fn quick_check_passes_a_sound_ledger_and_names_the_damage_of_a_broken_one() {
    let (dir, ledger) = ledger().await;
    let keys: Vec<NewJob> = many_jobs(3000, "sound");
    ledger
        .enqueue_many(&keys, Uniqueness::Active, Timestamp::now())
        .await
        .unwrap();
    ledger.quick_check().await.expect("a sound ledger passes");
    let root: i64 =
        sqlx::query_scalar("SELECT rootpage FROM sqlite_master WHERE name = 'jobs_by_kind_key'")
            .fetch_one(&ledger.sqlite().writer)
            .await
            .unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&ledger.sqlite().writer)
        .await
        .unwrap();
    ledger.close().await;

    // Flip the header bytes of the index's root page (page type, cell count), as a failing
    // disk would.
    let path = dir.path().join("ledger.db");
    let mut bytes = std::fs::read(&path).unwrap();
    let start = ((root - 1) * page_size) as usize;
    for b in &mut bytes[start..start + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let damaged = Ledger::open(LedgerOptions::new(path.to_str().unwrap()))
        .await
        .unwrap();
    let err = damaged.quick_check().await.unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert!(err.is_corruption());
}

#[tokio::test]
async fn prune_gives_the_freed_space_back_so_the_file_shrinks() {
    let (_dir, ledger) = ledger().await;
    let now = Timestamp::now();
    ledger
        .enqueue_many(&many_jobs(20_000, "old"), Uniqueness::Active, now)
        .await
        .unwrap();
    // History: all of them finished long ago.
    sqlx::query("UPDATE jobs SET state = 'done', processed_at = '2026-01-01T00:00:00.000Z'")
        .execute(&ledger.sqlite().writer)
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&ledger.sqlite().writer)
        .await
        .unwrap();
    let before = std::fs::metadata(ledger.sqlite().path()).unwrap().len();
    let pruned = ledger.prune(now, None, &mut |_| {}).await.unwrap();
    assert_eq!(pruned.jobs, 20_000);
    let space = ledger.give_back_space(Vacuum::Incremental).await.unwrap();
    assert_eq!(space.free_pages, 0);
    assert!(
        space.bytes_after < before / 4,
        "{before} bytes before, {} after",
        space.bytes_after
    );
    assert_eq!(
        ledger.stats(now, 0).await.unwrap().total,
        0,
        "the counts followed the deletions"
    );
}

#[tokio::test]
async fn the_counts_follow_every_transition() {
    let (_dir, ledger) = ledger().await;
    let now = Timestamp::now();
    ledger
        .enqueue_many(&many_jobs(10, "count"), Uniqueness::Active, now)
        .await
        .unwrap();
    let jobs = ledger.lease(params(4), now).await.unwrap();
    let done = Completion {
        id: jobs[0].id,
        lease_token: jobs[0].lease_token.clone(),
        finish: Finish::Done,
    };
    let dead = Completion {
        id: jobs[1].id,
        lease_token: jobs[1].lease_token.clone(),
        finish: Finish::Dead {
            error: "bad".into(),
            http_status: None,
        },
    };
    ledger.finish_many(&[done, dead], now).await.unwrap();
    ledger
        .release(jobs[2].id, &jobs[2].lease_token, now)
        .await
        .unwrap();
    let stats = ledger.stats(now, 0).await.unwrap();
    let counted: Vec<(&str, i64)> = ["pending", "running", "done", "dead"]
        .iter()
        .map(|s| (*s, stats.states[*s]))
        .collect();
    assert_eq!(
        counted,
        [("pending", 7), ("running", 1), ("done", 1), ("dead", 1)]
    );
    // The same counts as counting the rows.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state")
            .fetch_all(&ledger.sqlite().writer)
            .await
            .unwrap();
    for (state, n) in rows {
        assert_eq!(stats.states[&state], n, "{state}");
    }
}

#[tokio::test]
async fn leasing_never_walks_the_jobs_scheduled_later() {
    let (_dir, ledger) = ledger().await;
    let now = Timestamp::now();
    let later = now.plus(Duration::from_secs(3600));
    // Priority 0 jobs waiting for an hour, in front of runnable priority 10 jobs.
    let waiting: Vec<NewJob> = (0..5000)
        .map(|i| NewJob::new(JobKind::Delete, format!("did:gun:w:{i}")).run_at(later))
        .collect();
    let runnable: Vec<NewJob> = (0..10)
        .map(|i| NewJob::new(JobKind::Discover, format!("did:gun:r:{i}")).priority(10))
        .collect();
    ledger
        .enqueue_many(&waiting, Uniqueness::Active, now)
        .await
        .unwrap();
    ledger
        .enqueue_many(&runnable, Uniqueness::Active, now)
        .await
        .unwrap();
    let jobs = ledger.lease(params(20), now).await.unwrap();
    assert_eq!(jobs.len(), 10);
    assert!(jobs.iter().all(|j| j.kind_name == "discover"));
    // The plan of one level's lease: a search of jobs_runnable bounded by priority and run_at.
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id FROM jobs INDEXED BY jobs_runnable
         WHERE state IN ('pending', 'retrying') AND priority = 0 AND run_at <= '2026-01-01'
         ORDER BY run_at, id LIMIT 5",
    )
    .fetch_all(&ledger.sqlite().writer)
    .await
    .unwrap();
    let detail = plan
        .iter()
        .map(|p| p.3.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        detail.contains("SEARCH jobs USING") && detail.contains("priority=? AND run_at<?"),
        "{detail}"
    );
    assert!(!detail.contains("TEMP B-TREE"), "no sort: {detail}");
}

#[tokio::test]
async fn a_failed_single_statement_write_is_reported_and_cleared_by_the_next_success() {
    let (_dir, ledger) = ledger().await;
    let id = seed(&ledger, JobSeed::default()).await;
    fill_the_disk(&ledger).await;
    let big = serde_json::json!({ "saved": "y".repeat(64 * 1024) });
    let leased = ledger.lease(params(1), Timestamp::now()).await.unwrap();
    let err = ledger
        .set_payload(id, &leased[0].lease_token, &big, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Database(_)), "{err}");
    assert!(ledger.health().write_error.is_some());
    ledger
        .set_payload(id, &leased[0].lease_token, &big, Timestamp::now())
        .await
        .expect("a fresh connection writes");
    assert!(ledger.health().write_error.is_none());
}

#[tokio::test]
async fn a_full_disk_fails_writes_without_wedging_the_writer() {
    let (_dir, ledger) = ledger().await;
    let now = Timestamp::now();
    fill_the_disk(&ledger).await;
    let err = ledger
        .enqueue_many(&many_jobs(2000, "full"), Uniqueness::Active, now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    let health = ledger.health();
    let failure = health.write_error.expect("the failure is reported");
    assert!(failure.error.contains("full"), "{failure:?}");
    assert!(health.corrupt.is_none());

    // The failed transaction closed its connection; the next write gets a fresh one (here: one
    // without the cap, as if space were freed) and the ledger is writable again at once.
    let report = ledger
        .enqueue_many(&many_jobs(2000, "after"), Uniqueness::Active, now)
        .await
        .expect("writes resume once space is back");
    assert_eq!(report.created, 2000);
    assert!(ledger.health().write_error.is_none(), "a success clears it");
    let jobs = ledger.lease(params(10), now).await.unwrap();
    assert_eq!(jobs.len(), 10, "the writer can lease and commit again");
}

both_backends! {
    async fn lease_takes_runnable_jobs_in_priority_then_run_at_order(ledger) {
        let now = Timestamp::now();
        let later = ledger
            .enqueue(
                &NewJob::new(JobKind::Discover, "later").run_at(now.plus(MINUTE)),
                now,
            )
            .await
            .unwrap()
            .id();
        let second = ledger
            .enqueue(
                &NewJob::new(JobKind::Discover, "second").run_at(now.minus(MINUTE)),
                now,
            )
            .await
            .unwrap()
            .id();
        let first = ledger
            .enqueue(&NewJob::new(JobKind::Discover, "first").priority(-1), now)
            .await
            .unwrap()
            .id();
        let third = ledger
            .enqueue(&NewJob::new(JobKind::Discover, "third"), now)
            .await
            .unwrap()
            .id();
        let leased = ledger.lease(params(2), now).await.unwrap();
        let mut ids: Vec<_> = leased.iter().map(|j| j.id).collect();
        ids.sort();
        let mut expected = vec![first, second];
        expected.sort();
        assert_eq!(ids, expected);
        let rest = ledger.lease(params(10), now).await.unwrap();
        assert_eq!(
            rest.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![third],
            "future job {later} must wait"
        );
    }

    async fn lease_marks_running_counts_the_attempt_and_opens_an_attempt_row(ledger) {
        let now = Timestamp::now();
        let id = ledger
            .enqueue(&NewJob::new(JobKind::Delete, "did:gun:a:1"), now)
            .await
            .unwrap()
            .id();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        assert_eq!(
            (job.id, job.attempt, job.kind().unwrap()),
            (id, 1, JobKind::Delete)
        );
        let view = state_of(&ledger, id).await;
        assert_eq!(view.state, "running");
        assert_eq!(view.leased_by.as_deref(), Some("test-worker"));
        assert_eq!(view.lease_expires_at, Some(now.plus(MINUTE)));
        let attempts = attempts_of(&ledger, id).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (attempts[0].attempt, attempts[0].outcome.as_str()),
            (1, "running")
        );
    }

    async fn lease_does_not_filter_on_attempts(ledger) {
        // A requeued dead job may have attempts == max_attempts; leasing must still take it.
        let id = seed(
            &ledger,
            JobSeed {
                state: JobState::Pending,
                attempts: 12,
                max_attempts: 12,
                ..Default::default()
            },
        )
        .await;
        let leased = ledger.lease(params(1), Timestamp::now()).await.unwrap();
        assert_eq!(leased[0].id, id);
        assert_eq!(leased[0].attempt, 13);
    }

    async fn done_sets_processed_at_and_closes_the_attempt(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Discover, "k"), now)
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        let state = ledger
            .finish(job.id, &job.lease_token, Finish::Done, now)
            .await
            .unwrap();
        assert_eq!(state, JobState::Done);
        let view = state_of(&ledger, job.id).await;
        assert_eq!(
            (view.state.as_str(), view.processed_at),
            ("done", Some(now))
        );
        assert_eq!((view.lease_expires_at, view.leased_by), (None, None));
        let attempts = attempts_of(&ledger, job.id).await;
        assert_eq!(
            (attempts[0].outcome.as_str(), attempts[0].finished_at),
            ("done", Some(now))
        );
    }

    async fn transient_failure_retries_at_the_given_time_with_the_error(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Delete, "k"), now)
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        let at = now.plus(MINUTE);
        let finish = Finish::Retry {
            at,
            error: "es answered 503".into(),
            http_status: Some(503),
        };
        assert_eq!(
            ledger
                .finish(job.id, &job.lease_token, finish, now)
                .await
                .unwrap(),
            JobState::Retrying
        );
        let view = state_of(&ledger, job.id).await;
        assert_eq!(
            (view.state.as_str(), view.run_at, view.processed_at),
            ("retrying", at, None)
        );
        assert_eq!(view.last_error.as_deref(), Some("es answered 503"));
        let attempt = &attempts_of(&ledger, job.id).await[0];
        assert_eq!(
            (attempt.outcome.as_str(), attempt.http_status),
            ("retry", Some(503))
        );
        assert!(
            ledger.lease(params(1), now).await.unwrap().is_empty(),
            "not runnable before run_at"
        );
        assert_eq!(ledger.lease(params(1), at).await.unwrap()[0].attempt, 2);
    }

    async fn permanent_failure_is_dead_at_once_with_the_reason(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Discover, "k"), now)
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        let finish = Finish::Dead {
            error: "record has no oip.ver".into(),
            http_status: None,
        };
        assert_eq!(
            ledger
                .finish(job.id, &job.lease_token, finish, now)
                .await
                .unwrap(),
            JobState::Dead
        );
        let view = state_of(&ledger, job.id).await;
        assert_eq!(
            (view.state.as_str(), view.processed_at, view.attempts),
            ("dead", Some(now), 1)
        );
        assert_eq!(view.last_error.as_deref(), Some("record has no oip.ver"));
    }

    async fn a_retry_on_the_last_attempt_parks_the_job_dead(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Delete, "k").max_attempts(2), now)
            .await
            .unwrap();
        for expected in [JobState::Retrying, JobState::Dead] {
            let job = ledger
                .lease(params(1), now.plus(MINUTE * 10))
                .await
                .unwrap()
                .remove(0);
            let finish = Finish::Retry {
                at: now,
                error: "boom".into(),
                http_status: Some(500),
            };
            assert_eq!(
                ledger
                    .finish(job.id, &job.lease_token, finish, now)
                    .await
                    .unwrap(),
                expected
            );
        }
        assert!(
            ledger
                .lease(params(1), now.plus(MINUTE * 10))
                .await
                .unwrap()
                .is_empty(),
            "dead jobs are never leased"
        );
    }

    async fn last_error_survives_a_later_success(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Delete, "k"), now)
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        ledger
            .finish(
                job.id,
                &job.lease_token,
                Finish::Retry {
                    at: now,
                    error: "first failure".into(),
                    http_status: None,
                },
                now,
            )
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        ledger
            .finish(job.id, &job.lease_token, Finish::Done, now)
            .await
            .unwrap();
        let view = state_of(&ledger, job.id).await;
        assert_eq!(
            (view.state.as_str(), view.last_error.as_deref()),
            ("done", Some("first failure"))
        );
        let outcomes: Vec<_> = attempts_of(&ledger, job.id)
            .await
            .into_iter()
            .map(|a| a.outcome)
            .collect();
        assert_eq!(outcomes, ["retry", "done"]);
    }

    async fn expired_lease_cannot_complete_job_after_another_worker_took_it(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Delete, "k"), now)
            .await
            .unwrap();
        let stale = ledger.lease(params(1), now).await.unwrap().remove(0);
        let after_expiry = now.plus(MINUTE * 2);
        let reclaimed = ledger.reclaim_expired(after_expiry).await.unwrap();
        assert_eq!(
            reclaimed,
            Reclaimed {
                retrying: 1,
                dead: 0
            }
        );
        let fresh = ledger
            .lease(params(1), after_expiry)
            .await
            .unwrap()
            .remove(0);
        assert_eq!((fresh.id, fresh.attempt), (stale.id, 2));

        // The stale worker wakes up: every fenced write says "lease lost" and changes nothing.
        for finish in [
            Finish::Done,
            Finish::Dead {
                error: "x".into(),
                http_status: None,
            },
        ] {
            let err = ledger
                .finish(stale.id, &stale.lease_token, finish, after_expiry)
                .await
                .unwrap_err();
            assert!(matches!(err, LedgerError::LeaseLost(id) if id == stale.id));
        }
        assert!(matches!(
            ledger
                .heartbeat(
                    stale.id,
                    &stale.lease_token,
                    after_expiry.plus(MINUTE),
                    after_expiry
                )
                .await,
            Err(LedgerError::LeaseLost(_))
        ));
        assert!(matches!(
            ledger
                .release(stale.id, &stale.lease_token, after_expiry)
                .await,
            Err(LedgerError::LeaseLost(_))
        ));
        assert!(matches!(
            ledger
                .set_payload(
                    stale.id,
                    &stale.lease_token,
                    &serde_json::json!({"x": 1}),
                    after_expiry
                )
                .await,
            Err(LedgerError::LeaseLost(_))
        ));
        let view = state_of(&ledger, stale.id).await;
        assert_eq!(view.state, "running");
        assert_eq!(view.payload, serde_json::json!({}));

        // The new holder finishes normally.
        ledger
            .finish(fresh.id, &fresh.lease_token, Finish::Done, after_expiry)
            .await
            .unwrap();
        let outcomes: Vec<_> = attempts_of(&ledger, stale.id)
            .await
            .into_iter()
            .map(|a| a.outcome)
            .collect();
        assert_eq!(outcomes, ["lease_expired", "done"]);
    }

    async fn reclaim_returns_expired_jobs_runnable_now_with_lease_expired_error(ledger) {
        let now = Timestamp::now();
        let alive = seed(
            &ledger,
            JobSeed {
                state: JobState::Running,
                lease_expires_at: Some(now.plus(MINUTE)),
                ..Default::default()
            },
        )
        .await;
        let expired = seed(
            &ledger,
            JobSeed {
                state: JobState::Running,
                attempts: 3,
                lease_expires_at: Some(now.minus(MINUTE)),
                ..Default::default()
            },
        )
        .await;
        let exhausted = seed(
            &ledger,
            JobSeed {
                state: JobState::Running,
                attempts: 12,
                max_attempts: 12,
                lease_expires_at: Some(now),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            ledger.reclaim_expired(now).await.unwrap(),
            Reclaimed {
                retrying: 1,
                dead: 1
            }
        );
        let views = [
            state_of(&ledger, alive).await,
            state_of(&ledger, expired).await,
            state_of(&ledger, exhausted).await,
        ];
        assert_eq!(
            views.each_ref().map(|v| v.state.as_str()),
            ["running", "retrying", "dead"]
        );
        assert_eq!(views[1].run_at, now);
        assert_eq!(views[1].attempts, 3, "the burned attempt still counts");
        assert_eq!(views[1].last_error.as_deref(), Some("lease expired"));
        assert_eq!(views[2].processed_at, Some(now));
    }

    async fn heartbeat_extends_the_lease_so_reclaim_leaves_the_job_alone(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Discover, "k"), now)
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        ledger
            .heartbeat(
                job.id,
                &job.lease_token,
                now.plus(MINUTE * 5),
                now.plus(MINUTE / 2),
            )
            .await
            .unwrap();
        assert_eq!(
            ledger.reclaim_expired(now.plus(MINUTE * 2)).await.unwrap(),
            Reclaimed::default()
        );
        ledger
            .finish(job.id, &job.lease_token, Finish::Done, now.plus(MINUTE * 3))
            .await
            .unwrap();
    }

    async fn release_returns_the_job_to_pending_without_burning_the_attempt(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Discover, "k"), now)
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        ledger.release(job.id, &job.lease_token, now).await.unwrap();
        let view = state_of(&ledger, job.id).await;
        assert_eq!(
            (view.state.as_str(), view.attempts, view.run_at),
            ("pending", 0, now)
        );
        assert_eq!(attempts_of(&ledger, job.id).await[0].outcome, "interrupted");
        assert_eq!(ledger.lease(params(1), now).await.unwrap()[0].attempt, 1);
    }

    async fn set_payload_is_visible_to_the_next_attempt(ledger) {
        let now = Timestamp::now();
        ledger
            .enqueue(&NewJob::new(JobKind::Delete, "k"), now)
            .await
            .unwrap();
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        let payload = serde_json::json!({"recordType": "post"});
        ledger
            .set_payload(job.id, &job.lease_token, &payload, now)
            .await
            .unwrap();
        ledger
            .finish(
                job.id,
                &job.lease_token,
                Finish::Retry {
                    at: now,
                    error: "x".into(),
                    http_status: None,
                },
                now,
            )
            .await
            .unwrap();
        assert_eq!(
            ledger.lease(params(1), now).await.unwrap()[0].payload,
            payload
        );
    }

    async fn requeue_of_a_dead_job_grants_exactly_one_more_attempt(ledger) {
        let now = Timestamp::now();
        let id = seed(
            &ledger,
            JobSeed {
                state: JobState::Dead,
                attempts: 12,
                max_attempts: 12,
                last_error: Some("boom".into()),
                ..Default::default()
            },
        )
        .await;
        let report = ledger
            .requeue(
                &Requeue {
                    ids: vec![id],
                    ..Default::default()
                },
                now,
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(report.requeued, vec![id]);
        let view = state_of(&ledger, id).await;
        assert_eq!(
            (
                view.state.as_str(),
                view.attempts,
                view.max_attempts,
                view.run_at,
                view.processed_at
            ),
            ("pending", 12, 13, now, None)
        );
        assert_eq!(view.last_error.as_deref(), Some("boom"));
        let job = ledger.lease(params(1), now).await.unwrap().remove(0);
        let finish = Finish::Retry {
            at: now,
            error: "again".into(),
            http_status: None,
        };
        assert_eq!(
            ledger
                .finish(job.id, &job.lease_token, finish, now)
                .await
                .unwrap(),
            JobState::Dead
        );
    }

    async fn requeue_with_reset_attempts_restarts_the_count(ledger) {
        let id = seed(
            &ledger,
            JobSeed {
                state: JobState::Dead,
                attempts: 12,
                ..Default::default()
            },
        )
        .await;
        let request = Requeue {
            state: Some(JobState::Dead),
            reset_attempts: true,
            ..Default::default()
        };
        ledger
            .requeue(&request, Timestamp::now(), &mut |_, _| {})
            .await
            .unwrap();
        let view = state_of(&ledger, id).await;
        assert_eq!(
            (view.state.as_str(), view.attempts, view.max_attempts),
            ("pending", 0, 12)
        );
    }

    async fn requeue_never_touches_running_jobs_and_never_duplicates_an_active_key(ledger) {
        let now = Timestamp::now();
        let running = seed(
            &ledger,
            JobSeed {
                key: "busy".into(),
                state: JobState::Running,
                ..Default::default()
            },
        )
        .await;
        let old_dead = seed(
            &ledger,
            JobSeed {
                key: "busy".into(),
                state: JobState::Dead,
                ..Default::default()
            },
        )
        .await;
        let older = seed(
            &ledger,
            JobSeed {
                key: "twice".into(),
                state: JobState::Done,
                ..Default::default()
            },
        )
        .await;
        let newer = seed(
            &ledger,
            JobSeed {
                key: "twice".into(),
                state: JobState::Dead,
                ..Default::default()
            },
        )
        .await;
        let pending = seed(
            &ledger,
            JobSeed {
                state: JobState::Pending,
                ..Default::default()
            },
        )
        .await;
        let ids = vec![running, old_dead, older, newer, pending, JobId(999)];
        let dry = ledger
            .requeue(
                &Requeue {
                    ids: ids.clone(),
                    dry_run: true,
                    ..Default::default()
                },
                now,
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(
            state_of(&ledger, newer).await.state,
            "dead",
            "a dry run changes nothing"
        );
        let report = ledger
            .requeue(
                &Requeue {
                    ids,
                    ..Default::default()
                },
                now,
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(dry, report, "a dry run reports what the real run does");
        assert_eq!(report.requeued, vec![newer]);
        assert_eq!(
            (
                report.matched,
                report.skipped_running,
                report.skipped_pending,
                report.skipped_duplicate
            ),
            (5, 1, 1, 2)
        );
        assert_eq!(report.missing, vec![JobId(999)]);
        assert_eq!(state_of(&ledger, running).await.state, "running");
        assert_eq!(state_of(&ledger, old_dead).await.state, "dead");
        assert_eq!(state_of(&ledger, older).await.state, "done");
    }

    async fn requeue_without_ids_or_filters_is_refused(ledger) {
        let err = ledger
            .requeue(&Requeue::default(), Timestamp::now(), &mut |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, LedgerError::Invalid { .. }));
    }

    async fn requeue_works_in_batches_and_reports_progress(ledger) {
        let now = Timestamp::now();
        let jobs: Vec<_> = (0..1200)
            .map(|i| NewJob::new(JobKind::Delete, format!("k{i}")))
            .collect();
        ledger
            .enqueue_many(&jobs, Uniqueness::Active, now)
            .await
            .unwrap();
        let cancelled = ledger
            .cancel(&(1..=1200).map(JobId).collect::<Vec<_>>(), now)
            .await
            .unwrap();
        assert_eq!(cancelled.cancelled.len(), 1200);
        let mut calls = Vec::new();
        let report = ledger
            .requeue(
                &Requeue {
                    kind: Some(JobKind::Delete),
                    ..Default::default()
                },
                now,
                &mut |done, total| calls.push((done, total)),
            )
            .await
            .unwrap();
        assert_eq!(report.requeued.len(), 1200);
        assert_eq!(calls, vec![(500, 1200), (1000, 1200), (1200, 1200)]);
    }

    async fn cancel_stops_pending_and_retrying_jobs_only(ledger) {
        let now = Timestamp::now();
        let pending = seed(
            &ledger,
            JobSeed {
                state: JobState::Pending,
                ..Default::default()
            },
        )
        .await;
        let retrying = seed(
            &ledger,
            JobSeed {
                state: JobState::Retrying,
                ..Default::default()
            },
        )
        .await;
        let running = seed(
            &ledger,
            JobSeed {
                state: JobState::Running,
                ..Default::default()
            },
        )
        .await;
        let done = seed(
            &ledger,
            JobSeed {
                state: JobState::Done,
                ..Default::default()
            },
        )
        .await;
        let report = ledger
            .cancel(&[pending, retrying, running, done, JobId(77)], now)
            .await
            .unwrap();
        assert_eq!(report.cancelled, vec![pending, retrying]);
        assert_eq!(
            report.not_cancellable,
            vec![(running, JobState::Running), (done, JobState::Done)]
        );
        assert_eq!(report.missing, vec![JobId(77)]);
        let view = state_of(&ledger, pending).await;
        assert_eq!(
            (view.state.as_str(), view.processed_at),
            ("cancelled", Some(now))
        );
        assert!(ledger.lease(params(10), now).await.unwrap().is_empty());
    }

    async fn prune_deletes_old_finished_jobs_and_their_attempts_only(ledger) {
        let now = Timestamp::now();
        let day = Duration::from_secs(86_400);
        ledger
            .enqueue(
                &NewJob::new(JobKind::Discover, "with-history"),
                now.minus(day * 10),
            )
            .await
            .unwrap();
        let job = ledger
            .lease(params(1), now.minus(day * 10))
            .await
            .unwrap()
            .remove(0);
        ledger
            .finish(job.id, &job.lease_token, Finish::Done, now.minus(day * 9))
            .await
            .unwrap();
        let old_dead = seed(
            &ledger,
            JobSeed {
                state: JobState::Dead,
                processed_at: Some(now.minus(day * 8)),
                ..Default::default()
            },
        )
        .await;
        let recent = seed(
            &ledger,
            JobSeed {
                state: JobState::Done,
                processed_at: Some(now.minus(day)),
                ..Default::default()
            },
        )
        .await;
        let active = seed(
            &ledger,
            JobSeed {
                state: JobState::Retrying,
                ..Default::default()
            },
        )
        .await;

        let only_dead = ledger
            .prune(now.minus(day * 7), Some(JobState::Dead), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(
            only_dead,
            Pruned {
                jobs: 1,
                attempts: 0
            }
        );
        assert!(ledger.get_job(old_dead).await.unwrap().is_none());
        let rest = ledger
            .prune(now.minus(day * 7), None, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(
            rest,
            Pruned {
                jobs: 1,
                attempts: 1
            }
        );
        assert!(ledger.get_job(job.id).await.unwrap().is_none());
        assert!(ledger.get_job(recent).await.unwrap().is_some());
        assert!(ledger.get_job(active).await.unwrap().is_some());
        assert!(matches!(
            ledger
                .prune(now, Some(JobState::Running), &mut |_| {})
                .await,
            Err(LedgerError::Invalid { .. })
        ));
    }

    async fn stats_count_every_state_and_the_runnable_backlog(ledger) {
        let now = Timestamp::now();
        seed(
            &ledger,
            JobSeed {
                state: JobState::Pending,
                run_at: Some(now.minus(MINUTE)),
                ..Default::default()
            },
        )
        .await;
        seed(
            &ledger,
            JobSeed {
                state: JobState::Retrying,
                run_at: Some(now.plus(MINUTE)),
                ..Default::default()
            },
        )
        .await;
        seed(
            &ledger,
            JobSeed {
                kind: JobKind::Delete,
                state: JobState::Dead,
                ..Default::default()
            },
        )
        .await;
        let stats = ledger.stats(now, 5).await.unwrap();
        assert_eq!(stats.states.len(), JobState::ALL.len());
        assert_eq!(
            (
                stats.states["pending"],
                stats.states["retrying"],
                stats.states["dead"],
                stats.states["done"]
            ),
            (1, 1, 1, 0)
        );
        assert_eq!(stats.kinds["delete"]["dead"], 1);
        assert_eq!(stats.runnable, 1);
        assert_eq!(stats.oldest_runnable_age_s, Some(60.0));
    }

    async fn cycles_are_recorded_with_their_counts(ledger) {
        let now = Timestamp::now();
        let id = ledger.start_cycle("http://relay:8765", now).await.unwrap();
        assert_eq!(ledger.last_cycle_finished_at().await.unwrap(), None);
        let counts = CycleCounts {
            deletions_seen: 5,
            records_seen: 10,
            delete_enqueued: 5,
            discover_enqueued: 9,
            rejected: 1,
            ..Default::default()
        };
        ledger
            .finish_cycle(
                id,
                counts,
                Some("type index video: relay answered 500"),
                now.plus(MINUTE),
            )
            .await
            .unwrap();
        assert_eq!(
            ledger.last_cycle_finished_at().await.unwrap(),
            Some(now.plus(MINUTE))
        );
        let cycles = ledger.recent_cycles(10).await.unwrap();
        assert_eq!(
            (
                cycles[0].records_seen,
                cycles[0].discover_enqueued,
                cycles[0].rejected
            ),
            (10, 9, 1)
        );
        assert!(cycles[0].error.as_deref().unwrap().contains("500"));
    }

    async fn prune_cycles_deletes_only_the_records_of_old_cycles(ledger) {
        let now = Timestamp::now();
        for age_hours in [200, 169, 1] {
            let started = now.minus(Duration::from_secs(age_hours * 3600));
            let id = ledger.start_cycle("http://relay/", started).await.unwrap();
            ledger
                .finish_cycle(id, CycleCounts::default(), None, started)
                .await
                .unwrap();
        }
        let pruned = ledger
            .prune_cycles(now.minus(Duration::from_secs(7 * 24 * 3600)))
            .await
            .unwrap();
        assert_eq!(pruned, 2);
        assert_eq!(ledger.recent_cycles(10).await.unwrap().len(), 1);
    }
}
