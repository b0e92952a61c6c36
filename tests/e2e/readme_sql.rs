//! The README's SQL never rots: every ```sql block in README.md runs against a populated ledger
//! and returns rows, and every operator command is documented there.

use std::time::Duration;

use gunsync::ledger::{CycleCounts, JobKind, Ledger, LedgerOptions};
use gunsync::timestamp::Timestamp;
use sqlx::{Connection, Row};

use crate::helpers::{Step, TestApp, dead, pending, seed_job};
use crate::support::PgTestDb;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The body of every fenced block for `dialect`: opened with ```` ```sql ```` (both backends) or
/// ```` ```sql <dialect> ```` (`sqlite` or `postgres` only).
fn sql_blocks(markdown: &str, dialect: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let info = line.trim_start().strip_prefix("```sql").map(str::trim);
        match current.as_mut() {
            None if info.is_some_and(|i| i.is_empty() || i == dialect) => {
                current = Some(String::new())
            }
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// The ledger every README query must find rows in: dead, retrying, reclaimed, refused and
/// pending jobs, failed attempts, a cycle and an open circuit.
async fn populate(ledger: &Ledger) {
    let now = Timestamp::now();
    let earlier = now.minus(Duration::from_secs(1800));
    for i in 0..3 {
        dead(ledger, JobKind::Delete, &format!("did:gun:sql:dead{i}"), 2).await;
    }
    seed_job(
        ledger,
        JobKind::Delete,
        "did:gun:sql:perm",
        12,
        &[Step::Die(400, "illegal_argument_exception")],
        earlier,
    )
    .await;
    for i in 0..4 {
        seed_job(
            ledger,
            JobKind::Discover,
            &format!("did:gun:sql:ok{i}"),
            12,
            &[Step::Fail(503, "relay answered 503"), Step::Succeed],
            earlier,
        )
        .await;
    }
    seed_job(
        ledger,
        JobKind::Delete,
        "did:gun:sql:retry",
        12,
        &[Step::Fail(429, "es answered 429")],
        now,
    )
    .await;
    // A worker that died holding a lease: reclaimed once the lease expired.
    seed_job(
        ledger,
        JobKind::Discover,
        "did:gun:sql:crash",
        12,
        &[Step::Hold],
        now,
    )
    .await;
    ledger
        .reclaim_expired(now.plus(Duration::from_secs(120)))
        .await
        .unwrap();
    pending(ledger, JobKind::Discover, "did:gun:sql:new").await;
    // A deletion refused because its deletedBy was not the record's publisher.
    seed_job(
        ledger,
        JobKind::Delete,
        "did:gun:sql:forged",
        12,
        &[Step::Die(
            0,
            "deletion refused: deletedBy is not the record's publisher",
        )],
        earlier,
    )
    .await;
    // An open circuit of the worker pool.
    ledger
        .record_circuit_open(
            "elasticsearch",
            "elasticsearch answered 401",
            earlier,
            now,
            now,
        )
        .await
        .unwrap();
    let cycle = ledger
        .start_cycle("http://gun-relay:8765", earlier)
        .await
        .unwrap();
    let counts = CycleCounts {
        deletions_seen: 4,
        records_seen: 5,
        delete_enqueued: 4,
        discover_enqueued: 5,
        rejected: 0,
        ..Default::default()
    };
    ledger
        .finish_cycle(cycle, counts, None, earlier.plus(Duration::from_secs(2)))
        .await
        .unwrap();
}

/// Runs every README block of `dialect` on `conn`: each must run and return rows.
macro_rules! assert_blocks_return_rows {
    ($conn:expr, $dialect:expr) => {{
        let blocks = sql_blocks(&readme(), $dialect);
        assert!(
            blocks.len() >= 5,
            "the README has {} sql blocks for {}",
            blocks.len(),
            $dialect
        );
        for sql in &blocks {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .fetch_all(&mut *$conn)
                .await
                .unwrap_or_else(|e| panic!("README query fails on {}: {e}\n{sql}", $dialect));
            assert!(
                !rows.is_empty(),
                "README query returns no rows on a populated {} ledger:\n{sql}",
                $dialect
            );
            assert!(rows[0].len() > 0);
        }
        for view in ["job_summary", "dead_jobs", "recent_failures"] {
            assert!(
                blocks.iter().any(|b| b.contains(view)),
                "the README shows no query on the {view} view"
            );
        }
    }};
}

#[tokio::test]
async fn every_sql_query_in_the_readme_runs_and_returns_rows_on_a_populated_ledger() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    populate(&ledger).await;
    ledger.close().await;
    let mut conn = app.sql().await;
    sqlx::query(
        "UPDATE jobs SET payload = json_object('refused', 'deletedBy is not the record''s publisher')
         WHERE key = 'did:gun:sql:forged'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_blocks_return_rows!(&mut conn, "sqlite");
}

#[tokio::test]
async fn every_sql_query_in_the_readme_runs_and_returns_rows_on_a_populated_postgres_ledger() {
    let db = PgTestDb::create().await;
    let ledger = Ledger::open(LedgerOptions::new(&db.url)).await.unwrap();
    populate(&ledger).await;
    ledger.close().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "UPDATE jobs SET payload = jsonb_build_object('refused', 'deletedBy is not the record''s publisher')
         WHERE key = 'did:gun:sql:forged'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_blocks_return_rows!(&mut conn, "postgres");
    conn.close().await.unwrap();
}

#[test]
fn the_readme_documents_every_operator_command_with_an_example() {
    let readme = readme();
    let section = readme
        .split("## Operating gunsync")
        .nth(1)
        .expect("README has a section \"## Operating gunsync\"");
    let section = section.split("\n## ").next().unwrap();
    for command in [
        "migrate", "jobs", "show", "stats", "requeue", "cancel", "enqueue", "prune",
    ] {
        assert!(
            section.contains(&format!("gunsync {command}")),
            "\"## Operating gunsync\" has no example of gunsync {command}"
        );
    }
    assert!(readme.contains("## Inspecting the ledger with SQL"));
}
