//! The MFA endpoints, and the challenge a login answers with for an enrolled account.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::login::{open_session, refuse_cross_site};
use crate::audit::{self, Actor};
use crate::auth::attempts::{Factor, Failure, SecretCheck, Subject};
use crate::auth::mfa::{CHALLENGE_TTL_SECS, CodeError, Purpose, otpauth_uri, qr_svg_data_url};
use crate::auth::tokens::Delivery;
use crate::caller::Authenticated;
use crate::db::WriteTx;
use crate::http::client::RequestMeta;
use crate::http::ratelimit::Decision;
use crate::http::{ApiError, Json};
use crate::sessions::{self, Scope};
use crate::state::AppState;
use crate::users::{self, User};

/// The MFA routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/mfa/totp/setup", post(setup))
        .route("/api/v1/auth/mfa/totp/confirm", post(confirm))
        .route("/api/v1/auth/mfa/totp/disable", post(disable))
        .route("/api/v1/auth/mfa/verify", post(verify))
        .route("/api/v1/auth/mfa/enroll/setup", post(enroll_setup))
        .route("/api/v1/auth/mfa/enroll/confirm", post(enroll_confirm))
}

fn feature_on(state: &AppState) -> Result<(), ApiError> {
    if state.config().features.mfa_enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "mfa_disabled",
            "multi-factor authentication is not enabled on this server",
        ))
    }
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn invalid_code() -> ApiError {
    ApiError::unauthorized("invalid_code", "the code is wrong, expired or already used")
}

async fn record(
    tx: &mut WriteTx,
    action: &'static str,
    user: &User,
    success: bool,
    origin: &RequestMeta,
    details: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    audit::Event::new(action, &Actor::User(user.id.clone()), origin)
        .in_tenant(&user.tenant_id)
        .on("user", &user.id)
        .succeeded(success)
        .details(details)
        .record(tx)
        .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    password: String,
}

/// Enrollment by a signed-in user, who proves the password again: a stolen session alone
/// must not bind the thief's authenticator to the account.
async fn setup(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(request): Json<SetupRequest>,
) -> Result<Response, ApiError> {
    feature_on(&state)?;
    let user = caller.info.user.clone();
    if !password_right(
        &state,
        &caller,
        request.password,
        "mfa.setup_failed",
        &origin,
    )
    .await?
    {
        return Err(ApiError::unauthorized(
            "invalid_credentials",
            "the password is wrong",
        ));
    }
    let mut conn = state.db().pool().acquire().await?;
    if state.mfa().enabled(&mut conn, &user.id).await? {
        return Err(already_enabled());
    }
    drop(conn);
    begin_enrollment(&state, &user, &origin).await
}

fn already_enabled() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "mfa_already_enabled",
        "disable the current second factor first",
    )
}

async fn begin_enrollment(
    state: &AppState,
    user: &User,
    origin: &RequestMeta,
) -> Result<Response, ApiError> {
    let Some(secret) = state.mfa().begin(state.db(), &user.id).await? else {
        return Err(already_enabled());
    };
    let uri = otpauth_uri("Tessera", user.email.as_str(), &secret);
    let mut tx = state.db().begin_write().await?;
    record(&mut tx, "mfa.setup_started", user, true, origin, None).await?;
    tx.commit().await?;
    Ok(no_store(
        Json(json!({
            "secret": crate::auth::mfa::totp::base32(&secret),
            "otpauth_uri": uri,
            "qr_svg": qr_svg_data_url(&uri),
        }))
        .into_response(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    code: String,
}

async fn confirm(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(request): Json<CodeRequest>,
) -> Result<Response, ApiError> {
    feature_on(&state)?;
    let user = caller.info.user.clone();
    let keep = caller.session_id().to_owned();
    finish_enrollment(&state, &user, &request.code, &origin, Some(&keep)).await
}

/// Turns the second factor on; every session but `keep` ends (they were opened with the
/// password alone).
async fn finish_enrollment(
    state: &AppState,
    user: &User,
    code: &str,
    origin: &RequestMeta,
    keep: Option<&str>,
) -> Result<Response, ApiError> {
    let mut tx = state.db().begin_write().await?;
    let accepted = state
        .mfa()
        .accept_code(&mut tx, &user.id, code, true)
        .await?;
    if accepted == Err(CodeError::Rejected) {
        record(&mut tx, "mfa.confirm_failed", user, false, origin, None).await?;
        tx.commit().await?;
        return Err(invalid_code());
    }
    let codes = state.mfa().new_recovery_codes(&mut tx, &user.id).await?;
    record(&mut tx, "mfa.enabled", user, true, origin, None).await?;
    let scope = match keep {
        Some(keep) => Scope::AllOfExcept(&user.id, keep),
        None => Scope::AllOf(&user.id),
    };
    let revoked = sessions::revoke(
        &mut tx,
        scope,
        "mfa_enabled",
        &Actor::User(user.id.clone()),
        origin,
    )
    .await?;
    tx.commit().await?;
    revoked.apply(state.sessions());
    Ok(no_store(
        Json(json!({ "enabled": true, "recovery_codes": codes })).into_response(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableRequest {
    password: String,
    code: String,
}

async fn disable(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(request): Json<DisableRequest>,
) -> Result<StatusCode, ApiError> {
    feature_on(&state)?;
    let user = caller.info.user.clone();
    let refused =
        || ApiError::unauthorized("invalid_credentials", "the password or the code is wrong");
    if !password_right(
        &state,
        &caller,
        request.password,
        "mfa.disable_failed",
        &origin,
    )
    .await?
    {
        return Err(refused());
    }
    let check = SecretCheck::begin(&state, Factor::Code, Subject::Account(&user)).await?;
    let mut tx = state.db().begin_write().await?;
    let code_ok = state
        .mfa()
        .accept_code(&mut tx, &user.id, &request.code, false)
        .await?
        .is_ok();
    if !code_ok {
        drop(tx);
        check
            .failed(Failure {
                action: "mfa.disable_failed",
                actor: &caller.actor(),
                reason: Some("wrong_code"),
                origin: &origin,
                details: None,
            })
            .await?;
        return Err(refused());
    }
    check.passed().await;
    state.mfa().remove(&mut tx, &user.id).await?;
    record(&mut tx, "mfa.disabled", &user, true, &origin, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `password` is the caller's, checked under the account's lockout; a wrong one is
/// counted and audited as `action`.
async fn password_right(
    state: &AppState,
    caller: &Authenticated,
    password: String,
    action: &'static str,
    origin: &RequestMeta,
) -> Result<bool, ApiError> {
    let user = &caller.info.user;
    let check = SecretCheck::begin(state, Factor::Password, Subject::Account(user)).await?;
    let stored = users::password_hash(state.db(), &user.id).await?;
    if state.passwords().verify(password, stored).await?.ok {
        check.passed().await;
        return Ok(true);
    }
    check
        .failed(Failure {
            action,
            actor: &caller.actor(),
            reason: Some("wrong_password"),
            origin,
            details: None,
        })
        .await?;
    Ok(false)
}

/// A login's answer for an enrolled account, or one the tenant requires to enroll: no
/// session yet, a challenge instead.
pub(crate) async fn challenge(
    state: &AppState,
    mut tx: WriteTx,
    user: &User,
    delivery: Delivery,
    origin: &RequestMeta,
    purpose: Purpose,
) -> Result<Response, ApiError> {
    let kind = match delivery {
        Delivery::Body => "body",
        Delivery::Cookie => "cookie",
    };
    let token = state
        .mfa()
        .challenge(&mut tx, &user.id, kind, purpose)
        .await?;
    let (action, flag) = match purpose {
        Purpose::Verify => ("login.mfa_required", "mfa_required"),
        Purpose::Enroll => ("login.mfa_enrollment_required", "mfa_enrollment_required"),
    };
    record(&mut tx, action, user, true, origin, None).await?;
    tx.commit().await?;
    Ok(no_store(
        Json(json!({
            flag: true,
            "mfa_token": token,
            "expires_in": CHALLENGE_TTL_SECS,
        }))
        .into_response(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    mfa_token: String,
    code: Option<String>,
}

/// The account an enrollment challenge belongs to (counting an attempt on it).
async fn enrolling(state: &AppState, token: &str) -> Result<User, ApiError> {
    let challenge = state
        .mfa()
        .count_attempt(state.db(), token, Purpose::Enroll)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_mfa_token",
                "the login expired or used up its attempts; log in again",
            )
        })?;
    let user = users::find_for_login_by_id(state.db(), &challenge.user_id).await?;
    if !user.active {
        return Err(ApiError::forbidden(
            "account_disabled",
            "this account is disabled",
        ));
    }
    Ok(user)
}

/// Enrollment a tenant requires, during the login that found it missing: the secret, as
/// `setup` gives it to a signed-in user.
async fn enroll_setup(
    State(state): State<AppState>,
    origin: RequestMeta,
    Json(request): Json<EnrollRequest>,
) -> Result<Response, ApiError> {
    feature_on(&state)?;
    let user = enrolling(&state, &request.mfa_token).await?;
    begin_enrollment(&state, &user, &origin).await
}

/// Confirms that enrollment with a code: the second factor is on, the recovery codes are
/// shown, and the login starts again (password, then a code).
async fn enroll_confirm(
    State(state): State<AppState>,
    origin: RequestMeta,
    Json(request): Json<EnrollRequest>,
) -> Result<Response, ApiError> {
    feature_on(&state)?;
    let code = request.code.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "`code` is required",
        )
    })?;
    let user = enrolling(&state, &request.mfa_token).await?;
    let response = finish_enrollment(&state, &user, &code, &origin, None).await?;
    let mut conn = state.db().pool().acquire().await?;
    state.mfa().finish(&mut conn, &request.mfa_token).await?;
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    mfa_token: String,
    code: Option<String>,
    recovery_code: Option<String>,
}

/// Completes a login. Limited per challenge (5 attempts in its 5 minutes): once the
/// challenge is known every answer carries the rate-limit headers.
async fn verify(
    State(state): State<AppState>,
    origin: RequestMeta,
    headers: HeaderMap,
    Json(request): Json<VerifyRequest>,
) -> Response {
    let mut decision = None;
    let mut response = complete(&state, origin, &headers, request, &mut decision)
        .await
        .into_response();
    if let Some(decision) = decision {
        decision.apply(response.headers_mut());
    }
    response
}

/// The second factor a verification presents.
enum Presented<'a> {
    Code(&'a str),
    RecoveryCode(&'a str),
}

impl VerifyRequest {
    fn presented(&self) -> Result<Presented<'_>, ApiError> {
        match (&self.code, &self.recovery_code) {
            (Some(code), None) => Ok(Presented::Code(code)),
            (None, Some(code)) => Ok(Presented::RecoveryCode(code)),
            _ => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "send either `code` or `recovery_code`",
            )),
        }
    }
}

fn expired() -> ApiError {
    ApiError::unauthorized(
        "invalid_mfa_token",
        "the login expired or used up its attempts; log in again",
    )
}

/// Checks the challenge and the code, then opens the session the password started.
async fn complete(
    state: &AppState,
    origin: RequestMeta,
    headers: &HeaderMap,
    request: VerifyRequest,
    decision: &mut Option<Decision>,
) -> Result<Response, ApiError> {
    feature_on(state)?;
    let presented = request.presented()?;
    let (user, delivery) = challenged(state, headers, &request.mfa_token, decision).await?;
    // Codes are counted per account across challenges, like passwords: logging in again for
    // a fresh challenge does not buy more guesses.
    let check = SecretCheck::begin(state, Factor::Code, Subject::Account(&user)).await?;
    let mut tx = state.db().begin_write().await?;
    // Claimed first, so a challenge completes one login however many codes race on it.
    if !state.mfa().finish(&mut tx, &request.mfa_token).await? {
        return Err(expired());
    }
    let (accepted, method) = match presented {
        Presented::Code(code) => (
            state
                .mfa()
                .accept_code(&mut tx, &user.id, code, false)
                .await?
                .is_ok(),
            "totp",
        ),
        Presented::RecoveryCode(code) => (
            state
                .mfa()
                .use_recovery_code(&mut tx, &user.id, code)
                .await?,
            "recovery_code",
        ),
    };
    let details = Some(json!({ "method": method }));
    if !accepted {
        // The challenge stays for its remaining attempts.
        drop(tx);
        check
            .failed(Failure {
                action: "login.mfa_failed",
                actor: &Actor::User(user.id.clone()),
                reason: Some("wrong_code"),
                origin: &origin,
                details,
            })
            .await?;
        return Err(invalid_code());
    }
    check.passed().await;
    if !user.active {
        drop(tx);
        let mut tx = state.db().begin_write().await?;
        record(&mut tx, "login.mfa_failed", &user, false, &origin, details).await?;
        tx.commit().await?;
        return Err(invalid_code());
    }
    open_session(
        state,
        tx,
        &user,
        &["pwd", "otp"],
        delivery,
        &origin,
        details,
    )
    .await
}

/// Counts the attempt on the challenge `mfa_token` (it counts whatever follows; its limit
/// goes into `decision`) and answers whose login it is and where its tokens go. The code is
/// checked later in a transaction of its own, once the account's check has its place (never
/// waiting for one while holding the write lock).
async fn challenged(
    state: &AppState,
    headers: &HeaderMap,
    mfa_token: &str,
    decision: &mut Option<Decision>,
) -> Result<(User, Delivery), ApiError> {
    let challenge = state
        .mfa()
        .count_attempt(state.db(), mfa_token, Purpose::Verify)
        .await?
        .ok_or_else(expired)?;
    *decision = Some(Decision {
        allowed: true,
        limit: u32::try_from(crate::auth::mfa::CHALLENGE_ATTEMPTS).unwrap_or(0),
        remaining: u32::try_from(challenge.attempts_left).unwrap_or(0),
        reset: challenge.expires_at,
        retry_after: 0,
    });
    let delivery = if challenge.delivery == "cookie" {
        // Like a cookie login: a foreign page must not complete one.
        refuse_cross_site(state, headers, Delivery::Cookie)?;
        Delivery::Cookie
    } else {
        Delivery::Body
    };
    let user = users::find_for_login_by_id(state.db(), &challenge.user_id).await?;
    Ok((user, delivery))
}
