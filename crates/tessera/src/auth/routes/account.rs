//! The caller's own session and account: refresh, logout, `/me`, password change.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::auth::Auth;
use crate::auth::attempts::{Factor, Failure, SecretCheck, Subject};
use crate::auth::tokens::{self, Delivery};
use crate::caller::Authenticated;
use crate::http::client::RequestMeta;
use crate::http::error::db_error;
use crate::http::ratelimit::Decision;
use crate::http::{ApiError, Json};
use crate::sessions::refresh::RefreshToken;
use crate::sessions::{self, RefreshError, Scope, SessionView};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::users::{self, User};

/// The refresh request; the body may be empty when the token is in the cookie.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: Option<String>,
    /// Defaults to where the token came from.
    delivery: Option<Delivery>,
}

fn parse_refresh_body(headers: &HeaderMap, body: &Bytes) -> Result<RefreshRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RefreshRequest::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                e.to_string(),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the request body is not valid JSON",
            )
        }
    })
}

fn refresh_refused(error: RefreshError) -> ApiError {
    match error {
        RefreshError::Unknown => {
            ApiError::unauthorized("invalid_refresh_token", "this refresh token is not valid")
        }
        RefreshError::Reused => ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; the session is revoked",
        ),
        RefreshError::SessionEnded => {
            ApiError::unauthorized("session_ended", "the session has ended; log in again")
        }
        RefreshError::Database(e) => db_error(e),
    }
}

/// `POST /api/v1/auth/refresh`: rotates the refresh token (from the body, or the cookie) and
/// issues a new access token.
pub async fn refresh(
    State(state): State<AppState>,
    origin: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = parse_refresh_body(&headers, &body)?;
    let auth = state.auth();
    let presented = Presented::from(&headers, auth, request.refresh_token)?;
    let delivery = presented.delivery(&headers, auth, request.delivery)?;
    // Refreshes are limited per session: the limit's headers go on every answer once the
    // session is known.
    let mut decision: Option<Decision> = None;
    let outcome = rotate(
        &state,
        &origin,
        &headers,
        &presented,
        delivery,
        &mut decision,
    )
    .await;
    let mut response = match outcome {
        // A browser whose refresh cookie is dead should forget it, or it will keep trying.
        Err(error) if presented.from_cookie && error.status() == StatusCode::UNAUTHORIZED => {
            let mut response = error.into_response();
            auth.cookies.clear(response.headers_mut());
            response
        }
        other => other.into_response(),
    };
    if let Some(decision) = decision {
        decision.apply(response.headers_mut());
    }
    Ok(response)
}

/// The refresh token a refresh presents, and where it came from.
struct Presented {
    text: String,
    from_cookie: bool,
}

impl Presented {
    /// The token from the body, else from the refresh cookie.
    fn from(headers: &HeaderMap, auth: &Auth, body: Option<String>) -> Result<Self, ApiError> {
        if let Some(text) = body {
            return Ok(Self {
                text,
                from_cookie: false,
            });
        }
        let cookie = tessera_token::cookie_value(headers, auth.cookies.refresh_name())
            .map_err(|e| ApiError::unauthorized("invalid_refresh_token", e.to_string()))?;
        match cookie {
            Some(text) => Ok(Self {
                text,
                from_cookie: true,
            }),
            None => Err(ApiError::unauthorized(
                "unauthenticated",
                "send `refresh_token` in the body, or the refresh cookie",
            )),
        }
    }

    /// Where the new tokens go. A token from an HttpOnly cookie goes back into cookies, never
    /// into a body a script could read; tokens from a body may go into cookies only for an
    /// allowed page.
    fn delivery(
        &self,
        headers: &HeaderMap,
        auth: &Auth,
        asked: Option<Delivery>,
    ) -> Result<Delivery, ApiError> {
        match (self.from_cookie, asked) {
            (true, Some(Delivery::Body)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "a refresh token from the cookie is answered with cookies only",
            )),
            (true, _) => Ok(Delivery::Cookie),
            (false, Some(Delivery::Cookie)) => {
                auth.csrf.check_origin(headers)?;
                Ok(Delivery::Cookie)
            }
            (false, _) => Ok(Delivery::Body),
        }
    }
}

/// Finds the token's session, checks the CSRF proof of a cookie refresh and the per-session
/// limit (its decision goes into `decision`), rotates and delivers.
async fn rotate(
    state: &AppState,
    origin: &RequestMeta,
    headers: &HeaderMap,
    presented: &Presented,
    delivery: Delivery,
    decision: &mut Option<Decision>,
) -> Result<Response, ApiError> {
    let token = RefreshToken::parse(&presented.text)
        .ok_or_else(|| refresh_refused(RefreshError::Unknown))?;
    // A token this server never issued is answered from one read, before anything that
    // would queue behind the writers.
    let session_id = state
        .sessions()
        .session_of(state.db(), &token)
        .await?
        .ok_or_else(|| refresh_refused(RefreshError::Unknown))?;
    if presented.from_cookie {
        // A cookie refresh is a cookie-authenticated state change: the CSRF proof is
        // checked, against the token's session, before anything rotates.
        state.auth().csrf.check_origin(headers)?;
        state.auth().csrf.check(headers, &session_id)?;
    }
    if let Some(policy) = state.limiter().policies().refresh_per_session {
        let checked = state
            .limiter()
            .check(policy, &format!("refresh:{session_id}"))
            .await;
        *decision = Some(checked);
        if !checked.allowed {
            return Err(checked.refusal());
        }
    }
    let rotation = state
        .sessions()
        .rotate_known(state.db(), &session_id, &token, origin)
        .await
        .map_err(refresh_refused)?;
    let roles = users::roles(state.db(), &rotation.session.user_id).await?;
    tokens::deliver(
        state,
        delivery,
        &rotation.session,
        &rotation.token,
        roles,
        None,
    )
    .await
}

/// `POST /api/v1/auth/logout`: revokes the current session and clears the cookies.
pub async fn logout(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
) -> Result<Response, ApiError> {
    let actor = caller.actor();
    let mut tx = state.db().begin_write().await?;
    audit::Event::new("logout", &actor, &origin)
        .in_tenant(caller.tenant_id())
        .on("session", caller.session_id())
        .record(&mut tx)
        .await?;
    let revoked = sessions::revoke(
        &mut tx,
        Scope::One(caller.session_id()),
        "logout",
        &actor,
        &origin,
    )
    .await?;
    tx.commit().await?;
    revoked.apply(state.sessions());
    let mut response = StatusCode::NO_CONTENT.into_response();
    state.auth().cookies.clear(response.headers_mut());
    Ok(response)
}

#[derive(Serialize)]
struct Me<'a> {
    user: &'a User,
    tenant: &'a Tenant,
    roles: &'a [String],
    session: SessionView,
}

/// `GET /api/v1/auth/me`: who the caller is, answered from the session and roles caches
/// (its current roles, not the token's).
pub async fn me(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Response, ApiError> {
    let info = &caller.info;
    let roles = caller.roles(&state).await?;
    let mut response = Json(Me {
        user: &info.user,
        tenant: &info.tenant,
        roles: &roles,
        session: info.session.view(Some(&info.session.id)),
    })
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The password change request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// `POST /api/v1/auth/password`: needs the current password, checked under the account's
/// lockout like a login; every other session of the account is revoked, the current one
/// stays.
pub async fn change_password(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(request): Json<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let passwords = state.passwords();
    passwords.check_policy(&request.new_password)?;
    let db = state.db();
    let actor = caller.actor();
    let user = &caller.info.user;
    let check = SecretCheck::begin(&state, Factor::Password, Subject::Account(user)).await?;
    let stored = users::password_hash(db, caller.user_id()).await?;
    let verified = passwords
        .verify(request.current_password, stored.clone())
        .await?;
    let Some(expected) = stored.filter(|_| verified.ok) else {
        check
            .failed(Failure {
                action: "password.change_failed",
                actor: &actor,
                reason: Some("wrong_password"),
                origin: &origin,
                details: None,
            })
            .await?;
        return Err(ApiError::forbidden(
            "invalid_credentials",
            "the current password is wrong",
        ));
    };
    // The new hash is made while the check still holds its place, so one session cannot
    // run more hashes at once than the account's checks allow.
    let hash = passwords.hash(request.new_password).await?;
    check.passed().await;
    let mut tx = db.begin_write().await?;
    let swapped = users::swap_password_hash(
        &mut tx,
        user,
        &expected,
        &hash,
        "password.changed",
        &actor,
        &origin,
    )
    .await?;
    if !swapped {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "password_changed_meanwhile",
            "the password was changed by another request; log in again",
        ));
    }
    let revoked = sessions::revoke(
        &mut tx,
        Scope::AllOfExcept(&user.id, caller.session_id()),
        "password_changed",
        &actor,
        &origin,
    )
    .await?;
    tx.commit().await?;
    revoked.apply(state.sessions());
    Ok(StatusCode::NO_CONTENT)
}
