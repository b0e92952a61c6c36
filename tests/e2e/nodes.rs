//! Several nodes, one ledger (DESIGN §7): two `gunsync run` processes share one PostgreSQL
//! database against the relay and ES emulators. They split the work (`FOR UPDATE SKIP LOCKED`),
//! never run two sync cycles at once (the advisory lock), never do a job twice, and when one is
//! killed the other finishes what it held once its leases expire.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::Method;
use gunsync::domain::Did;
use gunsync::emulator::faults::FaultRule;
use gunsync::ledger::{JobFilter, JobId, JobKind, Ledger};

use crate::support::{Daemon, TestApp, eventually};

const TYPES: [&str; 4] = ["post", "image", "video", "audio"];

/// Seeds `records` records over [`TYPES`]; returns their DIDs.
fn seed_records(app: &TestApp, records: usize) -> Vec<Did> {
    (0..records)
        .map(|i| {
            let record_type = TYPES[i % TYPES.len()];
            app.seed_record(&format!("{record_type}-{i:05}"), record_type)
        })
        .collect()
}

/// One job as the ledger has it at the end: its attempts' outcomes and who ran them.
struct Job {
    kind: String,
    key: String,
    state: String,
    outcomes: Vec<String>,
    workers: BTreeSet<String>,
}

/// Every job and its attempts.
struct History {
    jobs: BTreeMap<JobId, Job>,
}

impl History {
    async fn read(ledger: &Ledger) -> History {
        let views = ledger
            .list_jobs(&JobFilter {
                limit: 1_000_000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        let mut jobs = BTreeMap::new();
        for view in views {
            let (job, attempts) = ledger.get_job(JobId(view.id)).await.unwrap().unwrap();
            let outcomes = attempts.iter().map(|a| a.outcome.clone()).collect();
            let workers = attempts
                .iter()
                .filter_map(|a| a.leased_by.clone())
                .collect();
            let entry = Job {
                kind: job.kind,
                key: job.key,
                state: job.state,
                outcomes,
                workers,
            };
            jobs.insert(JobId(job.id), entry);
        }
        History { jobs }
    }

    fn count(&self, kind: JobKind, state: &str) -> usize {
        self.jobs
            .values()
            .filter(|j| j.kind == kind.as_str() && j.state == state)
            .count()
    }

    /// Each job ended once: a done job has exactly one `done` attempt, a dead one exactly one
    /// `dead` attempt, and nothing is left running or waiting.
    fn assert_each_job_ended_once(&self) {
        for (
            id,
            Job {
                kind,
                key,
                state,
                outcomes,
                ..
            },
        ) in &self.jobs
        {
            let ends = |o: &str| outcomes.iter().filter(|x| *x == o).count();
            match state.as_str() {
                "done" => assert_eq!(
                    (ends("done"), ends("dead")),
                    (1, 0),
                    "{kind} job {id} ({key}): {outcomes:?}"
                ),
                "dead" => assert_eq!(
                    (ends("done"), ends("dead")),
                    (0, 1),
                    "{kind} job {id} ({key}): {outcomes:?}"
                ),
                other => panic!("{kind} job {id} ({key}) is still {other}: {outcomes:?}"),
            }
        }
        let mut keys = BTreeSet::new();
        for job in self.jobs.values() {
            if job.state == "done" {
                assert!(
                    keys.insert((&job.kind, &job.key)),
                    "{} {} done twice",
                    job.kind,
                    job.key
                );
            }
        }
    }

    fn workers(&self) -> BTreeSet<String> {
        self.jobs
            .values()
            .flat_map(|j| j.workers.iter().cloned())
            .collect()
    }

    /// Jobs that ran on more than one node (one attempt's lease expired, another node ran it).
    fn moved(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.workers.len() > 1 && j.outcomes.iter().any(|o| o == "lease_expired"))
            .count()
    }
}

/// No two sync cycles overlapped (started_at of each at or after the end of the one before).
async fn assert_cycles_one_at_a_time(ledger: &Ledger) {
    let mut cycles = ledger.recent_cycles(10_000).await.unwrap();
    assert!(
        cycles.len() >= 2,
        "expected several cycles, got {}",
        cycles.len()
    );
    cycles.sort_by_key(|c| c.started_at);
    for pair in cycles.windows(2) {
        let finished = pair[0].finished_at.expect("every cycle finished");
        assert!(
            pair[1].started_at >= finished,
            "cycle {} started at {} before cycle {} finished at {finished}",
            pair[1].id,
            pair[1].started_at,
            pair[0].id
        );
    }
}

fn configure(app: &mut TestApp) {
    app.set("GUN_SYNC_INTERVAL", 300)
        .set("GUNSYNC_RECORD_TYPES", TYPES.join(","))
        .set("GUNSYNC_MAX_ATTEMPTS", 3)
        .set("GUNSYNC_BACKOFF_BASE_MS", 50)
        .set("GUNSYNC_BACKOFF_MAX_MS", 200);
}

async fn stop(mut daemon: Daemon) {
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(60)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_ledger_and_do_every_job_once() {
    const RECORDS: usize = 2_000;
    let mut app = TestApp::start_postgres().await;
    let dids = seed_records(&app, RECORDS);
    // 40 deletions: 30 succeed, 10 fail on ES every time and end dead after 3 attempts.
    let deleted: Vec<&Did> = dids.iter().step_by(RECORDS / 40).collect();
    for (i, did) in deleted.iter().enumerate() {
        app.seed_deletion(did);
        if i % 4 == 0 {
            app.es.faults().add(
                FaultRule::status(gunsync::demo::es_doc_path("records", did.as_str()), 500)
                    .method(Method::DELETE),
            );
        }
    }
    let failing = deleted.len().div_ceil(4);
    configure(&mut app);
    let first = app.spawn_daemon();
    let second = app.spawn_daemon();

    let ledger = app.ledger().await;
    let history = eventually(Duration::from_secs(300), || async {
        let history = History::read(&ledger).await;
        let finished = history.count(JobKind::Discover, "done") == RECORDS - deleted.len()
            && history.count(JobKind::Delete, "done") == deleted.len() - failing
            && history.count(JobKind::Delete, "dead") == failing;
        finished.then_some(history)
    })
    .await;
    // Let a few more cycles run over the finished ledger: they must add nothing.
    let cycles = ledger.recent_cycles(10_000).await.unwrap().len();
    eventually(Duration::from_secs(60), || async {
        (ledger.recent_cycles(10_000).await.unwrap().len() >= cycles + 3).then_some(())
    })
    .await;
    stop(first).await;
    stop(second).await;

    let after = History::read(&ledger).await;
    assert_eq!(
        after.jobs.len(),
        history.jobs.len(),
        "a later cycle added jobs"
    );
    after.assert_each_job_ended_once();
    let workers = after.workers();
    assert_eq!(workers.len(), 2, "both nodes leased jobs: {workers:?}");
    for did in &dids {
        let puts = app
            .es
            .count("PUT", &gunsync::demo::es_doc_path("records", did.as_str()));
        let expected = usize::from(!deleted.contains(&did));
        assert_eq!(puts, expected, "{did} indexed {puts} times");
    }
    assert_cycles_one_at_a_time(&ledger).await;
    ledger.close().await;
    app.assert_es_saw_no_bad_request();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_dies_the_other_finishes_its_jobs_after_lease_expiry() {
    const RECORDS: usize = 400;
    let mut app = TestApp::start_postgres().await;
    let dids = seed_records(&app, RECORDS);
    // Slow record reads keep discovers running on both nodes when one is killed.
    app.relay
        .fail(FaultRule::delay("/get", Duration::from_millis(100)));
    configure(&mut app);
    app.set("GUNSYNC_LEASE_MS", 2_000);
    let mut doomed = app.spawn_daemon();
    let survivor = app.spawn_daemon();

    let ledger = app.ledger().await;
    // Kill the first node once it holds leases (mid-discovery).
    let doomed_name = eventually(Duration::from_secs(120), || async {
        let running = ledger
            .list_jobs(&JobFilter {
                state: Some(gunsync::ledger::JobState::Running),
                limit: 10_000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        let pid = doomed.child.id()?;
        running
            .iter()
            .filter_map(|j| j.leased_by.clone())
            .find(|by| by.ends_with(&format!(":{pid}")))
    })
    .await;
    doomed.signal("KILL");
    assert_eq!(doomed.wait(Duration::from_secs(20)).await, None);

    let history = eventually(Duration::from_secs(300), || async {
        let history = History::read(&ledger).await;
        (history.count(JobKind::Discover, "done") == RECORDS).then_some(history)
    })
    .await;
    stop(survivor).await;

    history.assert_each_job_ended_once();
    assert!(
        history.workers().contains(&doomed_name),
        "the killed node ran jobs before it died"
    );
    assert!(
        history.moved() > 0,
        "a job the killed node held was finished by the other"
    );
    for did in &dids {
        assert!(
            app.es.doc("records", did.as_str()).is_some(),
            "{did} never indexed"
        );
    }
    ledger.close().await;
}
