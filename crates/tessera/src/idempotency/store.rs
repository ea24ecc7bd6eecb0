//! The `idempotency_keys` table: claiming a key, storing the answer, releasing a key whose
//! request failed, and the cleanup of expired keys.

use crate::db::Db;

/// What claiming a key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now: run it.
    Fresh,
    /// A request with this key is still running.
    InFlight,
    /// The key was used with another request (method, path or body).
    Mismatch,
    /// The request ran; its sealed answer.
    Done(String),
}

/// A stored key: fingerprint, status, sealed answer, locked at, created at.
type Stored = (String, Option<i64>, Option<String>, i64, i64);

/// Claims `scope` for a request with `fingerprint` at `now` (Unix seconds). A key in flight
/// since before `stale_before` belongs to a request that died (a crash, a timeout) and is
/// taken over; one created before `expired_before` is past its TTL and starts afresh.
pub async fn claim(
    db: &Db,
    scope: &str,
    fingerprint: &str,
    now: i64,
    stale_before: i64,
    expired_before: i64,
) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, fingerprint, status, answer, locked_at, created_at) \
         VALUES ($1, $2, NULL, NULL, $3, $3) ON CONFLICT (scope) DO NOTHING",
    )
    .bind(scope)
    .bind(fingerprint)
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let row: Option<Stored> = sqlx::query_as(
        "SELECT fingerprint, status, answer, locked_at, created_at FROM idempotency_keys \
         WHERE scope = $1",
    )
    .bind(scope)
    .fetch_optional(db.pool())
    .await?;
    let Some((stored, status, answer, locked_at, created_at)) = row else {
        // Released between the two statements: the key is free again.
        return Box::pin(claim(
            db,
            scope,
            fingerprint,
            now,
            stale_before,
            expired_before,
        ))
        .await;
    };
    if created_at < expired_before {
        return take_over(db, scope, fingerprint, now, (locked_at, created_at)).await;
    }
    if stored != fingerprint {
        return Ok(Claim::Mismatch);
    }
    match (status, answer) {
        (Some(_), Some(answer)) => Ok(Claim::Done(answer)),
        _ if locked_at < stale_before => {
            take_over(db, scope, fingerprint, now, (locked_at, created_at)).await
        }
        _ => Ok(Claim::InFlight),
    }
}

/// Restarts a dead or expired key for this request, unless another request did first.
async fn take_over(
    db: &Db,
    scope: &str,
    fingerprint: &str,
    now: i64,
    (locked_at, created_at): (i64, i64),
) -> Result<Claim, sqlx::Error> {
    let taken = sqlx::query(
        "UPDATE idempotency_keys SET fingerprint = $1, status = NULL, answer = NULL, \
         locked_at = $2, created_at = $2 \
         WHERE scope = $3 AND locked_at = $4 AND created_at = $5",
    )
    .bind(fingerprint)
    .bind(now)
    .bind(scope)
    .bind(locked_at)
    .bind(created_at)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(if taken == 1 {
        Claim::Fresh
    } else {
        Claim::InFlight
    })
}

/// Stores the sealed answer of the request that claimed `scope` at `claimed_at` (a request
/// that lost its claim to a takeover stores nothing).
pub async fn finish(
    db: &Db,
    scope: &str,
    claimed_at: i64,
    status: u16,
    answer: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $1, answer = $2 \
         WHERE scope = $3 AND locked_at = $4 AND status IS NULL",
    )
    .bind(i64::from(status))
    .bind(answer)
    .bind(scope)
    .bind(claimed_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Frees `scope`, claimed at `claimed_at`, after its request failed: a retry runs again.
pub async fn release(db: &Db, scope: &str, claimed_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE scope = $1 AND locked_at = $2 AND status IS NULL",
    )
    .bind(scope)
    .bind(claimed_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Deletes keys created before `before` (Unix seconds); returns how many.
pub async fn delete_expired(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(db.pool())
            .await?
            .rows_affected(),
    )
}
