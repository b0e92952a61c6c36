//! Facts the sync cycle and the handlers ask of the ledger before acting: "has this key ever had
//! a job of this kind?" — one row, or a whole batch of keys in a few statements.

use std::collections::HashSet;

use serde_json::json;

use super::write::Track;
use super::{JobKind, Ledger, LedgerError};

/// Keys per lookup statement (one JSON array parameter).
const LOOKUP_CHUNK: usize = 5000;

impl Ledger {
    /// Whether any job (in any state) of `kind` exists for `key`.
    pub async fn has_job(&self, kind: JobKind, key: &str) -> Result<bool, LedgerError> {
        let kind = kind.as_str();
        let found = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM jobs WHERE kind = ?1 AND key = ?2) AS "found!: bool""#,
            kind,
            key,
        )
        .fetch_one(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(found)
    }

    /// The subset of `keys` that have at least one job (in any state) of `kind`.
    pub async fn keys_with_jobs(
        &self,
        kind: JobKind,
        keys: &[String],
    ) -> Result<HashSet<String>, LedgerError> {
        let kind = kind.as_str();
        let mut found = HashSet::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let batch = json!(chunk).to_string();
            let rows = sqlx::query_scalar!(
                r#"SELECT DISTINCT j.key AS "key!: String"
                   FROM json_each(?1) AS e
                   JOIN jobs AS j ON j.kind = ?2 AND j.key = e.value"#,
                batch,
                kind,
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
    use super::*;
    use crate::ledger::JobState;
    use crate::ledger::testutil::{JobSeed, ledger, seed};

    #[tokio::test]
    async fn lookups_see_jobs_of_the_kind_in_any_state() {
        let (_dir, ledger) = ledger().await;
        for (kind, key, state) in [
            (JobKind::Delete, "did:gun:a:1", JobState::Dead),
            (JobKind::Delete, "did:gun:a:2", JobState::Pending),
            (JobKind::Discover, "did:gun:a:3", JobState::Done),
        ] {
            seed(
                &ledger,
                JobSeed {
                    kind,
                    key: key.into(),
                    state,
                    ..Default::default()
                },
            )
            .await;
        }
        assert!(
            ledger
                .has_job(JobKind::Delete, "did:gun:a:1")
                .await
                .unwrap()
        );
        assert!(
            !ledger
                .has_job(JobKind::Delete, "did:gun:a:3")
                .await
                .unwrap()
        );
        let keys: Vec<String> = (1..=4).map(|i| format!("did:gun:a:{i}")).collect();
        let found = ledger.keys_with_jobs(JobKind::Delete, &keys).await.unwrap();
        let mut found: Vec<_> = found.into_iter().collect();
        found.sort();
        assert_eq!(found, ["did:gun:a:1", "did:gun:a:2"]);
    }
}
