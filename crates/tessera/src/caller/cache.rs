//! What every authenticated request checks, kept in memory: whether its session is still
//! live. A hit costs a map lookup; a miss, one query. Revocations made here update the cache
//! at once; those made by other instances or the CLI arrive through the revocation feed,
//! which follows the change bus ([`crate::bus`]), and cache invalidations of users and
//! tenants through [`Changes`]. Nothing here compares this instance's clock with another's.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::Row as _;
use tessera_token::Revoked;
use tokio::sync::broadcast;

use crate::bus::changes::{Change, Changes};
use crate::clock::Clock;
use crate::db::Db;
use crate::jobs::Jobs;
use crate::revocations::Feed;
use crate::sessions::{SESSION_COLUMNS, Session, Watcher, row_to_session};
use crate::tenants::Tenant;
use crate::users::User;

/// How long an entry is trusted before it is read again, in seconds. Revocations do not wait
/// for this (they arrive on the bus); it bounds how stale the user details shown by `/me`
/// can be should an invalidation be lost.
const ENTRY_TTL_SECS: i64 = 30;

/// Most sessions remembered; beyond it, stale entries go first.
const CAPACITY: usize = 100_000;

/// What requests need of a live session: the session, its user and tenant, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session as read.
    pub session: Session,
    /// Its user (the row also decides `session.user_active`).
    pub user: User,
    /// Its tenant.
    pub tenant: Tenant,
    /// When this was read from the database.
    pub loaded_at: i64,
}

/// A session as the cache knows it.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Usable now.
    Live(Arc<SessionInfo>),
    /// Revoked, expired, its user disabled, or never existed.
    Ended,
}

#[derive(Debug, Clone)]
enum Entry {
    Known(Arc<SessionInfo>),
    /// Revoked (at this time): final, and never replaced by an older read.
    Revoked(i64),
}

/// Session states by session id.
pub struct SessionCache {
    entries: RwLock<HashMap<String, Entry>>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Session `id` at `now`: from memory when fresh, otherwise from the database.
    pub async fn get(&self, db: &Db, id: &str, now: i64) -> Result<Lookup, sqlx::Error> {
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        match cached {
            Some(Entry::Revoked(_)) => return Ok(Lookup::Ended),
            // A live entry is re-read when stale, or when it seems expired (another instance
            // may have extended it).
            Some(Entry::Known(info))
                if now - info.loaded_at < ENTRY_TTL_SECS && info.session.is_live(now) =>
            {
                return Ok(Lookup::Live(info));
            }
            _ => {}
        }
        let Some(info) = load(db, id, now).await? else {
            return Ok(Lookup::Ended);
        };
        // Revoked or past its absolute end: final, so remembered as such and never read
        // again for the tokens still presented with it.
        if info.session.revoked_at.is_some() || now >= info.session.absolute_expires_at {
            self.revoke([id], now);
            return Ok(Lookup::Ended);
        }
        let live = info.session.is_live(now);
        let stored = self.put(info);
        Ok(match stored {
            Some(info) if live => Lookup::Live(info),
            _ => Lookup::Ended,
        })
    }

    /// Stores what was read unless the cache already knows the session is revoked (a read
    /// that began before the revocation must not undo it). Returns it when stored.
    fn put(&self, info: SessionInfo) -> Option<Arc<SessionInfo>> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(Entry::Revoked(_)) = entries.get(&info.session.id) {
            return None;
        }
        if entries.len() >= CAPACITY {
            let now = info.loaded_at;
            entries.retain(|_, e| match e {
                Entry::Known(i) => now - i.loaded_at < ENTRY_TTL_SECS,
                Entry::Revoked(at) => now - *at < ENTRY_TTL_SECS,
            });
            if entries.len() >= CAPACITY {
                entries.retain(|_, e| matches!(e, Entry::Revoked(_)));
            }
        }
        let info = Arc::new(info);
        entries.insert(info.session.id.clone(), Entry::Known(Arc::clone(&info)));
        Some(info)
    }

    /// Records sessions as revoked, whether or not they were cached.
    pub fn revoke<'a>(&self, ids: impl IntoIterator<Item = &'a str>, now: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if !matches!(entries.get(id), Some(Entry::Revoked(_))) {
                entries.insert(id.to_owned(), Entry::Revoked(now));
            }
        }
    }

    /// Forgets a live session so it is read again (a refresh extended it).
    pub fn forget(&self, id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(Entry::Known(_)) = entries.get(id) {
            entries.remove(id);
        }
    }

    /// Forgets the live entries `matches` selects, so they are read again (revocations stay).
    fn forget_where(&self, matches: impl Fn(&SessionInfo) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| match e {
            Entry::Known(info) => !matches(info),
            Entry::Revoked(_) => true,
        });
    }

    /// Follows, on `jobs`, the revocation feed (every instance's and the CLI's revoked
    /// sessions, and users or tenants whose tokens were revoked as a whole) and the cache
    /// invalidations of users and tenants, until the cache is dropped. A follower that fell
    /// behind forgets every live entry: they are read again, revocations included.
    pub fn follow(self: &Arc<Self>, jobs: &Jobs, feed: &Feed, changes: &Changes, clock: Clock) {
        let mut batches = feed.subscribe();
        let weak = Arc::downgrade(self);
        jobs.spawn(async move {
            loop {
                let received = batches.recv().await;
                let Some(cache) = weak.upgrade() else { return };
                match received {
                    Ok(batch) => {
                        for entry in &batch.entries {
                            let tenant = entry.revocation.tid.as_str();
                            match &entry.revocation.target {
                                Revoked::Session { sid } => {
                                    cache.revoke([sid.as_str()], clock.now())
                                }
                                Revoked::Subject { sub, .. } => cache.forget_where(|info| {
                                    info.user.tenant_id == tenant && info.user.id == *sub
                                }),
                                Revoked::Tenant { .. } => {
                                    cache.forget_where(|info| info.tenant.id == tenant);
                                }
                                Revoked::Token { .. } => {}
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => cache.forget_where(|_| true),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        changes.follow(Arc::downgrade(self), |cache: &Self, change| match change {
            Some(Change::User { id }) => cache.forget_where(|info| info.user.id == *id),
            Some(Change::Tenant { id }) => cache.forget_where(|info| info.tenant.id == *id),
            Some(_) => {}
            None => cache.forget_where(|_| true),
        });
    }
}

impl Watcher for SessionCache {
    fn revoked(&self, ids: &[String], now: i64) {
        self.revoke(ids.iter().map(String::as_str), now);
    }

    fn extended(&self, id: &str) {
        self.forget(id);
    }
}

async fn load(db: &Db, id: &str, now: i64) -> Result<Option<SessionInfo>, sqlx::Error> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS}, u.email, u.username, u.first_name, u.last_name, \
         u.created_at AS user_created_at, u.last_login_at, t.slug, t.name AS tenant_name \
         FROM sessions s JOIN users u ON u.id = s.user_id JOIN tenants t ON t.id = s.tenant_id \
         WHERE s.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let session = row_to_session(&row)?;
    let user = User {
        id: session.user_id.clone(),
        tenant_id: session.tenant_id.clone(),
        email: row.try_get("email")?,
        username: row.try_get("username")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        active: session.user_active,
        created_at: row.try_get("user_created_at")?,
        last_login_at: row.try_get("last_login_at")?,
    };
    let tenant = Tenant {
        id: session.tenant_id.clone(),
        slug: row.try_get("slug")?,
        name: row.try_get("tenant_name")?,
    };
    Ok(Some(SessionInfo {
        session,
        user,
        tenant,
        loaded_at: now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(loaded_at: i64) -> SessionInfo {
        let session = Session {
            id: "s".into(),
            user_id: "u".into(),
            tenant_id: "t".into(),
            created_at: 0,
            last_used_at: 0,
            idle_expires_at: 1_000,
            absolute_expires_at: 2_000,
            auth_time: 0,
            amr: vec!["pwd".into()],
            ip: None,
            user_agent: None,
            revoked_at: None,
            user_active: true,
        };
        SessionInfo {
            user: User {
                id: "u".into(),
                tenant_id: "t".into(),
                email: "a@b.c".into(),
                username: None,
                first_name: String::new(),
                last_name: String::new(),
                active: true,
                created_at: 0,
                last_login_at: None,
            },
            tenant: Tenant {
                id: "t".into(),
                slug: "default".into(),
                name: "Default".into(),
            },
            session,
            loaded_at,
        }
    }

    #[test]
    fn a_read_that_started_before_a_revocation_cannot_undo_it() {
        let cache = SessionCache::new();
        assert!(cache.put(info(10)).is_some());
        cache.revoke(["s"], 11);
        assert!(cache.put(info(12)).is_none());
        cache.forget("s");
        assert!(
            cache.put(info(13)).is_none(),
            "forgetting keeps revocations"
        );
    }

    #[test]
    fn a_revocation_is_remembered_even_for_a_session_never_seen() {
        let cache = SessionCache::new();
        cache.revoke(["s"], 11);
        assert!(cache.put(info(12)).is_none());
    }
}
