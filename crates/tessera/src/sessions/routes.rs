//! Session endpoints: a user's own sessions (`/api/v1/auth/sessions…`) and an administrator's
//! view of the sessions of users in their tenant (`/api/v1/admin/users/{id}/sessions…`).
//! Another user's or another tenant's session is answered exactly like a missing one. Listing
//! or revoking another user's sessions follows the containment rule: the caller must hold
//! everything that user holds.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::{Scope, SessionView};
use crate::caller::{Authenticated, Target};
use crate::http::client::RequestMeta;
use crate::http::error::db_error;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::state::AppState;
use crate::users::{self, UserError};
use utoipa_axum::routes;

/// The session routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_mine))
        .routes(routes!(current))
        .routes(routes!(revoke_others))
        .routes(routes!(revoke_mine))
        .routes(routes!(list_for_admin))
        .routes(routes!(revoke_all_for_admin))
}

/// How many sessions a revocation ended.
#[derive(Serialize, utoipa::ToSchema)]
struct RevokedCount {
    revoked: usize,
}

async fn page_of(
    state: &AppState,
    user_id: &str,
    current: Option<&str>,
    page: PageRequest,
) -> Result<Page<SessionView>, ApiError> {
    let (sessions, total) =
        super::list_live(state.db(), user_id, page.limit(), page.offset()).await?;
    let items = sessions.iter().map(|s| s.view(current)).collect();
    Ok(page.page(items, total))
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/sessions",
    tag = "sessions",
    responses((status = 200, description = "A page of the caller's sessions", body = Page<SessionView>))
)]
async fn list_mine(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let page = page_of(&state, caller.user_id(), Some(caller.session_id()), page).await?;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/sessions/current",
    tag = "sessions",
    responses((status = 200, description = "The caller's session", body = SessionView))
)]
async fn current(caller: Authenticated) -> Json<SessionView> {
    Json(caller.info.session.view(Some(caller.session_id())))
}

async fn revoke(
    state: &AppState,
    caller: &Authenticated,
    scope: Scope<'_>,
    reason: &str,
    origin: &RequestMeta,
) -> Result<usize, ApiError> {
    let mut tx = state.db().begin_write().await?;
    let revoked = super::revoke(&mut tx, scope, reason, &caller.actor(), origin).await?;
    tx.commit().await?;
    let count = revoked.0.len();
    revoked.apply(state.sessions());
    Ok(count)
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/sessions/{id}/revoke",
    tag = "sessions",
    responses((status = 204, description = "Ended"))
)]
async fn revoke_mine(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut conn = state.db().pool().acquire().await?;
    let owned = super::fetch(&mut conn, &id)
        .await?
        .is_some_and(|s| s.user_id == caller.user_id() && s.revoked_at.is_none());
    drop(conn);
    if !owned {
        return Err(ApiError::not_found());
    }
    revoke(&state, &caller, Scope::One(&id), "revoked_by_user", &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/sessions/revoke-others",
    tag = "sessions",
    responses((status = 200, description = "How many sessions ended", body = RevokedCount))
)]
async fn revoke_others(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
) -> Result<Json<RevokedCount>, ApiError> {
    let scope = Scope::AllOfExcept(caller.user_id(), caller.session_id());
    let revoked = revoke(&state, &caller, scope, "revoked_by_user", &origin).await?;
    Ok(Json(RevokedCount { revoked }))
}

/// The user `id` when the caller holds `permission` in its tenant and everything the user
/// holds; 403 without either, 404 for anyone outside the tenant.
async fn administered_user(
    state: &AppState,
    caller: &Authenticated,
    id: &str,
    permission: Perm,
) -> Result<users::User, ApiError> {
    caller.require(state, permission).await?;
    let user = match users::find_in_tenant(state.db(), caller.tenant_id(), id).await {
        Ok(user) => user,
        Err(UserError::NotFound) => return Err(ApiError::not_found()),
        Err(e) => return Err(db_error(e)),
    };
    caller.ensure_may_act_on(state, Target::User(&user)).await?;
    Ok(user)
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}/sessions",
    tag = "sessions",
    responses((status = 200, description = "A page of the account's sessions", body = Page<SessionView>))
)]
async fn list_for_admin(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
    page: PageRequest,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let user = administered_user(&state, &caller, &id, Perm::SessionsRead).await?;
    let page = page_of(&state, &user.id, Some(caller.session_id()), page).await?;
    Ok(Json(page))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/sessions/revoke-all",
    tag = "sessions",
    responses((status = 200, description = "How many sessions ended", body = RevokedCount))
)]
async fn revoke_all_for_admin(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<RevokedCount>, ApiError> {
    let user = administered_user(&state, &caller, &id, Perm::SessionsRevoke).await?;
    let revoked = revoke(
        &state,
        &caller,
        Scope::AllOf(&user.id),
        "revoked_by_admin",
        &origin,
    )
    .await?;
    Ok(Json(RevokedCount { revoked }))
}
