//! Facts the sync cycle and the handlers ask of the ledger before acting: "was this record deleted
//! by its publisher?" — one DID, or a whole batch of DIDs in a few statements.

use std::collections::HashSet;

use serde_json::json;

use super::health::Track;
use super::{LedgerError, SqliteLedger};

/// Keys per lookup statement (one JSON array parameter).
pub(super) const LOOKUP_CHUNK: usize = 5000;

/// Payload key under which a `delete` job records why the deletion was refused (its
/// `deletedBy` is not the record's publisher): a refused deletion deletes nothing, so it does
/// not stop the record's discovery.
pub const REFUSED_KEY: &str = "refused";

/// What the ledger knows of a DID's deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// No deletion, or only refused ones.
    None,
    /// A `delete` job is pending, running or retrying: it may yet be refused.
    InProgress,
    /// A `delete` job ended (done, dead, cancelled) without a refusal.
    Deleted,
}

impl Deletion {
    /// What the states of a DID's unrefused `delete` jobs say.
    pub(super) fn of_states(states: &[String]) -> Deletion {
        if states
            .iter()
            .any(|s| matches!(s.as_str(), "pending" | "running" | "retrying"))
        {
            Deletion::InProgress
        } else if states.is_empty() {
            Deletion::None
        } else {
            Deletion::Deleted
        }
    }
}

impl SqliteLedger {
    pub async fn deletion(&self, did: &str) -> Result<Deletion, LedgerError> {
        let states = sqlx::query_scalar!(
            r#"SELECT state AS "state!: String" FROM jobs
               WHERE kind = 'delete' AND key = ?1
                 AND NOT (state = 'dead' AND payload ->> ?2 IS NOT NULL)"#,
            did,
            REFUSED_KEY,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(Deletion::of_states(&states))
    }

    pub async fn deleted_keys(&self, dids: &[String]) -> Result<HashSet<String>, LedgerError> {
        let mut found = HashSet::new();
        for chunk in dids.chunks(LOOKUP_CHUNK) {
            let batch = json!(chunk).to_string();
            // Keys from the batch, each looked up by the (kind, key) index: the cost is the
            // batch's, whatever the ledger's size.
            let rows = sqlx::query_scalar!(
                r#"SELECT DISTINCT j.key AS "key!: String"
                   FROM jobs AS j
                   WHERE j.kind = 'delete' AND j.key IN (SELECT value FROM json_each(?1))
                     AND NOT (j.state = 'dead' AND j.payload ->> ?2 IS NOT NULL)"#,
                batch,
                REFUSED_KEY,
            )
            .fetch_all(&self.reader)
            .await
            .on_read(&self.health)?;
            found.extend(rows);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::Deletion;
    use crate::ledger::testutil::{JobSeed, ledger, seed};
    use crate::ledger::{JobKind, JobState};

    #[tokio::test]
    async fn a_delete_job_in_any_state_but_a_refusal_means_deleted() {
        let (_dir, ledger) = ledger().await;
        for (kind, key, state, refused) in [
            (JobKind::Delete, "did:gun:a:1", JobState::Dead, false),
            (JobKind::Delete, "did:gun:a:2", JobState::Pending, false),
            (JobKind::Discover, "did:gun:a:3", JobState::Done, false),
            (JobKind::Delete, "did:gun:a:4", JobState::Dead, true),
        ] {
            let id = seed(
                &ledger,
                JobSeed {
                    kind,
                    key: key.into(),
                    state,
                    ..Default::default()
                },
            )
            .await;
            if refused {
                sqlx::query("UPDATE jobs SET payload = json_object('refused', 'deletedBy is not the publisher') WHERE id = ?")
                    .bind(id.0)
                    .execute(&ledger.sqlite().writer)
                    .await
                    .unwrap();
            }
        }
        let deletion = |did: &'static str| {
            let ledger = ledger.clone();
            async move { ledger.deletion(did).await.unwrap() }
        };
        assert_eq!(deletion("did:gun:a:1").await, Deletion::Deleted);
        assert_eq!(deletion("did:gun:a:2").await, Deletion::InProgress);
        assert_eq!(deletion("did:gun:a:3").await, Deletion::None);
        assert_eq!(deletion("did:gun:a:4").await, Deletion::None, "refused");
        let dids: Vec<String> = (1..=5).map(|i| format!("did:gun:a:{i}")).collect();
        let mut found: Vec<_> = ledger
            .deleted_keys(&dids)
            .await
            .unwrap()
            .into_iter()
            .collect();
        found.sort();
        assert_eq!(found, ["did:gun:a:1", "did:gun:a:2"]);
    }
}
