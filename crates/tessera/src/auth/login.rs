//! `POST /api/v1/auth/login` and `POST /api/v1/auth/register`.
//!
//! Login never tells an attacker which accounts exist: an unknown tenant, an unknown account
//! and a wrong password all cost one password verification of the same cost (a dummy hash
//! stands in for a missing one) and all get the same 401 `invalid_credentials`. Only after a
//! correct password does a disabled account learn that it is disabled.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_token::unix_now;

use super::password::MAX_PASSWORD_BYTES;
use super::tokens::{self, Delivery};
use crate::AppState;
use crate::audit::{self, Actor, Origin};
use crate::config::Registration;
use crate::http::client::Client;
use crate::http::error::db_error;
use crate::http::{ApiError, Json};
use crate::sessions::NewSession;
use crate::users::{self, DEFAULT_TENANT_ID, Email, NewUser, User, UserError};

/// Longest login name or email considered; longer input cannot name an account.
const MAX_LOGIN_BYTES: usize = 320;

/// The login request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email or username.
    login: String,
    password: String,
    /// Tenant slug; the default tenant when absent.
    tenant: Option<String>,
    #[serde(default)]
    delivery: Delivery,
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "the login or the password is wrong")
}

/// Logs in with a password and opens a session.
pub async fn login(
    State(state): State<AppState>,
    Client(origin): Client,
    headers: HeaderMap,
    Json(request): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    if request.password.len() > MAX_PASSWORD_BYTES {
        return Err(super::password::PasswordError::TooLong.into());
    }
    if request.login.len() > MAX_LOGIN_BYTES {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("`login` has at most {MAX_LOGIN_BYTES} bytes"),
        ));
    }
    // Login CSRF: a foreign page must not sign a browser into the attacker's account. A
    // browser always names the Origin of a cross-site POST; API clients may send none.
    if request.delivery == Delivery::Cookie
        && let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| state.auth().csrf.allows(o))
    {
        return Err(ApiError::forbidden(
            "csrf_failed",
            "the request comes from an origin that is not allowed",
        ));
    }

    let db = state.db();
    let tenant_id = match request.tenant.as_deref() {
        None => Some(DEFAULT_TENANT_ID.to_owned()),
        Some(slug) if slug.len() <= 64 => users::tenant_id(db, slug).await.map_err(db_error)?,
        Some(_) => None,
    };
    let account = match &tenant_id {
        Some(tenant_id) => users::find_for_login(db, tenant_id, &request.login)
            .await
            .map_err(db_error)?,
        None => None,
    };
    let stored = account.as_ref().and_then(|(_, hash)| hash.clone());
    let verified = state.passwords().verify(request.password, stored).await?;

    let (user, verified_hash) = match account {
        Some((user, Some(hash))) if verified.ok => (user, hash),
        account => {
            let reason = match (&tenant_id, &account) {
                (None, _) => "unknown_tenant",
                (Some(_), None) => "unknown_account",
                (Some(_), Some(_)) => "wrong_password",
            };
            let user = account.map(|(user, _)| user);
            login_failed(&state, tenant_id.as_deref(), user.as_ref(), reason, &origin).await?;
            return Err(invalid_credentials());
        }
    };
    if !user.active {
        login_failed(
            &state,
            Some(&user.tenant_id),
            Some(&user),
            "account_disabled",
            &origin,
        )
        .await?;
        return Err(ApiError::forbidden(
            "account_disabled",
            "this account is disabled",
        ));
    }

    let mut tx = db.begin_write().await.map_err(db_error)?;
    let still_valid = users::record_login(
        &mut tx,
        &user.id,
        &verified_hash,
        verified.upgraded.as_deref(),
        unix_now(),
    )
    .await
    .map_err(db_error)?;
    if !still_valid {
        // The password was reset or the account disabled while this login was verifying.
        drop(tx);
        login_failed(
            &state,
            Some(&user.tenant_id),
            Some(&user),
            "changed_meanwhile",
            &origin,
        )
        .await?;
        return Err(invalid_credentials());
    }
    let (session, refresh) = state
        .sessions()
        .create(
            &mut tx,
            &NewSession {
                user_id: &user.id,
                tenant_id: &user.tenant_id,
                amr: &["pwd"],
                origin: &origin,
            },
        )
        .await
        .map_err(db_error)?;
    audit::record(
        &mut tx,
        &audit::Event {
            action: "login.succeeded",
            actor: &Actor::User(user.id.clone()),
            tenant_id: Some(&user.tenant_id),
            target: Some(("session", &session.id)),
            success: true,
            reason: None,
            origin: &origin,
            details: verified
                .upgraded
                .is_some()
                .then(|| serde_json::json!({ "password_hash_upgraded": true })),
        },
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;

    let roles = users::roles(db, &user.id).await.map_err(db_error)?;
    tokens::deliver(
        &state,
        request.delivery,
        &session,
        &refresh,
        roles,
        Some(&user),
    )
    .await
}

async fn login_failed(
    state: &AppState,
    tenant_id: Option<&str>,
    user: Option<&User>,
    reason: &str,
    origin: &Origin,
) -> Result<(), ApiError> {
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    audit::record(
        &mut tx,
        &audit::Event {
            action: "login.failed",
            actor: &Actor::Anonymous,
            tenant_id,
            target: user.map(|u| ("user", u.id.as_str())),
            success: false,
            reason: Some(reason),
            origin,
            details: None,
        },
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// The self-service registration request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    username: Option<String>,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    /// Tenant slug; the default tenant when absent.
    tenant: Option<String>,
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// Creates an account when `auth.registration = "open"`.
pub async fn register(
    State(state): State<AppState>,
    Client(origin): Client,
    Json(request): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    if state.config().auth.registration == Registration::Closed {
        return Err(ApiError::forbidden(
            "registration_closed",
            "accounts are created by administrators on this server",
        ));
    }
    let email = Email::parse(&request.email).map_err(|e| invalid("invalid_email", e))?;
    if let Some(username) = &request.username {
        users::check_username(username).map_err(|e| invalid("invalid_username", e))?;
    }
    users::check_name("first_name", &request.first_name)
        .map_err(|e| invalid("validation_failed", e))?;
    users::check_name("last_name", &request.last_name)
        .map_err(|e| invalid("validation_failed", e))?;
    let db = state.db();
    let tenant_id = match request.tenant.as_deref() {
        None => DEFAULT_TENANT_ID.to_owned(),
        Some(slug) => users::tenant_id(db, slug)
            .await
            .map_err(db_error)?
            .ok_or_else(|| invalid("unknown_tenant", "no tenant has this slug"))?,
    };
    let hash = state.passwords().hash(request.password).await?;
    let new = NewUser {
        tenant_id,
        email,
        username: request.username,
        first_name: request.first_name.trim().to_owned(),
        last_name: request.last_name.trim().to_owned(),
        password_hash: Some(hash),
        roles: vec!["user".to_owned()],
    };
    let mut tx = db.begin_write().await.map_err(db_error)?;
    let user = match users::create(&mut tx, &new, &Actor::Anonymous, &origin).await {
        Ok(user) => user,
        Err(UserError::Conflict) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "account_exists",
                "an account with this email or username already exists",
            ));
        }
        Err(e) => return Err(db_error(e)),
    };
    tx.commit().await.map_err(db_error)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "user": user })),
    )
        .into_response())
}
