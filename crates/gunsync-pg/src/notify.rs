//! Wake-ups between nodes (DESIGN §7): a statement that makes a job runnable now notifies
//! `gunsync_jobs` in its transaction, so listeners on other nodes lease without waiting for their
//! poll (PostgreSQL delivers the notification only if the transaction commits).

/// `pg_notify('gunsync_jobs', '')`: the payload is empty, listeners just lease again.
pub async fn jobs_ready<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<()> {
    sqlx::query!("SELECT FROM pg_notify('gunsync_jobs', '')")
        .execute(e)
        .await?;
    Ok(())
}
