//! The queries behind tenant administration: every SQL statement on `tenants` the routes need.

use serde::Serialize;
use sqlx::{AnyConnection, Row as _};

use crate::db::{Db, Param};
use crate::http::pagination::PageRequest;

/// A tenant as platform admins see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    /// UUIDv7 (fixed for `default` and `system`).
    pub id: String,
    /// Typed at login.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Whether its accounts may log in.
    pub active: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Roles whose holders must use a second factor.
    pub mfa_required_roles: Vec<String>,
}

fn row_to_view(row: &sqlx::any::AnyRow) -> Result<TenantView, sqlx::Error> {
    Ok(TenantView {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        active: row.try_get::<i32, _>("active")? != 0,
        created_at: row.try_get("created_at")?,
        mfa_required_roles: serde_json::from_str(&row.try_get::<String, _>("mfa_required_roles")?)
            .unwrap_or_default(),
    })
}

const COLUMNS: &str = "id, slug, name, active, created_at, mfa_required_roles";

/// The tenant `id`, if there is one.
pub async fn find(db: &Db, id: &str) -> Result<Option<TenantView>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(row_to_view)
        .transpose()
}

/// One page of every tenant, by slug, and how many there are.
pub async fn page(db: &Db, page: &PageRequest) -> Result<(Vec<TenantView>, i64), sqlx::Error> {
    db.paginate(
        "SELECT COUNT(*) FROM tenants",
        &format!("SELECT {COLUMNS} FROM tenants ORDER BY slug"),
        &[] as &[Param<'_>],
        (page.limit(), page.offset()),
        row_to_view,
    )
    .await
}

/// Inserts a new, active tenant; `false` when its slug is taken.
pub async fn insert(conn: &mut AnyConnection, tenant: &TenantView) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO tenants (id, slug, name, active, created_at) VALUES ($1, $2, $3, 1, $4)",
    )
    .bind(&tenant.id)
    .bind(&tenant.slug)
    .bind(&tenant.name)
    .bind(tenant.created_at)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Renames the tenant.
pub async fn set_name(conn: &mut AnyConnection, id: &str, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the roles whose holders must use a second factor.
pub async fn set_mfa_required_roles(
    conn: &mut AnyConnection,
    id: &str,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET mfa_required_roles = $1 WHERE id = $2")
        .bind(serde_json::to_string(roles).unwrap_or_else(|_| "[]".into()))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Enables or disables the tenant (what else disabling ends is the caller's transaction's).
pub async fn set_active(
    conn: &mut AnyConnection,
    id: &str,
    active: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET active = $1 WHERE id = $2")
        .bind(i32::from(active))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
