//! The queries behind role administration: every SQL statement on `roles` the routes need.

use serde::Serialize;
use sqlx::{AnyConnection, Row as _};

use super::BUILT_IN_ROLES;
use crate::db::{Db, Param};
use crate::http::pagination::PageRequest;

const COLUMNS: &str = "name, description, permissions, built_in, created_at, updated_at";

/// A role as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    /// Name users hold.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// `resource:action` strings.
    pub permissions: Vec<String>,
    /// Whether it is one of the built-in roles.
    pub built_in: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

fn row_to_view(row: &sqlx::any::AnyRow) -> Result<RoleView, sqlx::Error> {
    let permissions: String = row.try_get("permissions")?;
    Ok(RoleView {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        built_in: row.try_get::<i32, _>("built_in")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The role `name` of the tenant, if there is one.
pub async fn find(db: &Db, tenant_id: &str, name: &str) -> Result<Option<RoleView>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM roles WHERE tenant_id = $1 AND name = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(row_to_view)
        .transpose()
}

/// One page of the tenant's roles, by name, and how many it has.
pub async fn page(
    db: &Db,
    tenant_id: &str,
    page: &PageRequest,
) -> Result<(Vec<RoleView>, i64), sqlx::Error> {
    db.paginate(
        "SELECT COUNT(*) FROM roles WHERE tenant_id = $1",
        &format!("SELECT {COLUMNS} FROM roles WHERE tenant_id = $1 ORDER BY name"),
        &[Param::Text(tenant_id)],
        (page.limit(), page.offset()),
        row_to_view,
    )
    .await
}

/// Inserts a role of the tenant; `false` when the tenant has one of this name.
pub async fn insert(
    conn: &mut AnyConnection,
    tenant_id: &str,
    role: &RoleView,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id)
    .bind(&role.name)
    .bind(&role.description)
    .bind(encode(&role.permissions))
    .bind(i32::from(role.built_in))
    .bind(role.created_at)
    .bind(role.updated_at)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives a new tenant the built-in roles.
pub async fn insert_built_in(
    conn: &mut AnyConnection,
    tenant_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    for (name, description, permissions) in BUILT_IN_ROLES {
        sqlx::query(
            "INSERT INTO roles (tenant_id, name, description, permissions, built_in, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5)",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(description)
        .bind(permissions)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes a role's description and permissions (never a built-in role's).
pub async fn update(
    conn: &mut AnyConnection,
    tenant_id: &str,
    role: &RoleView,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE roles SET description = $1, permissions = $2, updated_at = $3 \
         WHERE tenant_id = $4 AND name = $5 AND built_in = 0",
    )
    .bind(&role.description)
    .bind(encode(&role.permissions))
    .bind(role.updated_at)
    .bind(tenant_id)
    .bind(&role.name)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many of the tenant's accounts hold the role.
pub async fn holder_count(
    conn: &mut AnyConnection,
    tenant_id: &str,
    name: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles r JOIN users u ON u.id = r.user_id \
         WHERE u.tenant_id = $1 AND r.role = $2",
    )
    .bind(tenant_id)
    .bind(name)
    .fetch_one(conn)
    .await
}

/// Deletes a role of the tenant (never a built-in one).
pub async fn delete(
    conn: &mut AnyConnection,
    tenant_id: &str,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM roles WHERE tenant_id = $1 AND name = $2 AND built_in = 0")
        .bind(tenant_id)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Permissions as stored: a JSON array of strings.
fn encode(permissions: &[String]) -> String {
    serde_json::to_string(permissions).unwrap_or_else(|_| "[]".into())
}
