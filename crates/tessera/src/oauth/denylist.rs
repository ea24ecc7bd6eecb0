//! Access tokens revoked before they expire, by `jti`: a set in memory, loaded at start,
//! updated at once on local revocations and, for other instances' and the CLI's, from the
//! revocation feed (each revoked token also has a feed entry, announced on the change bus),
//! so checking a token costs a hash lookup, never a database round trip.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tessera_token::{Revoked, unix_now};
use tokio::sync::broadcast;

use crate::db::Db;
use crate::jobs::Jobs;
use crate::revocations::Feed;

/// Revoked `jti`s and when their tokens expire.
#[derive(Default)]
pub struct DenyList {
    denied: RwLock<HashMap<String, i64>>,
}

/// Writes a revoked token (once: a repeat changes nothing), on `conn` (the revocation's
/// transaction). Other instances learn of it by its feed entry; the caller adds it here after
/// the commit.
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

    /// Follows, on `jobs`, the token entries of the revocation feed (every instance's and
    /// the CLI's) until the list is dropped. Having fallen behind the feed, it reads the
    /// table again whole.
    pub fn follow(self: &Arc<Self>, jobs: &Jobs, feed: &Feed, db: Db) {
        let mut batches = feed.subscribe();
        let weak = Arc::downgrade(self);
        jobs.spawn(async move {
            loop {
                let received = batches.recv().await;
                let Some(list) = weak.upgrade() else { return };
                match received {
                    Ok(batch) => list.add(batch.entries.iter().filter_map(|entry| {
                        match &entry.revocation.target {
                            Revoked::Token { jti } => {
                                Some((jti.clone(), entry.revocation.expires_at))
                            }
                            _ => None,
                        }
                    })),
                    Err(broadcast::error::RecvError::Lagged(_)) => match Self::load(&db).await {
                        Ok(all) => {
                            let all = all.denied.read().unwrap_or_else(|p| p.into_inner()).clone();
                            list.add(all);
                        }
                        Err(e) => tracing::warn!(error = %e, "reading revoked tokens failed"),
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
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
