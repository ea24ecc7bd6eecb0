//! Role-based access control: permissions are `resource:action` pairs with `*` as a wildcard
//! on either side, roles are named sets of them per tenant, and a caller may do what any of
//! its roles grants. Built-in roles: `admin` (`*:*`), `user` (`profile:*`), `viewer`
//! (`*:read`); the `system` tenant's `platform_admin` manages every tenant.

pub mod routes;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

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

/// How long a tenant's roles are trusted before they are read again, so a change made on
/// another instance applies within this many seconds (changes made here apply at once).
const ROLES_TTL_SECS: i64 = 10;

/// Longest part (resource or action) of a permission.
const MAX_PART: usize = 64;

/// A permission, parsed once: `resource:action`, each part `*` or lowercase letters, digits,
/// `_`, `-` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    resource: String,
    action: String,
}

impl Permission {
    /// Parses `resource:action`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let part_ok = |p: &str| {
            p == "*"
                || (!p.is_empty()
                    && p.len() <= MAX_PART
                    && p.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'_' | b'-' | b'.')
                    }))
        };
        match text.split_once(':') {
            Some((resource, action)) if part_ok(resource) && part_ok(action) => Ok(Self {
                resource: resource.to_owned(),
                action: action.to_owned(),
            }),
            _ => Err(format!(
                "`{}` is not a permission: expected `resource:action`, each lowercase letters, \
                 digits, `_`, `-`, `.` or `*`",
                text.escape_debug()
            )),
        }
    }

    /// Whether holding `self` allows `wanted`. A wildcard grants; asked for, it is only
    /// granted by a wildcard (holding `users:read` does not allow `users:*`).
    pub fn allows(&self, wanted: &Permission) -> bool {
        let covers = |held: &str, asked: &str| held == "*" || held == asked;
        covers(&self.resource, &wanted.resource) && covers(&self.action, &wanted.action)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Permission {
        Permission::parse(text).expect("valid permission")
    }

    #[test]
    fn wildcards_match_on_either_side_and_only_from_the_held_side() {
        let table = [
            // held, wanted, allowed
            ("*:*", "users:delete", true),
            ("users:*", "users:delete", true),
            ("users:*", "roles:delete", false),
            ("*:read", "audit:read", true),
            ("*:read", "audit:export", false),
            ("users:read", "users:read", true),
            ("users:read", "users:readx", false),
            ("users:read", "users:*", false),
            ("users:*", "users:*", true),
            ("*:read", "*:*", false),
            ("etl_jobs:execute", "etl_jobs:execute", true),
            ("dashboards:read", "dashboard:read", false),
        ];
        for (held, wanted, allowed) in table {
            assert_eq!(p(held).allows(&p(wanted)), allowed, "{held} vs {wanted}");
        }
    }

    #[test]
    fn only_well_formed_permissions_parse() {
        for good in [
            "a:b",
            "etl_jobs:execute",
            "audit:*",
            "*:*",
            "v1.flags:read-all",
        ] {
            assert_eq!(p(good).to_string(), good);
        }
        for bad in [
            "", ":", "a:", ":b", "a", "a:b:c", "A:b", "a b:c", "a:*x", "**:a", "é:a",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Permission::parse(&format!("{}:read", "a".repeat(65))).is_err());
    }
}
