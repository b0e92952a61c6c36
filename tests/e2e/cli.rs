//! Every operator subcommand run as a user would: help, human output, the DESIGN §6 JSON shapes
//! and exit statuses.

use std::time::Duration;

use gunsync::ledger::{CycleCounts, JobKind};
use gunsync::timestamp::Timestamp;
use serde_json::Value;

use crate::helpers::{Step, TestApp, dead, is_ledger_timestamp, pending, seed_job};

const OPERATOR_COMMANDS: [&str; 8] = [
    "migrate", "jobs", "show", "stats", "requeue", "cancel", "enqueue", "prune",
];

/// The fields DESIGN §6 promises on every job object.
const JOB_FIELDS: [&str; 11] = [
    "id",
    "kind",
    "key",
    "state",
    "attempts",
    "max_attempts",
    "run_at",
    "last_error",
    "created_at",
    "updated_at",
    "processed_at",
];

#[track_caller]
fn assert_job_shape(job: &Value) {
    let object = job.as_object().expect("a job is a JSON object");
    for field in JOB_FIELDS {
        assert!(object.contains_key(field), "job lacks {field}: {job}");
    }
    for field in ["run_at", "created_at", "updated_at"] {
        let text = job[field].as_str().expect("timestamp is text");
        assert!(is_ledger_timestamp(text), "{field} = {text}");
    }
    if let Some(text) = job["processed_at"].as_str() {
        assert!(is_ledger_timestamp(text), "processed_at = {text}");
    }
}

#[test]
fn every_operator_command_explains_itself_with_an_example() {
    let app = TestApp::new();
    for command in OPERATOR_COMMANDS {
        let help = app.cli([command, "--help"]).success();
        assert!(
            help.stdout.contains("Example"),
            "{command} --help has no example:\n{}",
            help.stdout
        );
        assert!(help.stdout.contains("--database"), "{command}");
    }
    assert!(!app.db.exists(), "--help must not create a ledger");
}

#[test]
fn migrate_creates_the_ledger_where_database_points() {
    let app = TestApp::new();
    let nested = app.dir().join("deep/er/ledger.db");
    let run = app
        .cli(["--database", nested.to_str().unwrap(), "migrate"])
        .success();
    assert!(nested.exists());
    assert!(run.stdout.contains("schema version"), "{}", run.stdout);
    // Again: nothing to do, still fine.
    app.cli(["migrate"]).success();
    app.cli(["migrate"]).success();
    assert!(app.db.exists(), "GUNSYNC_DATABASE is honoured");
}

#[tokio::test]
async fn jobs_lists_newest_first_in_an_aligned_table_with_relative_times() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let retrying = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:aa:1",
        12,
        &[Step::Fail(503, "es answered 503")],
        Timestamp::now(),
    )
    .await;
    let newest = pending(&ledger, JobKind::Discover, "did:gun:aa:2").await;
    ledger.close().await;

    let out = app.cli(["jobs"]).success().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        lines[1].starts_with(&newest.to_string()),
        "newest first:\n{out}"
    );
    assert!(lines[2].starts_with(&retrying.to_string()), "{out}");
    assert!(
        lines[2].contains("in 9m") || lines[2].contains("in 10m"),
        "{out}"
    );
    assert!(lines[2].contains("es answered 503"), "{out}");
    // Aligned: the KIND column starts at the same offset on every line.
    let at = lines[0].find("KIND").unwrap();
    assert!(lines[1..].iter().all(|l| l[at..].starts_with("d")), "{out}");
}

#[tokio::test]
async fn jobs_json_is_an_array_of_job_objects_and_filters_combine() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let dead_delete = dead(&ledger, JobKind::Delete, "did:gun:bb:1", 2).await;
    dead(&ledger, JobKind::Discover, "did:gun:bb:2", 1).await;
    for i in 0..5 {
        pending(&ledger, JobKind::Delete, &format!("did:gun:bb:p{i}")).await;
    }
    ledger.close().await;

    let all = app.json(["jobs", "--json"]);
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), 7);
    all.iter().for_each(assert_job_shape);
    let ids: Vec<i64> = all.iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let dead_deletes = app.json(["jobs", "--state", "dead", "--kind", "delete", "--json"]);
    assert_eq!(dead_deletes.as_array().unwrap().len(), 1);
    let job = &dead_deletes[0];
    assert_eq!(job["id"], dead_delete.0);
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["max_attempts"], 2);
    assert!(job["last_error"].as_str().unwrap().contains("503"));
    assert!(job["processed_at"].is_string());

    let by_key = app.json(["jobs", "--key", "did:gun:bb:2", "--json"]);
    assert_eq!(by_key[0]["key"], "did:gun:bb:2");
    assert_eq!(by_key.as_array().unwrap().len(), 1);
    assert_eq!(
        app.json(["jobs", "--limit", "3", "--json"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        app.json(["jobs", "--limit", "0", "--json"])
            .as_array()
            .unwrap()
            .len(),
        7
    );
    assert_eq!(
        app.json(["jobs", "--state", "running", "--json"]),
        Value::Array(vec![])
    );
    assert!(
        app.cli(["jobs", "--state", "running"])
            .success()
            .stdout
            .contains("no jobs")
    );
}

#[tokio::test]
async fn show_explains_a_dead_job_and_lists_every_attempt() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let id = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:cc:1",
        3,
        &[
            Step::Fail(503, "es answered 503"),
            Step::Fail(429, "relay answered 429"),
            Step::Die(400, "illegal_argument_exception: ignore"),
        ],
        Timestamp::now(),
    )
    .await;
    ledger.close().await;

    let out = app.cli(["show", &id.to_string()]).success().stdout;
    for expected in [
        "dead",
        "3 of 3",
        "a permanent error",
        &format!("gunsync requeue {id}"),
        "illegal_argument_exception: ignore",
        "es answered 503",
        "relay answered 429",
        "ATTEMPT",
        "DURATION",
        "test-worker:1",
    ] {
        assert!(out.contains(expected), "show lacks {expected:?}:\n{out}");
    }
    // One attempt row each, with its outcome and HTTP status.
    let attempt_rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("ATTEMPT"))
        .skip(1)
        .collect();
    assert_eq!(attempt_rows.len(), 3, "{out}");
    assert!(attempt_rows[0].contains("retry") && attempt_rows[0].contains("503"));
    assert!(attempt_rows[2].contains("dead") && attempt_rows[2].contains("400"));
}

#[tokio::test]
async fn show_json_is_the_job_object_plus_its_attempts_log() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let id = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:dd:1",
        12,
        &[
            Step::Fail(503, "es answered 503"),
            Step::Fail(500, "relay answered 500"),
        ],
        Timestamp::now(),
    )
    .await;
    ledger.close().await;

    let job = app.job(id);
    assert_job_shape(&job);
    assert_eq!(job["state"], "retrying");
    let log = job["attempts_log"]
        .as_array()
        .expect("attempts_log is an array");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["outcome"], "retry");
    assert_eq!(log[0]["http_status"], 503);
    assert_eq!(log[1]["error"], "relay answered 500");
    assert!(is_ledger_timestamp(log[1]["started_at"].as_str().unwrap()));
    let why = job["explanation"]["why"].as_str().unwrap();
    assert!(why.contains("backoff after attempt 2"), "{why}");
    assert_eq!(job["explanation"]["next_run_at"], job["run_at"]);
}

#[tokio::test]
async fn show_names_the_lease_holder_of_a_running_job() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let id = seed_job(
        &ledger,
        JobKind::Discover,
        "did:gun:ee:1",
        12,
        &[Step::Hold],
        Timestamp::now(),
    )
    .await;
    ledger.close().await;
    let out = app.cli(["show", &id.to_string()]).success().stdout;
    assert!(
        out.contains("running attempt 1 of 12 on test-worker:1"),
        "{out}"
    );
    assert!(out.contains("lease"), "{out}");
    assert!(out.contains("expires in"), "{out}");
}

#[test]
fn show_of_an_unknown_job_fails_with_job_not_found() {
    let app = TestApp::new();
    app.cli(["migrate"]).success();
    let run = app.cli(["show", "424242"]).fails_with(1);
    assert!(
        run.stderr.contains("job 424242 not found"),
        "{}",
        run.stderr
    );
    let run = app.cli(["show", "424242", "--json"]).fails_with(1);
    assert!(run.stdout.is_empty());
}

#[tokio::test]
async fn stats_json_maps_every_state_to_its_count() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    dead(&ledger, JobKind::Delete, "did:gun:ff:1", 1).await;
    dead(&ledger, JobKind::Delete, "did:gun:ff:2", 1).await;
    seed_job(
        &ledger,
        JobKind::Discover,
        "did:gun:ff:3",
        12,
        &[Step::Succeed],
        Timestamp::now(),
    )
    .await;
    pending(&ledger, JobKind::Discover, "did:gun:ff:4").await;
    let cycle = ledger
        .start_cycle("http://relay:8765", Timestamp::now())
        .await
        .unwrap();
    let counts = CycleCounts {
        deletions_seen: 2,
        delete_enqueued: 2,
        ..Default::default()
    };
    ledger
        .finish_cycle(cycle, counts, None, Timestamp::now())
        .await
        .unwrap();
    ledger.close().await;

    let stats = app.json(["stats", "--json"]);
    let states = stats["states"].as_object().expect("states is an object");
    for state in [
        "pending",
        "running",
        "retrying",
        "done",
        "dead",
        "cancelled",
    ] {
        assert!(states[state].is_i64(), "states lacks {state}: {stats}");
    }
    assert_eq!(stats["states"]["dead"], 2);
    assert_eq!(stats["states"]["done"], 1);
    assert_eq!(stats["states"]["pending"], 1);
    assert_eq!(stats["states"]["running"], 0);
    assert_eq!(stats["kinds"]["delete"]["dead"], 2);
    assert_eq!(stats["total"], 4);
    assert_eq!(stats["runnable"], 1);
    assert!(stats["oldest_runnable_age_s"].is_number());
    assert_eq!(stats["last_cycles"][0]["deletions_seen"], 2);

    let out = app.cli(["stats"]).success().stdout;
    for expected in [
        "KIND",
        "dead",
        "delete",
        "runnable now",
        "http://relay:8765",
    ] {
        assert!(out.contains(expected), "stats lacks {expected:?}:\n{out}");
    }
}

#[test]
fn enqueue_adds_a_job_and_reports_an_active_duplicate_as_already_queued() {
    let app = TestApp::new();
    let first = app
        .cli([
            "enqueue",
            "delete",
            "did:gun:gg:1",
            "--payload",
            r#"{"recordType":"post"}"#,
        ])
        .success();
    assert!(first.stdout.contains("enqueued job 1"), "{}", first.stdout);
    let again = app.cli(["enqueue", "delete", "did:gun:gg:1"]).success();
    assert!(again.stdout.contains("already queued"), "{}", again.stdout);
    assert!(again.stdout.contains("job 1"), "{}", again.stdout);

    let jobs = app.json(["jobs", "--json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["kind"], "delete");
    assert_eq!(jobs[0]["state"], "pending");
    assert_eq!(jobs[0]["payload"]["recordType"], "post");
    // The same key under another kind is another job.
    app.cli(["enqueue", "discover", "did:gun:gg:1"]).success();
    assert_eq!(app.json(["jobs", "--json"]).as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn cancel_stops_waiting_jobs_and_reports_the_rest() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let done = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:hh:0",
        12,
        &[Step::Succeed],
        Timestamp::now(),
    )
    .await;
    let waiting = pending(&ledger, JobKind::Delete, "did:gun:hh:1").await;
    ledger.close().await;

    let run = app
        .cli(["cancel", &waiting.to_string(), &done.to_string(), "999"])
        .success();
    assert!(
        run.stdout.contains(&format!("cancelled 1 job: {waiting}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("job {done} is done")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("not found: 999"), "{}", run.stdout);
    let job = app.job(waiting);
    assert_eq!(job["state"], "cancelled");
    assert!(job["processed_at"].is_string());
    assert_eq!(app.job(done)["state"], "done");

    let run = app.cli(["cancel", "999"]).fails_with(1);
    assert!(run.stderr.contains("job 999 not found"), "{}", run.stderr);
}

#[tokio::test]
async fn prune_deletes_old_finished_jobs_with_their_attempts_and_nothing_else() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let long_ago = Timestamp::now().minus(Duration::from_secs(10 * 86_400));
    let old_done = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:ii:1",
        12,
        &[Step::Fail(503, "x"), Step::Succeed],
        long_ago,
    )
    .await;
    let old_dead = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:ii:2",
        1,
        &[Step::Die(400, "bad")],
        long_ago,
    )
    .await;
    let recent_done = seed_job(
        &ledger,
        JobKind::Delete,
        "did:gun:ii:3",
        12,
        &[Step::Succeed],
        Timestamp::now(),
    )
    .await;
    let old_pending = seed_job(&ledger, JobKind::Delete, "did:gun:ii:4", 12, &[], long_ago).await;
    ledger.close().await;

    let run = app
        .cli(["prune", "--older-than", "7d", "--state", "done"])
        .success();
    assert!(
        run.stdout.contains("pruned 1 job and 2 attempts"),
        "{}",
        run.stdout
    );
    app.cli(["show", &old_done.to_string()]).fails_with(1);
    assert_eq!(app.job(old_dead)["state"], "dead");

    let run = app.cli(["prune", "--older-than", "7d"]).success();
    assert!(
        run.stdout.contains("pruned 1 job and 1 attempt "),
        "{}",
        run.stdout
    );
    app.cli(["show", &old_dead.to_string()]).fails_with(1);
    assert_eq!(app.job(recent_done)["state"], "done");
    assert_eq!(app.job(old_pending)["state"], "pending");

    // The attempts went with the jobs: only the surviving jobs' attempts are left.
    let attempts = app
        .sql_i64("SELECT count(*) FROM job_attempts WHERE job_id NOT IN (SELECT id FROM jobs)")
        .await;
    assert_eq!(attempts, 0);
    assert_eq!(app.sql_i64("SELECT count(*) FROM job_attempts").await, 1);
}
