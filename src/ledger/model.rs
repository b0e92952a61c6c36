//! The ledger's vocabulary: what goes in (`NewJob`, `Finish`) and what comes out (`LeasedJob`).
//! These types carry no SQL, so a second backend implements the same API over them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use super::state::{JobKind, JobState};
use crate::timestamp::Timestamp;

/// Default attempts before a job is parked `dead` (DESIGN §2: about two days of retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;

/// Errors longer than this are cut (with a marker) before they are stored.
pub const MAX_ERROR_CHARS: usize = 2000;

/// A job's row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(id) if id > 0 => Ok(JobId(id)),
            _ => Err(format!(
                "invalid job id {s:?} (expected a positive integer)"
            )),
        }
    }
}

/// Proof of holding a job's lease. A transition out of `running` must present it (fencing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken(String);

impl LeaseToken {
    pub fn generate() -> Self {
        LeaseToken(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for LeaseToken {
    fn from(s: String) -> Self {
        LeaseToken(s)
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job to add.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub key: String,
    pub payload: Value,
    pub priority: i64,
    pub max_attempts: u32,
    /// When it may first run; `None` = now.
    pub run_at: Option<Timestamp>,
    /// The version of what `key` names (a record's type-index `timestamp`), for
    /// [`Uniqueness::Revision`]; `None` = unknown.
    pub revision: Option<i64>,
}

impl NewJob {
    pub fn new(kind: JobKind, key: impl Into<String>) -> Self {
        NewJob {
            kind,
            key: key.into(),
            payload: Value::Object(Default::default()),
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
            revision: None,
        }
    }

    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }

    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn revision(mut self, revision: Option<i64>) -> Self {
        self.revision = revision;
        self
    }
}

/// What a single enqueue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Created(JobId),
    /// An active job for the same `(kind, key)` exists; nothing was added.
    AlreadyQueued(JobId),
}

impl Enqueued {
    pub fn id(self) -> JobId {
        match self {
            Enqueued::Created(id) | Enqueued::AlreadyQueued(id) => id,
        }
    }
}

/// Which existing jobs of the same `(kind, key)` make an enqueue a no-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uniqueness {
    /// Only an active (pending, running, retrying) job. The partial unique index enforces this
    /// in every mode.
    Active,
    /// Any job ever, in any state (discovery: a soul is discovered once).
    Ever,
    /// An active or cancelled job, or one that finished less than this long ago (deletions are
    /// re-run after `GUNSYNC_REPROCESS_AFTER_MS`). Zero means "never again": like `Ever`.
    FinishedWithin(Duration),
    /// Discovery of records that change: an active or cancelled job, a `done` job of the same
    /// or a newer revision, or a `dead` one of the same or a newer revision that died less than
    /// `retry_dead_after` ago (zero: never retried). A newer revision, or an old death, is tried
    /// again, in a new row (the old one keeps its history).
    Revision { retry_dead_after: Duration },
}

/// What a batch enqueue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    pub created: u64,
    /// Jobs not added because an existing job blocked them (see [`Uniqueness`]).
    pub skipped: u64,
}

/// A job a worker holds a lease on.
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedJob {
    pub id: JobId,
    /// The kind as stored; [`LeasedJob::kind`] parses it.
    pub kind_name: String,
    pub key: String,
    pub payload: Value,
    /// This attempt's number (1 = first try).
    pub attempt: u32,
    pub max_attempts: u32,
    pub lease_token: LeaseToken,
    pub lease_expires_at: Timestamp,
}

impl LeasedJob {
    pub fn kind(&self) -> Result<JobKind, super::state::UnknownName> {
        self.kind_name.parse()
    }

    /// This job's attempt ended with `finish`, fenced by the lease it holds.
    pub fn completion(&self, finish: Finish) -> Completion {
        Completion {
            id: self.id,
            lease_token: self.lease_token.clone(),
            finish,
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Finish {
    Done,
    /// A transient failure: run again at `at` — unless the job has used all its attempts, in
    /// which case the ledger parks it `dead`.
    Retry {
        at: Timestamp,
        error: String,
        http_status: Option<u16>,
    },
    /// A permanent failure: `dead` now.
    Dead {
        error: String,
        http_status: Option<u16>,
    },
    /// The failure was a system's, not the job's (a circuit opened): back to `pending`, runnable
    /// now, and the attempt does not count (its history row says `interrupted`).
    Paused {
        error: String,
        http_status: Option<u16>,
    },
}

/// One job's finish, presented with the lease that proves the caller may finish it.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub id: JobId,
    pub lease_token: LeaseToken,
    pub finish: Finish,
}

/// Where a finished attempt left its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub id: JobId,
    pub state: JobState,
}

/// What one reclaim pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub retrying: u64,
    pub dead: u64,
}

/// Cuts an error to [`MAX_ERROR_CHARS`] on a character boundary.
pub fn bounded_error(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        None => error.to_string(),
        Some((cut, _)) => format!("{}… (truncated)", &error[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_only_positive_integers() {
        assert_eq!("42".parse::<JobId>().unwrap(), JobId(42));
        for bad in ["0", "-1", "abc", "", "1.5"] {
            assert!(bad.parse::<JobId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn long_errors_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_CHARS + 10);
        let cut = bounded_error(&long);
        assert!(cut.ends_with("(truncated)"));
        assert_eq!(cut.chars().filter(|c| *c == 'é').count(), MAX_ERROR_CHARS);
        assert_eq!(bounded_error("short"), "short");
    }
}
