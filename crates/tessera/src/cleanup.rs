//! The periodic cleanup: rows that can no longer matter are deleted, on one instance at a time
//! (a PostgreSQL advisory lock; SQLite serves a single instance anyway).
//!
//! - ended sessions, a week after they ended (revoked or expired), with their refresh-token
//!   history: a week keeps `refresh_reuse` detection and "who was logged in" questions
//!   answerable for a while, and the audit log keeps the events for good;
//! - revoked access tokens, and revocation-feed entries, once no token they cover can be
//!   valid: nothing can present such a token any more;
//! - idempotency keys older than `idempotency.ttl_secs`: a retry that late runs afresh.

use std::time::Duration;

use tessera_token::unix_now;

use crate::db::{Db, Job};
use crate::idempotency;
use crate::jobs::Jobs;
use crate::revocations;

/// How long an ended session is kept, in seconds.
pub const KEEP_ENDED_SESSIONS_SECS: i64 = 7 * 86_400;

/// How often cleanup runs.
const EVERY: Duration = Duration::from_secs(3600);

/// What one run deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Sessions, with their refresh-token history.
    pub sessions: u64,
    /// Expired entries of the access-token deny list.
    pub revoked_tokens: u64,
    /// Expired entries of the revocation feed.
    pub revocations: u64,
    /// Idempotency keys past their TTL, with their stored answers.
    pub idempotency_keys: u64,
}

/// Deletes what can no longer matter as of `now` (idempotency keys after
/// `idempotency_ttl_secs`). `None` when another instance holds the cleanup lock.
pub async fn run_once(
    db: &Db,
    now: i64,
    idempotency_ttl_secs: i64,
) -> Result<Option<Removed>, sqlx::Error> {
    let Some(mut tx) = db.try_job_lock(Job::Cleanup).await? else {
        return Ok(None);
    };
    let cutoff = now - KEEP_ENDED_SESSIONS_SECS;
    let ended = "revoked_at < $1 OR absolute_expires_at < $1 OR idle_expires_at < $1";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE {ended})"
    )))
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    let sessions = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM sessions WHERE {ended}"
    )))
    .bind(cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let revoked_tokens = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    // On its own: writers of the feed lock its table after locking session rows, so deleting
    // from it while holding session rows could deadlock with them.
    let revocations = sqlx::query("DELETE FROM revocations WHERE expires_at < $1")
        .bind(now - revocations::MAX_LEEWAY_SECS)
        .execute(db.pool())
        .await?
        .rows_affected();
    let idempotency_keys =
        idempotency::store::delete_expired(db, now.saturating_sub(idempotency_ttl_secs)).await?;
    Ok(Some(Removed {
        sessions,
        revoked_tokens,
        revocations,
        idempotency_keys,
    }))
}

/// Runs cleanup every hour until shutdown.
pub fn spawn(jobs: &Jobs, db: Db, idempotency_ttl_secs: i64) {
    jobs.every(EVERY, false, move || {
        let db = db.clone();
        async move {
            match run_once(&db, unix_now(), idempotency_ttl_secs).await {
                Ok(Some(removed)) if removed != Removed::default() => {
                    tracing::info!(?removed, "cleanup removed rows that can no longer matter");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cleanup failed"),
            }
        }
    });
}
