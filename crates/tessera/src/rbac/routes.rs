//! `/api/v1/admin/roles`: a tenant's roles, listed, created, changed and deleted by callers
//! holding `roles:*` permissions in that tenant. Built-in roles cannot be changed or deleted,
//! a role still held by someone cannot be deleted, and nobody grants a permission they do not
//! hold themselves. Taking a permission away from a role ends, at services, the tokens its
//! holders were issued before (a subject entry each), as taking a role from a user does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_token::unix_now;

use super::store::{self, RoleView};
use super::{AccessChanged, Permission};
use crate::bus::changes::{self, Change, Changed};
use crate::caller::{Authenticated, Target};
use crate::http::client::RequestMeta;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::state::AppState;
use utoipa_axum::routes;

/// Most permissions one role may hold.
const MAX_PERMISSIONS: usize = 100;

/// Longest description.
const MAX_DESCRIPTION: usize = 500;

/// The role routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
}

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
    store::find(state.db(), tenant_id, name)
        .await?
        .ok_or_else(ApiError::not_found)
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/roles",
    tag = "roles",
    responses((status = 200, description = "A page of roles", body = Page<RoleView>))
)]
async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
) -> Result<Json<Page<RoleView>>, ApiError> {
    caller.require(&state, Perm::RolesRead).await?;
    let (items, total) = store::page(state.db(), caller.tenant_id(), &page).await?;
    Ok(Json(page.page(items, total)))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/roles/{name}",
    tag = "roles",
    responses((status = 200, description = "The role", body = RoleView))
)]
async fn show(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    caller.require(&state, Perm::RolesRead).await?;
    Ok(Json(find(&state, caller.tenant_id(), &name).await?))
}

/// A new role.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRole {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/roles",
    tag = "roles",
    request_body = NewRole,
    responses((status = 201, description = "Created", body = RoleView))
)]
async fn create(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(new): Json<NewRole>,
) -> Result<Response, ApiError> {
    caller.require(&state, Perm::RolesCreate).await?;
    check_name(&new.name)?;
    check_description(&new.description)?;
    let permissions = grantable(&state, &caller, &new.permissions).await?;
    let now = unix_now();
    let view = RoleView {
        name: new.name,
        description: new.description,
        permissions,
        built_in: false,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db().begin_write().await?;
    if !store::insert(&mut tx, caller.tenant_id(), &view).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "role_exists",
            "the tenant already has a role with this name",
        ));
    }
    let details = serde_json::json!({ "permissions": view.permissions });
    caller
        .record(
            &mut tx,
            "role.created",
            ("role", &view.name),
            &origin,
            Some(details),
        )
        .await?;
    let roles_changed = roles_changed(&state, &mut tx, caller.tenant_id()).await?;
    tx.commit().await?;
    state.rbac().invalidate(caller.tenant_id());
    roles_changed.publish(state.bus());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Changes to a role; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
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

#[utoipa::path(
    patch,
    path = "/api/v1/admin/roles/{name}",
    tag = "roles",
    request_body = RoleChange,
    responses((status = 200, description = "Changed", body = RoleView))
)]
async fn update(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(name): Path<String>,
    Json(change): Json<RoleChange>,
) -> Result<Json<RoleView>, ApiError> {
    caller.require(&state, Perm::RolesUpdate).await?;
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
    let mut tx = state.db().begin_write().await?;
    store::update(&mut tx, caller.tenant_id(), &role).await?;
    let mut changed = AccessChanged::default();
    if narrowed {
        for holder in super::holders(&mut tx, caller.tenant_id(), &name).await? {
            changed.record(&mut tx, caller.tenant_id(), &holder).await?;
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
    let roles_changed = roles_changed(&state, &mut tx, caller.tenant_id()).await?;
    tx.commit().await?;
    state.rbac().invalidate(caller.tenant_id());
    roles_changed.publish(state.bus());
    changed.apply(state.rbac(), state.feed());
    Ok(Json(role))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/roles/{name}",
    tag = "roles",
    responses((status = 204, description = "Deleted"))
)]
async fn remove(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&state, Perm::RolesDelete).await?;
    let role = find(&state, caller.tenant_id(), &name).await?;
    if role.built_in {
        return Err(built_in_refused());
    }
    caller
        .ensure_may_act_on(&state, Target::Role(&role.permissions))
        .await?;
    let mut tx = state.db().begin_write().await?;
    let holders = store::holder_count(&mut tx, caller.tenant_id(), &name).await?;
    if holders > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "role_in_use",
            format!("{holders} account(s) still hold this role; take it from them first"),
        ));
    }
    store::delete(&mut tx, caller.tenant_id(), &name).await?;
    caller
        .record(&mut tx, "role.deleted", ("role", &name), &origin, None)
        .await?;
    let roles_changed = roles_changed(&state, &mut tx, caller.tenant_id()).await?;
    tx.commit().await?;
    state.rbac().invalidate(caller.tenant_id());
    roles_changed.publish(state.bus());
    Ok(StatusCode::NO_CONTENT)
}

/// Records, in the changing transaction, that `tenant_id`'s role definitions changed, so
/// every instance reads them again once it commits.
async fn roles_changed(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    tenant_id: &str,
) -> Result<Changed, sqlx::Error> {
    let change = Change::Roles {
        tenant_id: tenant_id.to_owned(),
    };
    changes::record(tx, &change, state.clock().now_ms()).await
}
