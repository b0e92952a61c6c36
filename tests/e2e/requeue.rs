//! `gunsync requeue`: dead, done, cancelled and retrying jobs back to pending, never a running
//! job, never a second active job for a key, and a dry run that changes nothing.

use gunsync::ledger::JobKind;
use gunsync::timestamp::Timestamp;

use crate::helpers::{Step, TestApp, dead, pending, seed_job};

#[tokio::test]
async fn requeue_of_a_dead_job_makes_it_pending_now_with_one_more_attempt() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let id = dead(&ledger, JobKind::Delete, "did:gun:r1:1", 3).await;
    ledger.close().await;
    let before = Timestamp::now();

    let run = app.cli(["requeue", &id.to_string()]).success();
    assert!(
        run.stdout
            .contains(&format!("requeued 1 job to pending, runnable now: {id}")),
        "{}",
        run.stdout
    );

    let job = app.job(id);
    assert_eq!(job["state"], "pending");
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["max_attempts"], 4, "one more try: attempts + 1");
    assert!(job["processed_at"].is_null());
    let run_at = Timestamp::parse(job["run_at"].as_str().unwrap()).unwrap();
    assert!(
        run_at >= before && run_at <= Timestamp::now(),
        "runnable now"
    );
    assert_eq!(job["last_error"], "es answered 503", "the reason is kept");
    assert_eq!(
        job["attempts_log"].as_array().unwrap().len(),
        3,
        "history is kept"
    );
}

#[tokio::test]
async fn requeue_with_reset_attempts_restarts_the_count() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let id = dead(&ledger, JobKind::Delete, "did:gun:r2:1", 3).await;
    ledger.close().await;

    app.cli(["requeue", "--reset-attempts", &id.to_string()])
        .success();
    let job = app.job(id);
    assert_eq!(job["state"], "pending");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["max_attempts"], 3);
}

#[tokio::test]
async fn requeue_by_filter_moves_finished_and_retrying_jobs_and_never_a_running_one() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let now = Timestamp::now();
    let dead_delete = dead(&ledger, JobKind::Delete, "did:gun:r3:1", 1).await;
    let done = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:r3:2",
        12,
        &[Step::Succeed],
        now,
    )
    .await;
    let retrying = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:r3:3",
        12,
        &[Step::Fail(503, "busy")],
        now,
    )
    .await;
    let dead_discover = dead(&ledger, JobKind::Discover, "did:gun:r3:4", 1).await;
    let running = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:r3:5",
        12,
        &[Step::Hold],
        now,
    )
    .await;
    ledger.close().await;

    // A running job named by id is left alone and reported.
    let run = app.cli(["requeue", &running.to_string()]).success();
    assert!(
        run.stdout.contains("skipped 1 job running"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("never touches a running job"),
        "{}",
        run.stdout
    );
    let job = app.job(running);
    assert_eq!(job["state"], "running");
    assert_eq!(job["leased_by"], "test-worker:1");

    let run = app.cli(["requeue", "--kind", "delete"]).success();
    assert!(run.stdout.contains("requeued 3 jobs"), "{}", run.stdout);
    assert!(
        run.stdout.contains("skipped 1 job running"),
        "{}",
        run.stdout
    );
    for id in [dead_delete, done, retrying] {
        assert_eq!(app.job(id)["state"], "pending", "job {id}");
    }
    assert_eq!(
        app.job(dead_discover)["state"],
        "dead",
        "other kinds untouched"
    );
    assert_eq!(app.job(running)["state"], "running");
}

#[tokio::test]
async fn requeue_never_creates_a_second_active_job_for_a_key() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let key = "did:gun:r4:1";
    let older_dead = dead(&ledger, JobKind::Delete, key, 1).await;
    let newer_dead = dead(&ledger, JobKind::Delete, key, 1).await;
    let other_key_dead = dead(&ledger, JobKind::Delete, "did:gun:r4:2", 1).await;
    let active = pending(&ledger, JobKind::Delete, "did:gun:r4:2").await;
    ledger.close().await;

    let run = app.cli(["requeue", "--state", "dead"]).success();
    // Of the two dead jobs of one key only the newest comes back; the other key has an active job.
    assert!(
        run.stdout.contains(&format!(
            "requeued 1 job to pending, runnable now: {newer_dead}"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("skipped 2 jobs as duplicates"),
        "{}",
        run.stdout
    );
    assert_eq!(app.job(older_dead)["state"], "dead");
    assert_eq!(app.job(other_key_dead)["state"], "dead");
    assert_eq!(app.job(active)["state"], "pending");

    let active_per_key = app
        .sql_i64(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM jobs
             WHERE state IN ('pending', 'running', 'retrying') GROUP BY kind, key)",
        )
        .await;
    assert_eq!(active_per_key, 1);
}

#[tokio::test]
async fn requeue_dry_run_shows_what_would_move_and_changes_nothing() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let a = dead(&ledger, JobKind::Delete, "did:gun:r5:1", 2).await;
    let b = dead(&ledger, JobKind::Delete, "did:gun:r5:2", 2).await;
    ledger.close().await;
    let before = app.json(["jobs", "--json"]);

    let run = app
        .cli(["requeue", "--state", "dead", "--dry-run"])
        .success();
    assert!(
        run.stdout.contains("would requeue 2 jobs"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&b.to_string()) && run.stdout.contains(&a.to_string()));
    assert!(run.stdout.contains("nothing was changed"), "{}", run.stdout);
    assert_eq!(app.json(["jobs", "--json"]), before);
}

#[tokio::test]
async fn bulk_requeue_works_in_batches_and_draws_no_progress_bar_into_a_pipe() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let jobs: Vec<_> = (0..1200)
        .map(|i| {
            gunsync::ledger::NewJob::new(JobKind::Delete, format!("did:gun:r6:{i}")).max_attempts(1)
        })
        .collect();
    ledger
        .enqueue_many(&jobs, gunsync::ledger::Uniqueness::Active, Timestamp::now())
        .await
        .unwrap();
    // Park them all dead the way workers would: lease, then fail permanently.
    let leased = ledger
        .lease(
            gunsync::ledger::lease::LeaseParams {
                max: 2000,
                worker: "test-worker:1",
                lease_for: std::time::Duration::from_secs(60),
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    let completions: Vec<_> = leased
        .iter()
        .map(|j| gunsync::ledger::Completion {
            id: j.id,
            lease_token: j.lease_token.clone(),
            finish: gunsync::ledger::Finish::Dead {
                error: "es answered 400".into(),
                http_status: Some(400),
            },
        })
        .collect();
    ledger
        .finish_many(&completions, Timestamp::now())
        .await
        .unwrap();
    ledger.close().await;

    let run = app
        .cli(["requeue", "--state", "dead", "--kind", "delete"])
        .success();
    assert!(run.stdout.contains("requeued 1200 jobs"), "{}", run.stdout);
    assert!(
        run.stderr.is_empty(),
        "no progress bar on a pipe: {:?}",
        run.stderr
    );
    let stats = app.json(["stats", "--json"]);
    assert_eq!(stats["states"]["pending"], 1200);
    assert_eq!(stats["states"]["dead"], 0);
}

#[test]
fn requeue_without_ids_or_filters_is_a_usage_error() {
    let app = TestApp::new();
    let run = app.cli(["requeue"]).fails_with(2);
    assert!(
        run.stderr.contains("job ids or at least one filter"),
        "{}",
        run.stderr
    );
    let run = app
        .cli(["requeue", "--dry-run", "--reset-attempts"])
        .fails_with(2);
    assert!(run.stderr.contains("--state"), "{}", run.stderr);
}

#[tokio::test]
async fn requeue_reports_missing_ids_and_fails_only_when_none_exists() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let id = dead(&ledger, JobKind::Delete, "did:gun:r7:1", 1).await;
    ledger.close().await;

    let run = app.cli(["requeue", &id.to_string(), "777"]).success();
    assert!(run.stdout.contains("not found: 777"), "{}", run.stdout);
    assert_eq!(app.job(id)["state"], "pending");

    let run = app.cli(["requeue", "777", "778"]).fails_with(1);
    assert!(
        run.stderr.contains("jobs 777, 778 not found"),
        "{}",
        run.stderr
    );
}
