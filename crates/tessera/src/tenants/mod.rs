//! Tenants: the isolated groups every account, role and service account belongs to. The
//! tenant type, the two fixed tenants and the lookups every capability needs live here; their
//! administration over HTTP is [`routes`].

pub mod routes;
pub mod store;

use crate::db::Db;

/// Id of the tenant whose platform admins manage every tenant (see migration 0004).
pub const SYSTEM_TENANT_ID: &str = "00000000-0000-7000-8000-000000000000";

/// Id of the tenant every installation starts with (see migration 0002).
pub const DEFAULT_TENANT_ID: &str = "00000000-0000-7000-8000-000000000001";

/// A tenant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    /// UUIDv7 (the default tenant's is fixed).
    pub id: String,
    /// The name typed at login.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// The tenant id for a slug.
pub async fn tenant_id(db: &Db, slug: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug.to_lowercase())
        .fetch_optional(db.pool())
        .await
}

/// The tenant that self-service registration with `slug` (the default tenant when `None`)
/// may create an account in: only an active tenant, never the `system` tenant, whose accounts
/// administer every tenant.
pub async fn registrable_tenant(
    db: &Db,
    slug: Option<&str>,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<String> = match slug {
        Some(slug) => {
            sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1 AND active = 1 AND id <> $2")
                .bind(slug.to_lowercase())
        }
        None => {
            sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1 AND active = 1 AND id <> $2")
                .bind(DEFAULT_TENANT_ID)
        }
    }
    .bind(SYSTEM_TENANT_ID)
    .fetch_optional(db.pool())
    .await?;
    Ok(row)
}
