//! `/api/v1/admin/tenants`: tenants, managed only by platform admins (callers of the `system`
//! tenant holding `tenants:*` permissions). A new tenant starts with the built-in roles.
//!
//! Disabling one stops everything in it: every session ends, its accounts cannot log in or
//! refresh, its service accounts are refused at every OAuth endpoint and the revocation feed
//! (open streams end), and a `tenant` entry of the feed revokes every token it issued so far,
//! for introspection and for every verifier alike. Enabling it again lets new logins and
//! tokens work and brings back none of the old ones.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use tessera_token::unix_now;

use crate::caller::Authenticated;
use crate::http::client::RequestMeta;
use crate::http::error::db_error;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::rbac::BUILT_IN_ROLES;
use crate::revocations;
use crate::sessions::{self, Scope};
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;

/// The tenant routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/tenants", get(list).post(create))
        .route(
            "/api/v1/admin/tenants/{id}",
            get(show).patch(update).delete(remove),
        )
}

/// A tenant as platform admins see it.
#[derive(Debug, Clone, Serialize)]
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

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// Only platform admins: the `system` tenant's callers holding `permission`. Anyone else is
/// refused the same way whatever they ask for.
async fn platform_admin(
    state: &AppState,
    caller: &Authenticated,
    permission: &str,
) -> Result<(), ApiError> {
    if caller.tenant_id() != SYSTEM_TENANT_ID {
        return Err(ApiError::forbidden(
            "forbidden",
            "tenants are managed by platform admins only",
        ));
    }
    caller.require(state, permission).await
}

fn check_slug(slug: &str) -> Result<(), ApiError> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if !ok {
        return Err(invalid(
            "invalid_slug",
            "a tenant slug has 2 to 63 lowercase letters, digits or inner `-`",
        ));
    }
    Ok(())
}

async fn find(state: &AppState, id: &str) -> Result<TenantView, ApiError> {
    let row = sqlx::query(
        "SELECT id, slug, name, active, created_at, mfa_required_roles FROM tenants WHERE id = $1",
    )
    .bind(id)
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
) -> Result<Json<Page<TenantView>>, ApiError> {
    platform_admin(&state, &caller, "tenants:read").await?;
    let pool = state.db().pool();
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    let rows = sqlx::query(
        "SELECT id, slug, name, active, created_at, mfa_required_roles FROM tenants ORDER BY slug LIMIT $1 OFFSET $2",
    )
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
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    platform_admin(&state, &caller, "tenants:read").await?;
    Ok(Json(find(&state, &id).await?))
}

/// A new tenant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    slug: String,
    name: String,
}

async fn create(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(new): Json<NewTenant>,
) -> Result<Response, ApiError> {
    platform_admin(&state, &caller, "tenants:create").await?;
    check_slug(&new.slug)?;
    crate::http::check_display_name(&new.name)?;
    let view = TenantView {
        id: uuid::Uuid::now_v7().to_string(),
        slug: new.slug,
        name: new.name.trim().to_owned(),
        active: true,
        created_at: unix_now(),
        mfa_required_roles: Vec::new(),
    };
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    let inserted = sqlx::query(
        "INSERT INTO tenants (id, slug, name, active, created_at) VALUES ($1, $2, $3, 1, $4)",
    )
    .bind(&view.id)
    .bind(&view.slug)
    .bind(&view.name)
    .bind(view.created_at)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tenant_exists",
                "a tenant with this slug already exists",
            ));
        }
        Err(e) => return Err(db_error(e)),
    }
    for (name, description, permissions) in BUILT_IN_ROLES {
        sqlx::query(
            "INSERT INTO roles (tenant_id, name, description, permissions, built_in, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5)",
        )
        .bind(&view.id)
        .bind(name)
        .bind(description)
        .bind(permissions)
        .bind(view.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    let details = serde_json::json!({ "slug": view.slug });
    caller
        .record(
            &mut tx,
            "tenant.created",
            ("tenant", &view.id),
            &origin,
            Some(details),
        )
        .await?;
    tx.commit().await.map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Changes to a tenant; absent fields stay as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantChange {
    name: Option<String>,
    active: Option<bool>,
    mfa_required_roles: Option<Vec<String>>,
}

/// Writes `change` with its audit events; disabling revokes every session and every token
/// of the tenant.
async fn apply(
    state: &AppState,
    caller: &Authenticated,
    origin: &RequestMeta,
    mut tenant: TenantView,
    change: TenantChange,
) -> Result<TenantView, ApiError> {
    if let Some(name) = &change.name {
        crate::http::check_display_name(name)?;
    }
    if change.active == Some(false) && tenant.id == SYSTEM_TENANT_ID {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "system_tenant",
            "the system tenant cannot be disabled: no one could manage tenants afterwards",
        ));
    }
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    let mut revoked = sessions::Revoked::default();
    let mut tenant_revoked = None;
    if let Some(name) = change.name {
        tenant.name = name.trim().to_owned();
        sqlx::query("UPDATE tenants SET name = $1 WHERE id = $2")
            .bind(&tenant.name)
            .bind(&tenant.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        caller
            .record(
                &mut tx,
                "tenant.updated",
                ("tenant", &tenant.id),
                origin,
                None,
            )
            .await?;
    }
    if let Some(mut roles) = change.mfa_required_roles {
        if roles.len() > 32 || roles.iter().any(|r| r.is_empty() || r.len() > 64) {
            return Err(invalid(
                "validation_failed",
                "`mfa_required_roles` holds at most 32 role names",
            ));
        }
        roles.sort();
        roles.dedup();
        sqlx::query("UPDATE tenants SET mfa_required_roles = $1 WHERE id = $2")
            .bind(serde_json::to_string(&roles).unwrap_or_else(|_| "[]".into()))
            .bind(&tenant.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let details = serde_json::json!({ "mfa_required_roles": roles });
        caller
            .record(
                &mut tx,
                "tenant.mfa_policy_changed",
                ("tenant", &tenant.id),
                origin,
                Some(details),
            )
            .await?;
        tenant.mfa_required_roles = roles;
    }
    if let Some(active) = change.active
        && active != tenant.active
    {
        sqlx::query("UPDATE tenants SET active = $1 WHERE id = $2")
            .bind(i32::from(active))
            .bind(&tenant.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let action = if active {
            "tenant.enabled"
        } else {
            "tenant.disabled"
        };
        caller
            .record(&mut tx, action, ("tenant", &tenant.id), origin, None)
            .await?;
        if !active {
            revoked = sessions::revoke(
                &mut tx,
                Scope::Tenant(&tenant.id),
                "tenant_disabled",
                &caller.actor(),
                origin,
            )
            .await
            .map_err(db_error)?;
            // Last before the commit: caches that read the tenant while this transaction
            // was open know from this entry's time to read it again.
            tenant_revoked = Some(
                revocations::record_tenant(&mut tx, &tenant.id)
                    .await
                    .map_err(db_error)?,
            );
        }
        tenant.active = active;
    }
    tx.commit().await.map_err(db_error)?;
    revoked.apply(state.sessions());
    state.feed().learn_all(tenant_revoked);
    // Enabled or disabled, its clients are read again here at once.
    state.clients().forget_tenant(&tenant.id);
    Ok(tenant)
}

async fn update(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(change): Json<TenantChange>,
) -> Result<Json<TenantView>, ApiError> {
    platform_admin(&state, &caller, "tenants:update").await?;
    let tenant = find(&state, &id).await?;
    Ok(Json(apply(&state, &caller, &origin, tenant, change).await?))
}

/// Deleting disables the tenant and ends its sessions; its rows stay for the audit trail.
async fn remove(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform_admin(&state, &caller, "tenants:delete").await?;
    let tenant = find(&state, &id).await?;
    let change = TenantChange {
        name: None,
        active: Some(false),
        mfa_required_roles: None,
    };
    apply(&state, &caller, &origin, tenant, change).await?;
    Ok(StatusCode::NO_CONTENT)
}
