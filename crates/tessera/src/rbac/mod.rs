//! Role-based access control: permissions are `resource:action` pairs with `*` as a wildcard
//! on either side, roles are named sets of them per tenant, and a caller may do what any of
//! its roles grants. Built-in roles: `admin` (`*:*`), `user` (`profile:*`), `viewer`
//! (`*:read`); the `system` tenant's `platform_admin` manages every tenant.

pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use tessera_token::Permission;
use tessera_token::unix_now;

use crate::db::Db;

/// Id of the tenant whose platform admins manage every tenant (see migration 0004).
pub const SYSTEM_TENANT_ID: &str = "00000000-0000-7000-8000-000000000000";

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

/// How long a tenant's roles are trusted before they are read again, so a change made on
/// another instance applies within this many seconds (changes made here apply at once).
const ROLES_TTL_SECS: i64 = 10;

/// The roles of one tenant, as read at one moment.
struct TenantRoles {
    roles: HashMap<String, Arc<[Permission]>>,
    loaded_at: i64,
}

/// Role definitions of every tenant seen, cached.
pub struct Rbac {
    tenants: RwLock<HashMap<String, Arc<TenantRoles>>>,
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
        }
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
    /// is missing, while the token stays small enough for a cookie.
    pub async fn scope(
        &self,
        db: &Db,
        tenant_id: &str,
        roles: &[String],
    ) -> Result<String, sqlx::Error> {
        let tenant = self.tenant(db, tenant_id).await?;
        let mut granted: Vec<&Permission> = roles
            .iter()
            .filter_map(|role| tenant.roles.get(role))
            .flat_map(|held| held.iter())
            .collect();
        granted.sort();
        granted.dedup();
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
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant_id.to_owned(), Arc::clone(&tenant));
        Ok(tenant)
    }
}
