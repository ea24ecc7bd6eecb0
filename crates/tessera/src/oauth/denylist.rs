//! Access tokens revoked before they expire, by `jti`: a set in memory, loaded at start,
//! updated at once on local revocations and polled every second for other instances', so
//! checking a token costs a hash lookup, never a database round trip.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tessera_token::unix_now;

use crate::db::Db;
use crate::jobs::Jobs;

/// How often other instances' revocations are looked for.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// How far back each poll looks again (clock differences, late commits).
const POLL_OVERLAP_SECS: i64 = 30;

/// Revoked `jti`s and when their tokens expire.
#[derive(Default)]
pub struct DenyList {
    denied: RwLock<HashMap<String, i64>>,
}

/// Writes a revoked token (once: a repeat changes nothing), on `conn` (the revocation's
/// transaction). Instances learn of it by their poll; the caller adds it here after the commit.
pub async fn insert(
    conn: &mut sqlx::AnyConnection,
    jti: &str,
    tenant_id: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, tenant_id, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(tenant_id)
    .bind(expires_at)
    .bind(unix_now())
    .execute(conn)
    .await?;
    Ok(())
}

impl DenyList {
    /// The list with every unexpired revocation in the database.
    pub async fn load(db: &Db) -> Result<Arc<Self>, sqlx::Error> {
        let list = Arc::new(Self::default());
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at >= $1")
                .bind(unix_now())
                .fetch_all(db.pool())
                .await?;
        list.add(rows);
        Ok(list)
    }

    /// Whether the token with this `jti` was revoked.
    pub fn is_denied(&self, jti: &str) -> bool {
        self.denied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(jti)
    }

    /// Adds revocations (`jti`, expiry), dropping those already expired.
    pub fn add(&self, entries: impl IntoIterator<Item = (String, i64)>) {
        let now = unix_now();
        let mut denied = self.denied.write().unwrap_or_else(|p| p.into_inner());
        denied.retain(|_, expires| *expires >= now);
        denied.extend(entries.into_iter().filter(|(_, expires)| *expires >= now));
    }

    /// Follows revocations written by other instances until shutdown.
    pub fn spawn_poller(self: &Arc<Self>, jobs: &Jobs, db: Db) {
        let list = Arc::clone(self);
        jobs.spawn(async move {
            let mut since = unix_now() - POLL_OVERLAP_SECS;
            let mut ticker = tokio::time::interval(POLL_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let started = unix_now();
                let rows: Result<Vec<(String, i64)>, _> = sqlx::query_as(
                    "SELECT jti, expires_at FROM revoked_tokens WHERE revoked_at >= $1",
                )
                .bind(since)
                .fetch_all(db.pool())
                .await;
                match rows {
                    Ok(rows) => {
                        list.add(rows);
                        since = started - POLL_OVERLAP_SECS;
                    }
                    Err(e) => tracing::warn!(error = %e, "polling token revocations failed"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_revocations_are_forgotten() {
        let list = DenyList::default();
        let now = unix_now();
        list.add([("live".to_owned(), now + 60), ("gone".to_owned(), now - 1)]);
        assert!(list.is_denied("live"));
        assert!(!list.is_denied("gone"));
    }
}
