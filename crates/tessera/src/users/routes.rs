//! `/api/v1/admin/users`: a tenant's accounts for callers holding `users:*` permissions in it.
//! Another tenant's account is answered exactly like a missing one. Giving someone a role
//! needs every permission that role grants: nobody hands out more than they hold. Acting on
//! an account (any change, disable, delete, password reset, unlock) needs every permission
//! that account holds: nobody takes over someone holding more than they do. Nobody disables
//! or deletes their own account here, so a tenant cannot lose its last administrator by a
//! slip.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::listing::ListQuery;
use super::{Email, NewUser, User};
use crate::bus::changes::{self, Change};
use crate::caller::{Authenticated, Target};
use crate::http::client::RequestMeta;
use crate::http::cursor::Scope as CursorScope;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{After, Page, PageRequest, capped_total};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::rbac::AccessChanged;
use crate::sessions;
use crate::state::AppState;
use utoipa_axum::routes;

/// Most roles one account may hold.
const MAX_ROLES: usize = 32;

/// Longest search text.
const MAX_QUERY: usize = 100;

/// The user routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(reset_password))
        .routes(routes!(unlock))
}

/// An account as administrators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// The account.
    #[serde(flatten)]
    pub user: User,
    /// Its role names, sorted.
    pub roles: Vec<String>,
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// The account `id` of the caller's tenant, after checking `permission`.
async fn administered(
    state: &AppState,
    caller: &Authenticated,
    id: &str,
    permission: Perm,
) -> Result<User, ApiError> {
    caller.require(state, permission).await?;
    Ok(super::find_in_tenant(state.db(), caller.tenant_id(), id).await?)
}

/// The account `id` the caller is about to act on: `permission`, the tenant, and the
/// containment rule checked in that order (403, 404, 403).
async fn acted_on(
    state: &AppState,
    caller: &Authenticated,
    id: &str,
    permission: Perm,
) -> Result<User, ApiError> {
    let user = administered(state, caller, id, permission).await?;
    caller.ensure_may_act_on(state, Target::User(&user)).await?;
    Ok(user)
}

/// Refuses to disable or delete the caller's own account.
fn not_self(caller: &Authenticated, user: &User) -> Result<(), ApiError> {
    if caller.user_id() == user.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_disable_self",
            "you cannot disable or delete your own account; ask another administrator",
        ));
    }
    Ok(())
}

/// Checks that every role exists in the caller's tenant and that the caller holds every
/// permission each grants; returns them sorted, without duplicates.
async fn grantable_roles(
    state: &AppState,
    caller: &Authenticated,
    roles: &[String],
) -> Result<Vec<String>, ApiError> {
    if roles.len() > MAX_ROLES {
        return Err(invalid(
            "validation_failed",
            format!("an account holds at most {MAX_ROLES} roles"),
        ));
    }
    let rbac = state.rbac();
    for role in roles {
        let Some(permissions) = rbac.role(state.db(), caller.tenant_id(), role).await? else {
            return Err(invalid(
                "unknown_role",
                format!("the tenant has no role `{}`", role.escape_debug()),
            ));
        };
        caller.ensure_holds(state, &permissions).await?;
    }
    let mut sorted = roles.to_vec();
    sorted.sort();
    sorted.dedup();
    Ok(sorted)
}

/// `?q=` narrows the list to emails, usernames and names containing it.
#[derive(Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "users",
    responses((status = 200, description = "A page of accounts", body = Page<UserView>))
)]
async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
    After(after): After,
    Query(search): Query<Search>,
) -> Result<Json<Page<UserView>>, ApiError> {
    caller.require(&state, Perm::UsersRead).await?;
    if search.q.chars().count() > MAX_QUERY {
        return Err(invalid(
            "validation_failed",
            format!("`q` has at most {MAX_QUERY} characters"),
        ));
    }
    let text = search.q.trim();
    // A cursor is good for this tenant and this search only.
    let scope = CursorScope {
        list: "users",
        tenant_id: caller.tenant_id(),
        filter: text,
    };
    let position: Option<(String,)> = after
        .as_deref()
        .map(|cursor| state.cursors().open(&scope, cursor))
        .transpose()?;
    let listing = super::listing::list(
        state.db(),
        &ListQuery {
            tenant_id: caller.tenant_id(),
            search: text,
            after: position.as_ref().map(|(email,)| email.as_str()),
            offset: page.offset(),
            limit: page.limit(),
        },
    )
    .await?;
    let offset = if position.is_some() { 0 } else { page.offset() };
    let total = capped_total(
        listing.counted,
        listing.cap,
        offset,
        listing.users.len(),
        listing.more,
    );
    let next_cursor = match listing.users.last() {
        Some(last) if listing.more => {
            Some(state.cursors().seal(&scope, &(last.email.to_lowercase(),)))
        }
        _ => None,
    };
    let roles = super::store::roles_of_each(state.db(), &listing.users).await?;
    let items = listing
        .users
        .into_iter()
        .zip(roles)
        .map(|(user, roles)| UserView { user, roles })
        .collect();
    Ok(Json(page.keyset_page(
        items,
        total,
        next_cursor,
        position.is_some(),
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}",
    tag = "users",
    responses((status = 200, description = "The account", body = UserView))
)]
async fn show(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let user = administered(&state, &caller, &id, Perm::UsersRead).await?;
    let roles = super::roles(state.db(), &user.id).await?;
    Ok(Json(UserView { user, roles }))
}

/// A new account.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    #[schema(format = Email)]
    email: String,
    /// Without one, the account cannot log in until a password is set.
    password: Option<String>,
    username: Option<String>,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "users",
    request_body = NewAccount,
    responses((status = 201, description = "Created", body = UserView))
)]
async fn create(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(new): Json<NewAccount>,
) -> Result<Response, ApiError> {
    caller.require(&state, Perm::UsersCreate).await?;
    let email = Email::parse(&new.email).map_err(|e| invalid("invalid_email", e))?;
    if let Some(username) = &new.username {
        super::check_username(username).map_err(|e| invalid("invalid_username", e))?;
    }
    super::check_name("first_name", &new.first_name)
        .map_err(|e| invalid("validation_failed", e))?;
    super::check_name("last_name", &new.last_name).map_err(|e| invalid("validation_failed", e))?;
    let roles = grantable_roles(&state, &caller, &new.roles).await?;
    let password_hash = match new.password {
        Some(password) => Some(state.passwords().hash(password).await?),
        None => None,
    };
    let account = NewUser {
        tenant_id: caller.tenant_id().to_owned(),
        email,
        username: new.username,
        first_name: new.first_name.trim().to_owned(),
        last_name: new.last_name.trim().to_owned(),
        password_hash,
        roles: roles.clone(),
    };
    let mut tx = state.db().begin_write().await?;
    let user = super::create(&mut tx, &account, &caller.actor(), &origin).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(UserView { user, roles })).into_response())
}

/// Changes to an account; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AccountChange {
    first_name: Option<String>,
    last_name: Option<String>,
    active: Option<bool>,
    roles: Option<Vec<String>>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{id}",
    tag = "users",
    request_body = AccountChange,
    responses((status = 200, description = "Changed", body = UserView))
)]
async fn update(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(change): Json<AccountChange>,
) -> Result<Json<UserView>, ApiError> {
    let mut user = acted_on(&state, &caller, &id, Perm::UsersUpdate).await?;
    if change.active == Some(false) {
        not_self(&caller, &user)?;
    }
    let current_roles = super::roles(state.db(), &user.id).await?;
    let new_roles = match &change.roles {
        Some(roles) => {
            // Only roles being added need the caller's permissions; taking one away does not.
            let added: Vec<String> = roles
                .iter()
                .filter(|r| !current_roles.contains(r))
                .cloned()
                .collect();
            grantable_roles(&state, &caller, &added).await?;
            let mut all = roles.clone();
            all.sort();
            all.dedup();
            if all.len() > MAX_ROLES {
                return Err(invalid(
                    "validation_failed",
                    format!("an account holds at most {MAX_ROLES} roles"),
                ));
            }
            Some(all)
        }
        None => None,
    };
    for (field, value) in [
        ("first_name", &change.first_name),
        ("last_name", &change.last_name),
    ] {
        if let Some(value) = value {
            super::check_name(field, value).map_err(|e| invalid("validation_failed", e))?;
        }
    }

    let mut tx = state.db().begin_write().await?;
    let mut user_changed = None;
    if change.first_name.is_some() || change.last_name.is_some() {
        user.first_name = change
            .first_name
            .map_or(user.first_name, |n| n.trim().to_owned());
        user.last_name = change
            .last_name
            .map_or(user.last_name, |n| n.trim().to_owned());
        super::store::set_names(&mut tx, &user.id, &user.first_name, &user.last_name).await?;
        caller
            .record(&mut tx, "user.updated", ("user", &user.id), &origin, None)
            .await?;
        // Other instances show the new names at once, not when their session cache expires.
        let change = Change::User {
            id: user.id.clone(),
        };
        user_changed = Some(changes::record(&mut tx, &change, state.clock().now_ms()).await?);
    }
    let mut revoked = sessions::Revoked::default();
    if let Some(active) = change.active
        && active != user.active
    {
        revoked = super::set_active(&mut tx, &user, active, &caller.actor(), &origin).await?;
        user.active = active;
    }
    let mut changed = AccessChanged::default();
    let roles = match new_roles {
        Some(roles) if roles != current_roles => {
            super::store::set_roles(&mut tx, &user.id, &roles).await?;
            // Tokens carry roles and scope: services must stop trusting the old ones.
            changed.record(&mut tx, &user.tenant_id, &user.id).await?;
            let details = serde_json::json!({ "from": current_roles, "to": roles });
            caller
                .record(
                    &mut tx,
                    "user.roles_changed",
                    ("user", &user.id),
                    &origin,
                    Some(details),
                )
                .await?;
            roles
        }
        _ => current_roles,
    };
    tx.commit().await?;
    revoked.apply(state.sessions());
    changed.apply(state.rbac(), state.feed());
    if let Some(user_changed) = user_changed {
        user_changed.publish(state.bus());
    }
    Ok(Json(UserView { user, roles }))
}

/// Lifts every lockout of the account (wrong passwords and wrong codes), audited.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/unlock",
    tag = "users",
    responses((status = 204, description = "Unlocked"))
)]
async fn unlock(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = acted_on(&state, &caller, &id, Perm::UsersUpdate).await?;
    crate::auth::attempts::unlock(&state, &user.id).await;
    let mut tx = state.db().begin_write().await?;
    caller
        .record(&mut tx, "user.unlocked", ("user", &user.id), &origin, None)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deleting disables the account and ends its sessions; the row stays for the audit trail.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}",
    tag = "users",
    responses((status = 204, description = "Deleted"))
)]
async fn remove(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = acted_on(&state, &caller, &id, Perm::UsersDelete).await?;
    not_self(&caller, &user)?;
    let mut tx = state.db().begin_write().await?;
    let revoked = super::set_active(&mut tx, &user, false, &caller.actor(), &origin).await?;
    tx.commit().await?;
    revoked.apply(state.sessions());
    Ok(StatusCode::NO_CONTENT)
}

/// An administrator's password reset.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordReset {
    new_password: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/password",
    tag = "users",
    request_body = PasswordReset,
    responses((status = 204, description = "Password set; the account's sessions ended"))
)]
async fn reset_password(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(reset): Json<PasswordReset>,
) -> Result<StatusCode, ApiError> {
    let user = acted_on(&state, &caller, &id, Perm::UsersUpdate).await?;
    let hash = state.passwords().hash(reset.new_password).await?;
    let revoked = super::set_password_hash(
        state.db(),
        &user,
        &hash,
        "user.password_reset",
        &caller.actor(),
        &origin,
    )
    .await?;
    revoked.apply(state.sessions());
    Ok(StatusCode::NO_CONTENT)
}
