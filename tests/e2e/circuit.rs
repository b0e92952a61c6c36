//! A wrong Elasticsearch password is the configuration's fault, not the jobs': the work pauses
//! (the circuit opens, `/healthz` and `stats` say why), no attempt is burned and no job dies,
//! and once the password is right every job ends done without anyone requeueing it.

use std::time::Duration;

use gunsync::ledger::{JobKind, JobState};

use crate::support::{TestApp, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_pauses_the_work_and_fixing_it_finishes_every_job() {
    let mut app = TestApp::start().await;
    app.es.set_auth(Some(("elastic", "right")));
    for i in 0..23 {
        app.seed_record(&format!("auth-{i:02}"), "post");
    }
    app.set("ELASTICCLIENTUSERNAME", "elastic")
        .set("ELASTICCLIENTPASSWORD", "wrong")
        .set("GUNSYNC_MAX_ATTEMPTS", 2)
        .set("GUN_SYNC_INTERVAL", 200);
    let mut daemon = app.spawn_daemon();

    let health = eventually(Duration::from_secs(60), || async {
        let (status, health) = daemon.get_json("/healthz").await;
        (status == 503 && health["circuits"][0]["system"] == "elasticsearch").then_some(health)
    })
    .await;
    assert!(
        health["error"].as_str().unwrap().contains("401"),
        "{health}"
    );
    let stats = eventually(Duration::from_secs(30), || async {
        let out = app.cli(&["stats", "--json"]).await;
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (stats["circuits"][0]["system"] == "elasticsearch").then_some(stats)
    })
    .await;
    assert_eq!(stats["states"]["dead"], 0, "{stats}");
    let metrics = daemon.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"gunsync_circuit_open{system="elasticsearch"} 1"#),
        "{metrics}"
    );

    // The operator fixes the cluster's side: the configured password now works.
    app.es.set_auth(Some(("elastic", "wrong")));
    eventually(Duration::from_secs(90), || async {
        (app.es.doc_count("records") == 23).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), || async {
        (app.count(JobKind::Discover, JobState::Done).await == 23).then_some(())
    })
    .await;
    assert_eq!(app.count(JobKind::Discover, JobState::Dead).await, 0);
    for job in app.jobs(JobKind::Discover).await {
        assert_eq!(job.attempts, 1, "no attempt was burned: {job:?}");
    }
    let (status, health) = daemon.get_json("/healthz").await;
    assert_eq!(status, 200, "{health}");
    let out = app.cli(&["stats", "--json"]).await;
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["circuits"], serde_json::json!([]), "{stats}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)).await, Some(0));
}
