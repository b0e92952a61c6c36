//! `TestApp`: a temporary ledger, the real binary run against it, and seeding through the
//! library API (enqueue, lease, finish), so rows reach each state the way a daemon would put
//! them there.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gunsync::ledger::lease::LeaseParams;
use gunsync::ledger::{Finish, JobId, JobKind, LeasedJob, Ledger, LedgerOptions, NewJob};
use gunsync::timestamp::Timestamp;
use serde_json::Value;
use sqlx::Connection;

pub const BIN: &str = env!("CARGO_BIN_EXE_gunsync");

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("{run:#?}");
        }
        run
    }

    /// Asserts exit status 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    /// Asserts `code` and that stderr is exactly one line (DESIGN §6).
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(self.code, code, "expected exit status {code}: {self:#?}");
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "expected one line on stderr: {self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// A temporary ledger file and the binary pointed at it.
pub struct TestApp {
    _dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl TestApp {
    /// A fresh directory; the ledger file is created by the first command or [`TestApp::ledger`].
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("gunsync.db");
        TestApp { _dir: dir, db }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The ledger, opened in this process (as a daemon would hold it).
    pub async fn ledger(&self) -> Ledger {
        Ledger::open(LedgerOptions::new(self.db.to_str().unwrap()))
            .await
            .expect("open ledger")
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("GUNSYNC_DATABASE", &self.db)
            .env_remove("GUNSYNC_SYNCHRONOUS")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs `gunsync ARGS` against this ledger and waits for it.
    pub fn cli<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::from(self.command(args).output().expect("run gunsync"))
    }

    /// [`TestApp::cli`] without blocking the async runtime (for tests that run a worker pool
    /// in-process at the same time).
    pub async fn cli_async<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = tokio::process::Command::from(self.command(args));
        Run::from(cmd.output().await.expect("run gunsync"))
    }

    /// `gunsync ARGS`, asserting success, parsed as JSON.
    #[track_caller]
    pub fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cli(args).success().json()
    }

    /// A direct SQL read of the ledger file, for checks the CLI cannot make (a test's view, as
    /// an operator's `sqlite3` would have it).
    pub async fn sql_i64(&self, sql: &'static str) -> i64 {
        let mut conn = self.sql().await;
        let value: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.ok();
        value
    }

    /// A plain SQLite connection to the ledger file (no migrations, no gunsync code).
    pub async fn sql(&self) -> sqlx::SqliteConnection {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.db)
            .busy_timeout(Duration::from_secs(10));
        sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("connect to the ledger file")
    }

    /// One job as `gunsync show ID --json` prints it.
    #[track_caller]
    pub fn job(&self, id: JobId) -> Value {
        self.json(["show", &id.to_string(), "--json"])
    }
}

/// One attempt a seeded job goes through.
#[derive(Clone, Debug)]
pub enum Step {
    /// A transient failure with this HTTP status; retried (or dead when out of attempts).
    Fail(u16, &'static str),
    /// A permanent failure.
    Die(u16, &'static str),
    Succeed,
    /// Leased and left running.
    Hold,
}

/// Enqueues a job and drives it through `steps` with the real ledger transitions, as of `now`.
/// After a failing step that is not the last, the retry is due at once so the next step can
/// lease it; a failing last step leaves the job retrying 10 minutes after `now`.
///
/// The job must be the only runnable job (seed finished jobs before plain pending ones).
pub async fn seed_job(
    ledger: &Ledger,
    kind: JobKind,
    key: &str,
    max_attempts: u32,
    steps: &[Step],
    now: Timestamp,
) -> JobId {
    let job = NewJob::new(kind, key).max_attempts(max_attempts);
    let id = ledger.enqueue(&job, now).await.expect("enqueue").id();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        // Each step a little later, so attempts have distinct, ordered times.
        let at = now.plus(Duration::from_millis(10 * i as u64));
        let leased = lease_one(ledger, at).await;
        assert_eq!(leased.id, id, "seeded job must be the only runnable job");
        let finish = match step {
            Step::Hold => continue,
            Step::Succeed => Finish::Done,
            Step::Die(status, error) => Finish::Dead {
                error: error.to_string(),
                http_status: Some(*status),
            },
            Step::Fail(status, error) => Finish::Retry {
                at: if last {
                    now.plus(Duration::from_secs(600))
                } else {
                    at
                },
                error: error.to_string(),
                http_status: Some(*status),
            },
        };
        ledger
            .finish(
                id,
                &leased.lease_token,
                finish,
                at.plus(Duration::from_millis(5)),
            )
            .await
            .expect("finish");
    }
    id
}

/// Leases exactly one runnable job as of `now`.
pub async fn lease_one(ledger: &Ledger, now: Timestamp) -> LeasedJob {
    let mut jobs = ledger
        .lease(
            LeaseParams {
                max: 1,
                worker: "test-worker:1",
                lease_for: Duration::from_secs(60),
            },
            now,
        )
        .await
        .expect("lease");
    jobs.pop().expect("a runnable job")
}

/// A plain pending job.
pub async fn pending(ledger: &Ledger, kind: JobKind, key: &str) -> JobId {
    ledger
        .enqueue(&NewJob::new(kind, key), Timestamp::now())
        .await
        .expect("enqueue")
        .id()
}

/// A job parked dead after `attempts` transient failures (out of attempts).
pub async fn dead(ledger: &Ledger, kind: JobKind, key: &str, attempts: u32) -> JobId {
    let steps = vec![Step::Fail(503, "es answered 503"); attempts as usize];
    seed_job(ledger, kind, key, attempts, &steps, Timestamp::now()).await
}

/// True if `text` is a timestamp in the ledger's exact shape: `2026-11-23T08:00:00.000Z`.
pub fn is_ledger_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && text.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && Timestamp::parse(text).is_ok_and(|t| t.to_string() == text)
}

/// Polls `check` until it returns `Some`, failing after `timeout`. Never a fixed sleep.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
