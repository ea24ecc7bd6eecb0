//! Role-based access control: permissions are `resource:action` pairs with `*` as a wildcard
//! on either side, roles are named sets of them per tenant, and a caller may do what any of
//! its roles grants. Built-in roles: `admin` (`*:*`), `user` (`profile:*`), `viewer`
//! (`*:read`); the `system` tenant's `platform_admin` manages every tenant.
//!
//! Tessera's own endpoints decide with the caller's **current** roles, not those its token
//! carries: both role definitions and each account's roles are cached here, dropped at once
//! when they change on this instance, and dropped within one feed poll when the revocation
//! feed shows a subject entry written elsewhere (any change of an account's roles, and a
//! permission taken from a role, writes one per account: see `users::admin` and `routes`).
//! The same entries tell token issuance the earliest second a subject's next token may
//! carry, so a token issued right after a change is never covered by the entry that ended
//! the tokens before it.

pub mod routes;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sqlx::AnyConnection;
pub use tessera_token::Permission;
use tessera_token::{Revocation, unix_now, unix_now_ms};

use crate::bus::changes::{Change, Changes};
use crate::db::Db;
use crate::revocations::{self, Feed};

/// The roles every tenant starts with: name, description, permissions (JSON). Migration 0004
/// seeds the same for the default tenant.
pub const BUILT_IN_ROLES: [(&str, &str, &str); 3] = [
    ("admin", "Everything within the tenant", r#"["*:*"]"#),
    ("user", "A signed-in member", r#"["profile:*"]"#),
    (
        "viewer",
        "Reads everything, changes nothing",
        r#"["*:read"]"#,
    ),
];

/// Longest `scope` put in an access token. Browsers keep cookies of up to about 4 KiB, and
/// the token holds more than its scope.
pub const MAX_SCOPE_BYTES: usize = 2_048;

/// How long a tenant's roles are trusted before they are read again. Changes made here
/// apply at once; one made on another instance that takes a permission away from holders
/// applies within a feed poll (its subject entries drop the tenant's roles), any other
/// within this many seconds.
const ROLES_TTL_SECS: i64 = 10;

/// How long an account's roles are trusted before they are read again. Every change made
/// through the API drops them at once here and, through the feed entry it writes, within a
/// feed poll elsewhere; this only bounds changes that bypass both (direct database edits).
const USER_ROLES_TTL_SECS: i64 = 10;

/// Most accounts whose roles are remembered; past it the cache starts over.
const USER_ROLES_CAPACITY: usize = 100_000;

/// The roles of one tenant, as read at one moment.
struct TenantRoles {
    roles: HashMap<String, Arc<[Permission]>>,
    loaded_at: i64,
}

impl TenantRoles {
    /// Every permission `roles` grant here, sorted, without duplicates.
    fn granted(&self, roles: &[String]) -> Vec<Permission> {
        let mut granted: Vec<Permission> = roles
            .iter()
            .filter_map(|role| self.roles.get(role))
            .flat_map(|held| held.iter().cloned())
            .collect();
        granted.sort();
        granted.dedup();
        granted
    }
}

/// The roles one account holds, as read at one moment.
struct UserRoles {
    roles: Arc<[String]>,
    loaded_at: i64,
}

/// How far past a change the subject entry it writes reaches (`issued_before` = now + this):
/// a token whose roles were read while the change was committing, and signed a moment later,
/// is covered too. Tokens issued after the change wait out that second (see
/// [`Rbac::issue_time`]).
pub const ACCESS_CHANGE_MARGIN_SECS: i64 = 1;

/// Longest wait [`Rbac::issue_time`] imposes, in milliseconds: past the margin's second and
/// the one it reaches into.
const MAX_ISSUE_WAIT_MS: i64 = (ACCESS_CHANGE_MARGIN_SECS + 1) * 1_000;

/// Accounts whose access was reduced or changed in one transaction. Each got a subject entry
/// in the revocation feed there, so services refuse the tokens issued before the change and
/// the client refreshes into one with the new scope; [`Self::apply`] tells this instance
/// once the transaction committed.
#[must_use = "apply it after the commit"]
#[derive(Debug, Default)]
pub struct AccessChanged(Vec<(String, Revocation)>);

impl AccessChanged {
    /// Writes the subject entry for `user_id` of `tenant_id` on `conn`, the change's
    /// transaction (after any session rows it revokes: every revoking transaction locks in
    /// that order).
    pub async fn record(
        &mut self,
        conn: &mut AnyConnection,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<(), sqlx::Error> {
        let entry =
            revocations::record_subject(conn, tenant_id, user_id, ACCESS_CHANGE_MARGIN_SECS)
                .await?;
        self.0.push((user_id.to_owned(), entry));
        Ok(())
    }

    /// After the commit: this instance forgets what it cached and the feed reads the entries
    /// now, for the other instances and services.
    pub fn apply(self, rbac: &Rbac, feed: &Feed) {
        let mut entries = Vec::with_capacity(self.0.len());
        for (user_id, entry) in self.0 {
            if let Some(cutoff) = entry.issued_before() {
                rbac.note_revoked(&entry.tid, &user_id, cutoff);
            }
            entries.push(entry);
        }
        if !entries.is_empty() {
            feed.learn_all(entries);
        }
    }
}

/// The accounts of `tenant_id` holding role `name`, on `conn`.
pub async fn holders(
    conn: &mut AnyConnection,
    tenant_id: &str,
    name: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT r.user_id FROM user_roles r JOIN users u ON u.id = r.user_id \
         WHERE u.tenant_id = $1 AND r.role = $2",
    )
    .bind(tenant_id)
    .bind(name)
    .fetch_all(&mut *conn)
    .await
}

/// The first of `target`'s permissions that `held` does not cover, if any. This is the
/// containment rule: nobody acts on an account or client holding more than they do, so a
/// target holding `*:*` can only be acted on by a caller holding `*:*`.
pub fn first_uncovered<'a>(
    held: &[Permission],
    target: &'a [Permission],
) -> Option<&'a Permission> {
    target
        .iter()
        .find(|wanted| !held.iter().any(|h| h.allows(wanted)))
}

/// Role definitions of every tenant seen, and the roles of accounts seen, cached.
pub struct Rbac {
    tenants: RwLock<HashMap<String, Arc<TenantRoles>>>,
    users: RwLock<HashMap<String, Arc<UserRoles>>>,
    /// Bumped by every invalidation: a read that began before one is used but not stored,
    /// so it cannot put back what the invalidation dropped.
    generation: AtomicU64,
    /// Per subject, the latest `issued_before` of a subject revocation: no token for it may
    /// be issued at or before that second.
    floors: Mutex<HashMap<String, i64>>,
}

impl Default for Rbac {
    fn default() -> Self {
        Self::new()
    }
}

impl Rbac {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            tenants: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            floors: Mutex::new(HashMap::new()),
        }
    }

    /// The roles account `user_id` holds now, sorted: from memory when fresh.
    pub async fn roles_of(&self, db: &Db, user_id: &str) -> Result<Arc<[String]>, sqlx::Error> {
        let now = unix_now();
        let cached = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .cloned();
        if let Some(user) = cached
            && now - user.loaded_at < USER_ROLES_TTL_SECS
        {
            return Ok(Arc::clone(&user.roles));
        }
        self.load_roles(db, user_id).await
    }

    /// Every permission account `user_id` of `tenant_id` holds, read from the database
    /// rather than the caches: what an administrator is about to act on is judged as it is
    /// now, whichever instance changed it.
    pub async fn held_by(
        &self,
        db: &Db,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<Permission>, sqlx::Error> {
        let roles = self.load_roles(db, user_id).await?;
        Ok(self.load(db, tenant_id).await?.granted(&roles))
    }

    /// Reads an account's roles, and caches them unless they were invalidated meanwhile.
    async fn load_roles(&self, db: &Db, user_id: &str) -> Result<Arc<[String]>, sqlx::Error> {
        let now = unix_now();
        let generation = self.generation.load(Ordering::Acquire);
        let roles: Vec<String> =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(user_id)
                .fetch_all(db.pool())
                .await?;
        let roles: Arc<[String]> = roles.into();
        // Checked under the lock: an invalidation bumps the generation before it takes the
        // lock, so it either is seen here or removes what is stored here.
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            if users.len() >= USER_ROLES_CAPACITY {
                users.clear();
            }
            users.insert(
                user_id.to_owned(),
                Arc::new(UserRoles {
                    roles: Arc::clone(&roles),
                    loaded_at: now,
                }),
            );
        }
        Ok(roles)
    }

    /// Every permission `roles` grant in `tenant_id`, without duplicates.
    pub async fn permissions_of(
        &self,
        db: &Db,
        tenant_id: &str,
        roles: &[String],
    ) -> Result<Vec<Permission>, sqlx::Error> {
        Ok(self.tenant(db, tenant_id).await?.granted(roles))
    }

    /// Forgets an account's roles after they changed here.
    pub fn forget_user(&self, user_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.users
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user_id);
    }

    /// Takes in a subject revocation (written here or read from the feed): what was cached
    /// about the subject and its tenant's roles is read again, and its next token is issued
    /// after `issued_before`.
    pub fn note_revoked(&self, tenant_id: &str, subject: &str, issued_before: i64) {
        self.forget_user(subject);
        self.invalidate(tenant_id);
        let now = unix_now();
        let mut floors = self.floors.lock().unwrap_or_else(|p| p.into_inner());
        if floors.len() >= USER_ROLES_CAPACITY {
            floors.retain(|_, floor| *floor >= now);
        }
        let floor = floors.entry(subject.to_owned()).or_insert(issued_before);
        *floor = (*floor).max(issued_before);
    }

    /// The `iat` of a token issued to `subject` now: the current second once it is past the
    /// subject's latest revocation, waiting for that (at most a second or two, right after a
    /// change) when needed. A token issued in the second a revocation covers would be refused
    /// by every service, although it carries the new roles.
    pub async fn issue_time(&self, subject: &str) -> i64 {
        let floor = self
            .floors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
            .copied();
        if let Some(floor) = floor {
            // Never long: an entry reaching further ahead (a client disabled with a wider
            // margin, then enabled again) costs a refused token, not a hanging request.
            let wait_ms =
                ((floor + 1).saturating_mul(1_000) - unix_now_ms()).min(MAX_ISSUE_WAIT_MS);
            if wait_ms > 0 {
                tokio::time::sleep(Duration::from_millis(wait_ms.unsigned_abs())).await;
            }
        }
        unix_now()
    }

    /// Follows the revocation feed until this cache is dropped: each subject entry, written
    /// by any instance or the CLI, is taken in with [`Self::note_revoked`].
    pub fn follow(self: &Arc<Self>, feed: &Feed) {
        revocations::follow_subjects(feed, Arc::downgrade(self), |rbac, entry| match entry {
            Some((tenant_id, subject, issued_before)) => {
                rbac.note_revoked(tenant_id, subject, issued_before);
            }
            // Entries were missed: everything cached may be stale.
            None => rbac.forget_all(),
        });
    }

    /// Follows the cache invalidations written by any instance or the CLI until this cache
    /// is dropped: a tenant's role definitions, an account (its roles are read again).
    pub fn follow_changes(self: &Arc<Self>, changes: &Changes) {
        changes.follow(Arc::downgrade(self), |rbac: &Self, change| match change {
            Some(Change::Roles { tenant_id } | Change::Tenant { id: tenant_id }) => {
                rbac.invalidate(tenant_id);
            }
            Some(Change::User { id }) => rbac.forget_user(id),
            Some(Change::Client { .. } | Change::Keys) => {}
            None => rbac.forget_all(),
        });
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.users
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Whether any of `roles` in `tenant_id` grants `wanted`. Unknown roles grant nothing.
    pub async fn allows(
        &self,
        db: &Db,
        tenant_id: &str,
        roles: &[String],
        wanted: &Permission,
    ) -> Result<bool, sqlx::Error> {
        let tenant = self.tenant(db, tenant_id).await?;
        Ok(roles.iter().any(|role| {
            tenant
                .roles
                .get(role)
                .is_some_and(|held| held.iter().any(|p| p.allows(wanted)))
        }))
    }

    /// Everything `roles` grant in `tenant_id`, as an access token's `scope`: the distinct
    /// permissions, sorted, space-separated. Services check permissions locally against it.
    /// Past [`MAX_SCOPE_BYTES`] the rest is left out (logged): services then refuse what
    /// is missing, while the token stays small enough for a cookie. Read from the database,
    /// not the cache: a token is issued from definitions as they are now.
    pub async fn scope(
        &self,
        db: &Db,
        tenant_id: &str,
        roles: &[String],
    ) -> Result<String, sqlx::Error> {
        let granted = self.load(db, tenant_id).await?.granted(roles);
        let mut scope = String::new();
        for permission in granted {
            let text = permission.to_string();
            if scope.len() + 1 + text.len() > MAX_SCOPE_BYTES {
                tracing::warn!(
                    tenant_id,
                    ?roles,
                    "the roles grant more permissions than a token carries; some are left out"
                );
                break;
            }
            if !scope.is_empty() {
                scope.push(' ');
            }
            scope.push_str(&text);
        }
        Ok(scope)
    }

    /// The permissions of role `name` in `tenant_id`, or `None` when the tenant has no such
    /// role.
    pub async fn role(
        &self,
        db: &Db,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<Arc<[Permission]>>, sqlx::Error> {
        Ok(self.tenant(db, tenant_id).await?.roles.get(name).cloned())
    }

    /// Forgets a tenant's roles after they changed here.
    pub fn invalidate(&self, tenant_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant_id);
    }

    async fn tenant(&self, db: &Db, tenant_id: &str) -> Result<Arc<TenantRoles>, sqlx::Error> {
        let now = unix_now();
        let cached = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant_id)
            .cloned();
        if let Some(tenant) = cached
            && now - tenant.loaded_at < ROLES_TTL_SECS
        {
            return Ok(tenant);
        }
        self.load(db, tenant_id).await
    }

    /// Reads a tenant's roles, and caches them unless they were invalidated meanwhile.
    async fn load(&self, db: &Db, tenant_id: &str) -> Result<Arc<TenantRoles>, sqlx::Error> {
        let now = unix_now();
        let generation = self.generation.load(Ordering::Acquire);
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, permissions FROM roles WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_all(db.pool())
                .await?;
        let mut roles = HashMap::with_capacity(rows.len());
        for (name, permissions) in rows {
            let texts: Vec<String> = serde_json::from_str(&permissions).unwrap_or_default();
            // Stored permissions were validated when written; anything unreadable grants
            // nothing rather than failing every request of the tenant.
            let parsed: Vec<Permission> = texts
                .iter()
                .filter_map(|t| Permission::parse(t).ok())
                .collect();
            roles.insert(name, parsed.into());
        }
        let tenant = Arc::new(TenantRoles {
            roles,
            loaded_at: now,
        });
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            tenants.insert(tenant_id.to_owned(), Arc::clone(&tenant));
        }
        Ok(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(texts: &[&str]) -> Vec<Permission> {
        texts
            .iter()
            .map(|t| Permission::parse(t).expect("valid"))
            .collect()
    }

    #[test]
    fn only_a_caller_holding_everything_a_target_holds_contains_it() {
        let table: [(&[&str], &[&str], Option<&str>); 7] = [
            (&["*:*"], &["*:*"], None),
            (&["users:*", "clients:*"], &["*:*"], Some("*:*")),
            (&["users:*", "clients:*"], &["users:*"], None),
            (&["users:*", "clients:*"], &["profile:*"], Some("profile:*")),
            (&["*:read"], &["audit:read"], None),
            (&["users:read"], &["users:*"], Some("users:*")),
            (&[], &[], None),
        ];
        for (held, target, missing) in table {
            let target = perms(target);
            assert_eq!(
                first_uncovered(&perms(held), &target).map(ToString::to_string),
                missing.map(str::to_owned),
                "{held:?} over {target:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_is_never_issued_in_a_second_a_revocation_covers() {
        let rbac = Rbac::new();
        let now = unix_now();
        assert_eq!(rbac.issue_time("u1").await, now.max(unix_now()));
        rbac.note_revoked("t1", "u1", now);
        assert!(rbac.issue_time("u1").await > now);
        assert!(rbac.issue_time("u2").await >= now);
    }
}
