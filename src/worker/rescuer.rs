//! Reclaims jobs whose lease expired (their worker died or hung): one pass here, the timer in
//! `pool`. Logs only when it found something.

use tracing::{info, warn};

use crate::ledger::{Ledger, LedgerError, Reclaimed};
use crate::timestamp::Timestamp;

/// One reclaim pass at `now`.
pub async fn reclaim_once(ledger: &Ledger, now: Timestamp) -> Result<Reclaimed, LedgerError> {
    let reclaimed = ledger.reclaim_expired(now).await?;
    if reclaimed.retrying > 0 {
        info!(
            jobs = reclaimed.retrying,
            "reclaimed jobs with expired leases"
        );
    }
    if reclaimed.dead > 0 {
        warn!(
            jobs = reclaimed.dead,
            "jobs with expired leases were out of attempts and are dead"
        );
    }
    Ok(reclaimed)
}
