//! The job state machine (DESIGN §2). This table is the whole of it; every ledger method that
//! changes `state` names the row it implements.
//!
//! | from                  | to          | by                                   | method                         |
//! |-----------------------|-------------|--------------------------------------|--------------------------------|
//! | (new)                 | `pending`   | sync cycle, `gunsync enqueue`         | [`Ledger::enqueue`]            |
//! | `pending`, `retrying` | `running`   | a worker, when `run_at <= now`        | [`Ledger::lease`]              |
//! | `running`             | `done`      | the handler succeeded                 | [`Ledger::finish`] `Done`      |
//! | `running`             | `retrying`  | transient error, attempts left        | [`Ledger::finish`] `Retry`     |
//! | `running`             | `dead`      | permanent error, or out of attempts   | [`Ledger::finish`] `Dead`      |
//! | `running`             | `retrying`/`dead` | lease expired (worker died)     | [`Ledger::reclaim_expired`]    |
//! | `running`             | `pending`   | graceful shutdown (attempt not burned) | [`Ledger::release`]           |
//! | `running`             | `pending`   | a circuit opened (attempt not burned)  | [`Ledger::finish`] `Paused`   |
//! | `pending`, `retrying` | `cancelled` | an operator                           | [`Ledger::cancel`]             |
//! | `done`, `dead`, `cancelled`, `retrying` | `pending` | an operator          | [`Ledger::requeue`]            |
//!
//! `running` is left only through a transition fenced by the job's `lease_token`.
//!
//! [`Ledger::enqueue`]: super::Ledger::enqueue
//! [`Ledger::lease`]: super::Ledger::lease
//! [`Ledger::finish`]: super::Ledger::finish
//! [`Ledger::reclaim_expired`]: super::Ledger::reclaim_expired
//! [`Ledger::release`]: super::Ledger::release
//! [`Ledger::cancel`]: super::Ledger::cancel
//! [`Ledger::requeue`]: super::Ledger::requeue

use std::fmt;
use std::str::FromStr;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to run at `run_at`; created by enqueue, requeue or a graceful release.
    Pending,
    /// Leased by a worker until `lease_expires_at`; only its lease holder may finish it.
    Running,
    /// Failed transiently; runs again at `run_at` (the backoff).
    Retrying,
    /// Finished successfully. Final until an operator requeues it.
    Done,
    /// Failed permanently or ran out of attempts; `last_error` says why. Final until requeued.
    Dead,
    /// Stopped by an operator before it ran. Final until requeued.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Retrying,
        JobState::Done,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Active jobs hold the `(kind, key)` uniqueness slot.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Pending | JobState::Running | JobState::Retrying
        )
    }

    /// States an operator may requeue from.
    pub fn is_requeueable(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Dead | JobState::Cancelled | JobState::Retrying
        )
    }

    /// Final states (they set `processed_at`).
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Dead | JobState::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "state",
                name: s.to_string(),
                expected: JobState::ALL.map(JobState::as_str).join(", "),
            })
    }
}

/// What a job does. Both kinds are keyed by the record's DID (`did:gun:<soul>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Fetch a record from a relay and index it in Elasticsearch.
    Discover,
    /// Remove a deleted record from Elasticsearch and tombstone it on the relays.
    Delete,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::Discover, JobKind::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Discover => "discover",
            JobKind::Delete => "delete",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "kind",
                name: s.to_string(),
                expected: JobKind::ALL.map(JobKind::as_str).join(", "),
            })
    }
}

/// A state or kind name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?} (expected one of: {expected})")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        }
        let err = "finished".parse::<JobState>().unwrap_err();
        assert!(
            err.to_string()
                .contains("pending, running, retrying, done, dead, cancelled")
        );
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>().unwrap(), kind);
        }
        assert!("index".parse::<JobKind>().is_err());
    }

    #[test]
    fn state_classes_partition_correctly() {
        use JobState::*;
        let table = [
            (Pending, true, false, false),
            (Running, true, false, false),
            (Retrying, true, true, false),
            (Done, false, true, true),
            (Dead, false, true, true),
            (Cancelled, false, true, true),
        ];
        for (state, active, requeueable, finished) in table {
            assert_eq!(state.is_active(), active, "{state}");
            assert_eq!(state.is_requeueable(), requeueable, "{state}");
            assert_eq!(state.is_finished(), finished, "{state}");
        }
    }
}
