//! Cache invalidations: what an instance must read again because another one changed it (a
//! tenant's role definitions, a service account, a tenant, the signing keys, an account's
//! details). Each is a row of `cache_changes`, written in the changing transaction and
//! announced on the bus; [`Changes`] reads the rows after the last one it applied and hands
//! them to the caches that subscribed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyConnection, Row as _};
use tokio::sync::broadcast;

use super::{Bus, Followed, Topic, announce};
use crate::clock::Clock;
use crate::db::Db;
use crate::jobs::Jobs;

/// Most rows read at once.
const PAGE: i64 = 1_000;

/// Batches waiting for a slow cache; one that falls further behind forgets everything.
const BACKLOG: usize = 256;

/// How long rows are kept: far longer than any instance takes to read them (a restarted
/// instance starts from the newest row, its caches empty).
const KEEP_MS: i64 = 3_600_000;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The role definitions of this tenant.
    Roles {
        /// The tenant.
        tenant_id: String,
    },
    /// This service account (scopes, name, state, secret).
    Client {
        /// Its id.
        id: String,
    },
    /// This tenant (name, slug, state).
    Tenant {
        /// Its id.
        id: String,
    },
    /// The signing keys (added, activated, retired).
    Keys,
    /// This account's details or state.
    User {
        /// Its id.
        id: String,
    },
}

impl Change {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::Roles { tenant_id } => ("roles", tenant_id),
            Self::Client { id } => ("client", id),
            Self::Tenant { id } => ("tenant", id),
            Self::Keys => ("keys", ""),
            Self::User { id } => ("user", id),
        }
    }

    fn from_parts(kind: &str, subject: String) -> Option<Self> {
        Some(match kind {
            "roles" => Self::Roles { tenant_id: subject },
            "client" => Self::Client { id: subject },
            "tenant" => Self::Tenant { id: subject },
            "keys" => Self::Keys,
            "user" => Self::User { id: subject },
            _ => return None,
        })
    }
}

/// A change written in a transaction: once it commits, [`Changed::publish`] tells the bus
/// (on PostgreSQL the commit already did; publishing also wakes this instance at once).
#[must_use = "publish it after the commit"]
#[derive(Debug, Clone, Copy)]
pub struct Changed(i64);

impl Changed {
    /// Announces the committed change.
    pub fn publish(self, bus: &Bus) {
        bus.publish(Topic::Changes, self.0);
    }
}

/// Writes `change` on `conn`, the changing transaction, with `now_ms` for pruning only.
pub async fn record(
    conn: &mut AnyConnection,
    change: &Change,
    now_ms: i64,
) -> Result<Changed, sqlx::Error> {
    if conn.backend_name() == "PostgreSQL" {
        // Numbers in commit order: a reader that saw N has seen every row before it. Held to
        // the commit.
        sqlx::query("LOCK TABLE cache_changes IN EXCLUSIVE MODE")
            .execute(&mut *conn)
            .await?;
    }
    let (kind, subject) = change.parts();
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO cache_changes (kind, subject, created_at) VALUES ($1, $2, $3) RETURNING seq",
    )
    .bind(kind)
    .bind(subject)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    announce(conn, Topic::Changes, seq).await?;
    Ok(Changed(seq))
}

/// The newest row's number (0 when none): where a starting instance begins.
async fn newest(db: &Db) -> Result<i64, sqlx::Error> {
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM cache_changes")
        .fetch_one(db.pool())
        .await?;
    Ok(newest.unwrap_or(0))
}

/// Rows after `after`, oldest first, and the number of the last one read.
async fn read_after(db: &Db, after: i64) -> Result<(Vec<Change>, i64, bool), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, kind, subject FROM cache_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(PAGE)
    .fetch_all(db.pool())
    .await?;
    let full = rows.len() >= usize::try_from(PAGE).unwrap_or(usize::MAX);
    let mut cursor = after;
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        cursor = row.try_get("seq")?;
        let kind: String = row.try_get("kind")?;
        if let Some(change) = Change::from_parts(&kind, row.try_get("subject")?) {
            changes.push(change);
        }
    }
    Ok((changes, cursor, full))
}

/// Hands every cache invalidation, written by any instance or the CLI, to the caches of this
/// instance that follow it.
pub struct Changes {
    sent: broadcast::Sender<Arc<[Change]>>,
    jobs: Jobs,
}

impl Changes {
    /// Follows the change log on `bus` from its current end.
    pub async fn start(
        db: &Db,
        bus: &Arc<Bus>,
        jobs: &Jobs,
        clock: Clock,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let start = newest(db).await?;
        let changes = Arc::new(Self {
            sent: broadcast::channel(BACKLOG).0,
            jobs: jobs.clone(),
        });
        let weak = Arc::downgrade(&changes);
        let db = db.clone();
        // The first prune an hour after start: no write competes with the start itself.
        let mut last_prune = tokio::time::Instant::now();
        bus.follow(jobs, Topic::Changes, start, move |mut cursor| {
            let weak = weak.clone();
            let db = db.clone();
            let prune = last_prune.elapsed() > Duration::from_secs(3_600);
            if prune {
                last_prune = tokio::time::Instant::now();
            }
            let cutoff = clock.now_ms() - KEEP_MS;
            async move {
                if db.pool().is_closed() {
                    return Followed::Gone;
                }
                if prune && let Err(e) = prune_before(&db, cutoff).await {
                    tracing::warn!(error = %e, "pruning cache changes failed");
                }
                loop {
                    let Some(changes) = weak.upgrade() else {
                        return Followed::Gone;
                    };
                    match read_after(&db, cursor).await {
                        Ok((read, reached, full)) => {
                            if !read.is_empty() {
                                let _ = changes.sent.send(Arc::from(read));
                            }
                            cursor = reached;
                            if !full {
                                return Followed::At(cursor);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reading cache changes failed");
                            return Followed::Failed;
                        }
                    }
                }
            }
        });
        Ok(changes)
    }

    /// Calls `apply` on `target` with every change read from now on, for as long as `target`
    /// lives, and with `None` when changes were missed (the cache fell behind): it must then
    /// forget everything.
    pub fn follow<T: Send + Sync + 'static>(
        &self,
        target: Weak<T>,
        apply: impl Fn(&T, Option<&Change>) + Send + 'static,
    ) {
        let mut batches = self.sent.subscribe();
        self.jobs.spawn(async move {
            loop {
                let received = batches.recv().await;
                let Some(target) = target.upgrade() else {
                    return;
                };
                match received {
                    Ok(batch) => batch.iter().for_each(|change| apply(&target, Some(change))),
                    Err(broadcast::error::RecvError::Lagged(_)) => apply(&target, None),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

/// Deletes rows older than `before_ms`, always keeping the newest (it is where starting
/// instances begin).
async fn prune_before(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    // A write: it takes this process's writer turn like every other (SQLite).
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "DELETE FROM cache_changes WHERE created_at < $1 \
         AND seq < (SELECT MAX(seq) FROM cache_changes)",
    )
    .bind(before_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_reads_back_as_written() {
        for change in [
            Change::Roles {
                tenant_id: "t".into(),
            },
            Change::Client { id: "c".into() },
            Change::Tenant { id: "t".into() },
            Change::Keys,
            Change::User { id: "u".into() },
        ] {
            let (kind, subject) = change.parts();
            assert_eq!(Change::from_parts(kind, subject.to_owned()), Some(change));
        }
        assert_eq!(Change::from_parts("later", String::new()), None);
    }
}
