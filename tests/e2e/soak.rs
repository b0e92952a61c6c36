//! The short soak (issue 6): `gunsync bench soak` runs the daemon as a child process against
//! 1 000 records and 5 deletions whose ES delete fails forever: a warm-up that lasts until
//! discovery is done (however slow the machine), then 40 measured cycles. Asserted: after
//! warm-up the daemon's sockets stay under 2 × (workers + ES concurrency), all its fds stay
//! under 50 throughout, and each failing deletion costs exactly max-attempts DELETE requests,
//! then is dead, however many cycles pass. RSS growth is printed, not asserted (it depends on
//! timing); `scripts/soak` runs the long version, which judges it.

use std::process::Stdio;

use serde_json::Value;

use crate::support::BIN;

const MAX_ATTEMPTS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deletions_cost_at_most_max_attempts_requests_and_fds_stay_bounded() {
    let output = tokio::process::Command::new(BIN)
        // Warm-up (the discovery of the 1 000 records) is judged apart, however long it takes.
        .args([
            "bench",
            "soak",
            "--cycles",
            "40",
            "--warmup",
            "20",
            "--records",
            "1000",
        ])
        .args([
            "--failing",
            "5",
            "--max-attempts",
            &MAX_ATTEMPTS.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench soak failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    println!("{report:#}");

    assert!(report["cycles"].as_u64().unwrap() >= 60, "{report}");
    assert_eq!(report["daemon_exit_code"], 0, "graceful stop: {report}");
    let fds = &report["fds"];
    let limit = fds["limit"].as_u64().unwrap();
    assert_eq!(limit, 2 * (4 + 8));
    assert!(
        fds["sockets_max_after_warmup"].as_u64().unwrap() < limit,
        "sockets over 2 × (workers + ES concurrency) after warm-up: {fds}"
    );
    assert!(fds["max"].as_u64().unwrap() < 50, "fds: {fds}");
    let failing = report["failing_deletions"].as_array().unwrap();
    assert_eq!(failing.len(), 5);
    for deletion in failing {
        assert_eq!(
            deletion["delete_requests"].as_u64().unwrap(),
            MAX_ATTEMPTS,
            "one DELETE per attempt, never one per cycle: {deletion}"
        );
        assert_eq!(deletion["state"], "dead", "{deletion}");
    }
    // The 995 live records and the 5 undeletable documents.
    assert_eq!(report["indexed"], 1000);
}
