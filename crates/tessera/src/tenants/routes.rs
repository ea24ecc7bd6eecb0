//! `/api/v1/admin/tenants`: tenants, managed only by platform admins (callers of the `system`
//! tenant holding `tenants:*` permissions). A new tenant starts with the built-in roles.
//!
//! Disabling one stops everything in it: every session ends, its accounts cannot log in or
//! refresh, its service accounts are refused at every OAuth endpoint and the revocation feed
//! (open streams end), and a `tenant` entry of the feed revokes every token it issued so far,
//! for introspection and for every verifier alike. Enabling it again lets new logins and
//! tokens work and brings back none of the old ones.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_token::unix_now;

use super::SYSTEM_TENANT_ID;
use super::store::{self, TenantView};
use crate::bus::changes::{self, Change};
use crate::caller::Authenticated;
use crate::http::client::RequestMeta;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::revocations;
use crate::sessions::{self, Scope};
use crate::state::AppState;
use utoipa_axum::routes;

/// The tenant routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// Only platform admins: the `system` tenant's callers holding `permission`. Anyone else is
/// refused the same way whatever they ask for.
async fn platform_admin(
    state: &AppState,
    caller: &Authenticated,
    permission: Perm,
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
    store::find(state.db(), id)
        .await?
        .ok_or_else(ApiError::not_found)
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/tenants",
    tag = "tenants",
    responses((status = 200, description = "A page of tenants", body = Page<TenantView>))
)]
async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
) -> Result<Json<Page<TenantView>>, ApiError> {
    platform_admin(&state, &caller, Perm::TenantsRead).await?;
    let (items, total) = store::page(state.db(), &page).await?;
    Ok(Json(page.page(items, total)))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/tenants/{id}",
    tag = "tenants",
    responses((status = 200, description = "The tenant", body = TenantView))
)]
async fn show(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    platform_admin(&state, &caller, Perm::TenantsRead).await?;
    Ok(Json(find(&state, &id).await?))
}

/// A new tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    slug: String,
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/tenants",
    tag = "tenants",
    request_body = NewTenant,
    responses((status = 201, description = "Created", body = TenantView))
)]
async fn create(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(new): Json<NewTenant>,
) -> Result<Response, ApiError> {
    platform_admin(&state, &caller, Perm::TenantsCreate).await?;
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
    let mut tx = state.db().begin_write().await?;
    if !store::insert(&mut tx, &view).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenant_exists",
            "a tenant with this slug already exists",
        ));
    }
    crate::rbac::store::insert_built_in(&mut tx, &view.id, view.created_at).await?;
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
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Changes to a tenant; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
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
    let mut tx = state.db().begin_write().await?;
    let mut revoked = sessions::Revoked::default();
    let mut tenant_revoked = None;
    if let Some(name) = change.name {
        tenant.name = name.trim().to_owned();
        store::set_name(&mut tx, &tenant.id, &tenant.name).await?;
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
        store::set_mfa_required_roles(&mut tx, &tenant.id, &roles).await?;
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
        store::set_active(&mut tx, &tenant.id, active).await?;
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
            .await?;
            // Last before the commit: caches that read the tenant while this transaction
            // was open know from this entry's time to read it again.
            tenant_revoked = Some(revocations::record_tenant(&mut tx, &tenant.id).await?);
        }
        tenant.active = active;
    }
    // Every instance reads the tenant (its clients, its sessions' details) again.
    let tenant_changed = changes::record(
        &mut tx,
        &Change::Tenant {
            id: tenant.id.clone(),
        },
        state.clock().now_ms(),
    )
    .await?;
    tx.commit().await?;
    revoked.apply(state.sessions());
    state.feed().learn_all(tenant_revoked);
    // Enabled or disabled, its clients are read again here at once.
    state.clients().forget_tenant(&tenant.id);
    tenant_changed.publish(state.bus());
    Ok(tenant)
}

#[utoipa::path(
    patch,
    path = "/api/v1/admin/tenants/{id}",
    tag = "tenants",
    request_body = TenantChange,
    responses((status = 200, description = "Changed", body = TenantView))
)]
async fn update(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(change): Json<TenantChange>,
) -> Result<Json<TenantView>, ApiError> {
    platform_admin(&state, &caller, Perm::TenantsUpdate).await?;
    let tenant = find(&state, &id).await?;
    Ok(Json(apply(&state, &caller, &origin, tenant, change).await?))
}

/// Deleting disables the tenant and ends its sessions; its rows stay for the audit trail.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/tenants/{id}",
    tag = "tenants",
    responses((status = 204, description = "Disabled"))
)]
async fn remove(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform_admin(&state, &caller, Perm::TenantsDelete).await?;
    let tenant = find(&state, &id).await?;
    let change = TenantChange {
        name: None,
        active: Some(false),
        mfa_required_roles: None,
    };
    apply(&state, &caller, &origin, tenant, change).await?;
    Ok(StatusCode::NO_CONTENT)
}
