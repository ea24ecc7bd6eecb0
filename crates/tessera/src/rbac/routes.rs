//! `/api/v1/admin/roles`: a tenant's roles, listed, created, changed and deleted by callers
//! holding `roles:*` permissions in that tenant. Built-in roles cannot be changed or deleted,
//! a role still held by someone cannot be deleted, and nobody grants a permission they do not
//! hold themselves. Taking a permission away from a role ends, at services, the tokens its
//! holders were issued before (a subject entry each), as taking a role from a user does.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use tessera_token::unix_now;

use super::{AccessChanged, Permission};
use crate::caller::{Authenticated, Target};
use crate::http::client::RequestMeta;
use crate::http::error::db_error;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::state::AppState;

/// Most permissions one role may hold.
const MAX_PERMISSIONS: usize = 100;

/// Longest description.
const MAX_DESCRIPTION: usize = 500;

/// The role routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/roles", get(list).post(create))
        .route(
            "/api/v1/admin/roles/{name}",
            get(show).patch(update).delete(remove),
        )
}

/// A role as the API shows it.
#[derive(Debug, Clone, Serialize)]
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

const COLUMNS: &str = "name, description, permissions, built_in, created_at, updated_at";

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "invalid_role_name",
            "a role name has 1 to 64 lowercase letters, digits, `_` or `-`",
        ))
    }
}

fn check_description(description: &str) -> Result<(), ApiError> {
    if description.chars().count() > MAX_DESCRIPTION || crate::text::has_hidden(description) {
        return Err(invalid(
            "validation_failed",
            format!(
                "`description` has at most {MAX_DESCRIPTION} characters and no control, format \
                 or bidi characters"
            ),
        ));
    }
    Ok(())
}

/// Parses the requested permissions, and checks the caller holds each of them: creating a
/// role must never be a way to grant oneself more.
async fn grantable(
    state: &AppState,
    caller: &Authenticated,
    texts: &[String],
) -> Result<Vec<String>, ApiError> {
    if texts.len() > MAX_PERMISSIONS {
        return Err(invalid(
            "validation_failed",
            format!("a role holds at most {MAX_PERMISSIONS} permissions"),
        ));
    }
    let mut parsed = Vec::with_capacity(texts.len());
    for text in texts {
        parsed.push(
            Permission::parse(text).map_err(|e| invalid("invalid_permission", e.to_string()))?,
        );
    }
    caller.ensure_holds(state, &parsed).await?;
    let mut normalized: Vec<String> = parsed.iter().map(ToString::to_string).collect();
    normalized.sort();
    normalized.dedup();
    Ok(normalized)
}

/// Stored permissions, parsed (they were checked when written; anything unreadable counts
/// as nothing).
fn parse_stored(texts: &[String]) -> Vec<Permission> {
    texts
        .iter()
        .filter_map(|t| Permission::parse(t).ok())
        .collect()
}

async fn find(state: &AppState, tenant_id: &str, name: &str) -> Result<RoleView, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM roles WHERE tenant_id = $1 AND name = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(state.db().pool())
        .await
        .map_err(db_error)?
        .ok_or_else(ApiError::not_found)?;
    row_to_view(&row).map_err(db_error)
}

async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
) -> Result<Json<Page<RoleView>>, ApiError> {
    caller.require(&state, "roles:read").await?;
    let pool = state.db().pool();
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM roles WHERE tenant_id = $1")
        .bind(caller.tenant_id())
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM roles WHERE tenant_id = $1 ORDER BY name LIMIT $2 OFFSET $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(caller.tenant_id())
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let items = rows
        .iter()
        .map(row_to_view)
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(Json(page.page(items, total)))
}

async fn show(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    caller.require(&state, "roles:read").await?;
    Ok(Json(find(&state, caller.tenant_id(), &name).await?))
}

/// A new role.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRole {
    name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<String>,
}

async fn create(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(new): Json<NewRole>,
) -> Result<Response, ApiError> {
    caller.require(&state, "roles:create").await?;
    check_name(&new.name)?;
    check_description(&new.description)?;
    let permissions = grantable(&state, &caller, &new.permissions).await?;
    let now = unix_now();
    let encoded = serde_json::to_string(&permissions).map_err(ApiError::internal)?;
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    let inserted = sqlx::query(
        "INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, 0, $5, $5)",
    )
    .bind(caller.tenant_id())
    .bind(&new.name)
    .bind(&new.description)
    .bind(&encoded)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "role_exists",
                "the tenant already has a role with this name",
            ));
        }
        Err(e) => return Err(db_error(e)),
    }
    let details = serde_json::json!({ "permissions": permissions });
    caller
        .record(
            &mut tx,
            "role.created",
            ("role", &new.name),
            &origin,
            Some(details),
        )
        .await?;
    tx.commit().await.map_err(db_error)?;
    state.rbac().invalidate(caller.tenant_id());
    let view = RoleView {
        name: new.name,
        description: new.description,
        permissions,
        built_in: false,
        created_at: now,
        updated_at: now,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Changes to a role; absent fields stay as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    description: Option<String>,
    permissions: Option<Vec<String>>,
}

fn built_in_refused() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "built_in_role",
        "built-in roles cannot be changed or deleted; create a role of your own",
    )
}

async fn update(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(name): Path<String>,
    Json(change): Json<RoleChange>,
) -> Result<Json<RoleView>, ApiError> {
    caller.require(&state, "roles:update").await?;
    let mut role = find(&state, caller.tenant_id(), &name).await?;
    if role.built_in {
        return Err(built_in_refused());
    }
    // Narrowing a role takes permissions from its holders: only someone holding all of them
    // may (the containment rule).
    caller
        .ensure_may_act_on(&state, Target::Role(&role.permissions))
        .await?;
    if let Some(description) = change.description {
        check_description(&description)?;
        role.description = description;
    }
    let before = role.permissions.clone();
    if let Some(permissions) = change.permissions {
        role.permissions = grantable(&state, &caller, &permissions).await?;
    }
    // Narrowed when something held before is no longer covered.
    let narrowed =
        super::first_uncovered(&parse_stored(&role.permissions), &parse_stored(&before)).is_some();
    role.updated_at = unix_now();
    let encoded = serde_json::to_string(&role.permissions).map_err(ApiError::internal)?;
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    sqlx::query(
        "UPDATE roles SET description = $1, permissions = $2, updated_at = $3 \
         WHERE tenant_id = $4 AND name = $5 AND built_in = 0",
    )
    .bind(&role.description)
    .bind(&encoded)
    .bind(role.updated_at)
    .bind(caller.tenant_id())
    .bind(&name)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let mut changed = AccessChanged::default();
    if narrowed {
        for holder in super::holders(&mut tx, caller.tenant_id(), &name)
            .await
            .map_err(db_error)?
        {
            changed
                .record(&mut tx, caller.tenant_id(), &holder)
                .await
                .map_err(db_error)?;
        }
    }
    let details = serde_json::json!({ "permissions": role.permissions });
    caller
        .record(
            &mut tx,
            "role.updated",
            ("role", &name),
            &origin,
            Some(details),
        )
        .await?;
    tx.commit().await.map_err(db_error)?;
    state.rbac().invalidate(caller.tenant_id());
    changed.apply(state.rbac(), state.feed());
    Ok(Json(role))
}

async fn remove(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&state, "roles:delete").await?;
    let role = find(&state, caller.tenant_id(), &name).await?;
    if role.built_in {
        return Err(built_in_refused());
    }
    caller
        .ensure_may_act_on(&state, Target::Role(&role.permissions))
        .await?;
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    let holders: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles r JOIN users u ON u.id = r.user_id \
         WHERE u.tenant_id = $1 AND r.role = $2",
    )
    .bind(caller.tenant_id())
    .bind(&name)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    if holders > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "role_in_use",
            format!("{holders} account(s) still hold this role; take it from them first"),
        ));
    }
    sqlx::query("DELETE FROM roles WHERE tenant_id = $1 AND name = $2 AND built_in = 0")
        .bind(caller.tenant_id())
        .bind(&name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    caller
        .record(&mut tx, "role.deleted", ("role", &name), &origin, None)
        .await?;
    tx.commit().await.map_err(db_error)?;
    state.rbac().invalidate(caller.tenant_id());
    Ok(StatusCode::NO_CONTENT)
}
