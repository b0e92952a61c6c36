//! `gunsync enqueue`: add one job by hand. An active job of the same kind and key makes it a
//! no-op that reports the existing job (DESIGN §2), so it is safe to repeat.

use anyhow::Context;
use serde_json::Value;

use super::output::outln;
use super::{GlobalArgs, UsageError, parse_count, parse_kind};
use crate::domain::Did;
use crate::ledger::model::DEFAULT_MAX_ATTEMPTS;
use crate::ledger::{Enqueued, LedgerError, NewJob};

/// Add a job by hand
///
/// Enqueues a job of KIND (discover, delete) for KEY (the record's DID, did:gun:<soul>),
/// runnable now. If a pending, running or retrying job of the same kind and key exists, nothing is
/// added and the existing job is reported as "already queued" (exit status 0).
/// --payload must be a JSON object; a delete job may carry {"recordType": "post"} so the type
/// index can be cleaned even after the record was tombstoned.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync enqueue delete did:gun:8d7c1e2a9b3f:post1
  gunsync enqueue delete did:gun:8d7c1e2a9b3f:post1 --payload '{\"recordType\":\"post\"}'
  gunsync enqueue discover did:gun:8d7c1e2a9b3f:image7 --max-attempts 3")]
pub struct EnqueueArgs {
    /// What the job does: discover or delete
    #[arg(value_name = "KIND")]
    kind: String,
    /// What the job is about: the record's DID (did:gun:<soul>)
    #[arg(value_name = "KEY")]
    key: String,
    /// The job's payload, a JSON object
    #[arg(
        long,
        value_name = "JSON",
        default_value = "{}",
        allow_hyphen_values = true
    )]
    payload: String,
    /// Attempts before the job is parked dead
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ATTEMPTS.to_string(), allow_hyphen_values = true)]
    max_attempts: String,
}

pub async fn execute(args: EnqueueArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    let payload: Value = serde_json::from_str(&args.payload)
        .map_err(|e| UsageError(format!("--payload is not valid JSON: {e}")))?;
    if !payload.is_object() {
        return Err(UsageError(
            "--payload must be a JSON object, e.g. '{\"recordType\":\"post\"}'".into(),
        )
        .into());
    }
    if args.key.trim().is_empty() {
        return Err(UsageError("KEY must not be empty".into()).into());
    }
    // Both job kinds are keyed by the record's DID (DESIGN §6); a job with any other key could
    // only die, so refuse it here.
    if let Err(e) = Did::parse(&args.key) {
        return Err(UsageError(format!("KEY must be a record DID (did:gun:<soul>): {e}")).into());
    }
    let max_attempts = parse_count("--max-attempts", &args.max_attempts)?;
    if max_attempts == 0 {
        return Err(UsageError("--max-attempts must be at least 1".into()).into());
    }
    let job = NewJob::new(kind, &args.key)
        .payload(payload)
        .max_attempts(max_attempts);
    let ledger = global.open_ledger().await?;
    let result = match ledger.enqueue(&job, ledger.now()).await {
        Err(LedgerError::Invalid { reason, .. }) => Err(UsageError(reason).into()),
        other => other.context("enqueue"),
    };
    let outcome = match result {
        Ok(Enqueued::AlreadyQueued(id)) => {
            let state = ledger
                .get_job(id)
                .await?
                .map_or_else(|| "active".to_string(), |(job, _)| job.state);
            outln!(
                "already queued: job {id} ({kind} {}) is {state}; nothing added",
                args.key
            )?;
            Ok(())
        }
        Ok(Enqueued::Created(id)) => {
            outln!("enqueued job {id} ({kind} {}), runnable now", args.key)?;
            Ok(())
        }
        Err(e) => Err(e),
    };
    ledger.close().await;
    outcome
}
