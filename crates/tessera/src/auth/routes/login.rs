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

use crate::audit::{self, Actor};
use crate::auth::attempts::{Factor, Failure, SecretCheck, Subject};
use crate::auth::mfa;
use crate::auth::tokens::{self, Delivery};
use crate::config::Registration;
use crate::db::{Db, WriteTx};
use crate::http::client::RequestMeta;
use crate::http::error::db_error;
use crate::http::ratelimit::{Decision, ip_subject, limited};
use crate::http::{ApiError, Json};
use crate::passwords::MAX_PASSWORD_BYTES;
use crate::sessions::NewSession;
use crate::state::AppState;
use crate::tenants::{self, DEFAULT_TENANT_ID};
use crate::users::{self, Email, NewUser, User, UserError};

/// Longest login name or email considered; longer input cannot name an account.
const MAX_LOGIN_BYTES: usize = 320;

/// The login request. The account is named by exactly one of `login`, `username` or `email`
/// (the names platforms' clients already send); each accepts an email or a username, so the
/// field chosen never changes the answer.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email or username.
    login: Option<String>,
    /// The same, under the name OAuth-style password forms use.
    username: Option<String>,
    /// The same, under the name email-first forms use.
    email: Option<String>,
    password: String,
    /// Tenant slug; the default tenant when absent.
    tenant: Option<String>,
    #[serde(default)]
    delivery: Delivery,
}

impl LoginRequest {
    /// The account name, from whichever of the three fields was sent, once the name and the
    /// password are within the lengths that can name an account or verify.
    fn checked_login(&self) -> Result<&str, ApiError> {
        let login = match (&self.login, &self.username, &self.email) {
            (Some(name), None, None) | (None, Some(name), None) | (None, None, Some(name)) => name,
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "name the account with exactly one of `login`, `username` or `email`",
                ));
            }
        };
        if self.password.len() > MAX_PASSWORD_BYTES {
            return Err(crate::passwords::PasswordError::TooLong.into());
        }
        if login.len() > MAX_LOGIN_BYTES {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("`login` has at most {MAX_LOGIN_BYTES} bytes"),
            ));
        }
        Ok(login)
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "the login or the password is wrong")
}

/// Logs in with a password and opens a session. Limited per client IP, and per client IP and
/// account (the resolved account, so its email and its username share one allowance); every
/// answer carries the rate-limit headers.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    security(()),
    responses(
        (status = 200, description = "Tokens in the body, or session cookies with `delivery: \"cookie\"`, or `mfa_required` with an MFA token", body = Object),
        (status = 401, description = "The login or the password is wrong (`invalid_credentials`)"),
        (status = 403, description = "The account is disabled (`account_disabled`)"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    origin: RequestMeta,
    headers: HeaderMap,
    Json(request): Json<LoginRequest>,
) -> Response {
    let ip = ip_subject(origin.ip.as_deref());
    let mut decision: Option<Decision> = None;
    if let Some(policy) = state.limiter().policies().login_per_ip {
        decision = Some(
            state
                .limiter()
                .check(policy, &format!("login_ip:{ip}"))
                .await,
        );
    }
    let mut response = match decision {
        Some(d) if !d.allowed => d.refusal().into_response(),
        _ => attempt_login(&state, origin, headers, request, &ip, &mut decision)
            .await
            .into_response(),
    };
    if let Some(decision) = decision {
        decision.apply(response.headers_mut());
    }
    response
}

/// A login name as counted by limits and lockout: lowercased, cut to what can name an
/// account.
fn account_name(login: &str) -> String {
    let mut end = login.len().min(MAX_LOGIN_BYTES);
    while !login.is_char_boundary(end) {
        end -= 1;
    }
    login[..end].trim().to_lowercase()
}

/// A tenant as typed, as limits count it: the default tenant however it is named, slugs
/// lowercased and cut to a slug's length.
fn tenant_name(slug: Option<&str>) -> String {
    match slug.map(str::trim) {
        None | Some("") => "default".to_owned(),
        Some(slug) => slug.chars().take(64).collect::<String>().to_lowercase(),
    }
}

/// A login past the per-IP limit: checks the request, finds the account, applies the
/// per-account limit, verifies the password, then opens the session or the second-factor
/// step.
async fn attempt_login(
    state: &AppState,
    origin: RequestMeta,
    headers: HeaderMap,
    request: LoginRequest,
    ip: &str,
    decision: &mut Option<Decision>,
) -> Result<Response, ApiError> {
    let login = request.checked_login()?.to_owned();
    refuse_cross_site(state, &headers, request.delivery)?;
    let found = Found::look_up(state.db(), request.tenant.as_deref(), &login).await?;
    limit_per_account(state, ip, &found, decision).await?;
    let (user, hash, upgraded) = verify_password(state, found, request.password, &origin).await?;
    let tx = admit(state, &user, &hash, upgraded.as_deref(), &origin).await?;
    let details = upgraded
        .is_some()
        .then(|| serde_json::json!({ "password_hash_upgraded": true }));
    finish(state, tx, &user, request.delivery, &origin, details).await
}

/// Login CSRF: a foreign page must not sign a browser into the attacker's account. A browser
/// always names the Origin of a cross-site POST; API clients may send none.
pub(super) fn refuse_cross_site(
    state: &AppState,
    headers: &HeaderMap,
    delivery: Delivery,
) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        Some(origin)
            if delivery == Delivery::Cookie
                && !origin.to_str().is_ok_and(|o| state.auth().csrf.allows(o)) =>
        {
            Err(ApiError::forbidden(
                "csrf_failed",
                "the request comes from an origin that is not allowed",
            ))
        }
        _ => Ok(()),
    }
}

/// What a login name reaches, looked up the same way whether or not anything exists.
struct Found {
    /// The tenant, when the slug names one.
    tenant_id: Option<String>,
    /// The account and its password hash, when the name reaches one.
    account: Option<(User, Option<String>)>,
    /// The tenant and name that limits and lockout count when no account was reached, so an
    /// unknown name answers like a known one.
    unknown: String,
}

impl Found {
    async fn look_up(db: &Db, tenant: Option<&str>, login: &str) -> Result<Self, ApiError> {
        let tenant_id = match tenant {
            None => Some(DEFAULT_TENANT_ID.to_owned()),
            Some(slug) if slug.len() <= 64 => tenants::tenant_id(db, slug).await?,
            Some(_) => None,
        };
        let account = match &tenant_id {
            Some(tenant_id) => users::find_for_login(db, tenant_id, login).await?,
            None => None,
        };
        let unknown = format!(
            "{}|{}",
            tenant_id
                .clone()
                .unwrap_or_else(|| format!("unknown:{}", tenant_name(tenant))),
            account_name(login)
        );
        Ok(Self {
            tenant_id,
            account,
            unknown,
        })
    }

    /// Whom lockout counts: the account, whatever name reached it, or the name.
    fn subject(&self) -> Subject<'_> {
        match &self.account {
            Some((user, _)) => Subject::Account(user),
            None => Subject::Unknown {
                tenant_id: self.tenant_id.as_deref(),
                name: &self.unknown,
            },
        }
    }

    /// Whom the per-account limit counts, the same way.
    fn counted(&self) -> String {
        match &self.account {
            Some((user, _)) => format!("acct:{}", user.id),
            None => format!("name:{}", self.unknown),
        }
    }
}

/// The per-IP-and-account limit; the stricter of both decisions goes on the answer.
async fn limit_per_account(
    state: &AppState,
    ip: &str,
    found: &Found,
    decision: &mut Option<Decision>,
) -> Result<(), ApiError> {
    let Some(policy) = state.limiter().policies().login_per_ip_account else {
        return Ok(());
    };
    let per_account = state
        .limiter()
        .check(policy, &format!("login_account:{ip}|{}", found.counted()))
        .await;
    let stricter = decision.map_or(per_account, |d| d.stricter(per_account));
    *decision = Some(stricter);
    if stricter.allowed {
        Ok(())
    } else {
        Err(stricter.refusal())
    }
}

/// Verifies the password at the same cost whatever `found` holds (a dummy hash stands in for
/// a missing one) and counts a failure towards lockout. Answers the user, the hash that
/// verified and its replacement when it should be upgraded.
async fn verify_password(
    state: &AppState,
    found: Found,
    password: String,
    origin: &RequestMeta,
) -> Result<(User, String, Option<String>), ApiError> {
    let check = SecretCheck::begin(state, Factor::Password, found.subject()).await?;
    let stored = found.account.as_ref().and_then(|(_, hash)| hash.clone());
    let verified = state.passwords().verify(password, stored).await?;
    match found.account {
        Some((user, Some(hash))) if verified.ok => {
            // The password was right: whatever follows, the guessing stops counting.
            check.passed().await;
            Ok((user, hash, verified.upgraded))
        }
        account => {
            let reason = match (&found.tenant_id, &account) {
                (None, _) => "unknown_tenant",
                (Some(_), None) => "unknown_account",
                (Some(_), Some(_)) => "wrong_password",
            };
            check
                .failed(Failure {
                    action: "login.failed",
                    actor: &Actor::Anonymous,
                    reason: Some(reason),
                    origin,
                    details: None,
                })
                .await?;
            Err(invalid_credentials())
        }
    }
}

/// After a right password: refuses a disabled account, then records the login (and the
/// upgraded hash) in the transaction the session will be opened in, unless the password was
/// reset or the account disabled while it was verifying.
async fn admit(
    state: &AppState,
    user: &User,
    verified_hash: &str,
    upgraded: Option<&str>,
    origin: &RequestMeta,
) -> Result<WriteTx, ApiError> {
    let refused = |reason| login_failed(state, Some(&user.tenant_id), Some(user), reason, origin);
    if !user.active {
        refused("account_disabled").await?;
        return Err(ApiError::forbidden(
            "account_disabled",
            "this account is disabled",
        ));
    }
    let mut tx = state.db().begin_write().await?;
    if users::record_login(&mut tx, &user.id, verified_hash, upgraded, unix_now()).await? {
        return Ok(tx);
    }
    drop(tx);
    refused("changed_meanwhile").await?;
    Err(invalid_credentials())
}

/// Opens the session, or the second-factor step when the user has a second factor or the
/// tenant requires one.
async fn finish(
    state: &AppState,
    mut tx: WriteTx,
    user: &User,
    delivery: Delivery,
    origin: &RequestMeta,
    details: Option<serde_json::Value>,
) -> Result<Response, ApiError> {
    if state.config().features.mfa_enabled {
        let purpose = if state.mfa().enabled(&mut tx, &user.id).await? {
            Some(mfa::Purpose::Verify)
        } else {
            mfa::required_for(&mut tx, &user.tenant_id, &user.id)
                .await?
                .then_some(mfa::Purpose::Enroll)
        };
        if let Some(purpose) = purpose {
            return super::mfa::challenge(state, tx, user, delivery, origin, purpose).await;
        }
    }
    open_session(state, tx, user, &["pwd"], delivery, origin, details).await
}

/// Completes a login on `tx` (which already checked everything): opens the session with
/// `amr`, audits it, commits, and delivers the tokens.
pub(crate) async fn open_session(
    state: &AppState,
    mut tx: WriteTx,
    user: &User,
    amr: &[&str],
    delivery: Delivery,
    origin: &RequestMeta,
    details: Option<serde_json::Value>,
) -> Result<Response, ApiError> {
    let (session, refresh) = state
        .sessions()
        .create(
            &mut tx,
            &NewSession {
                user_id: &user.id,
                tenant_id: &user.tenant_id,
                amr,
                origin,
            },
        )
        .await?;
    audit::Event::new("login.succeeded", &Actor::User(user.id.clone()), origin)
        .in_tenant(&user.tenant_id)
        .on("session", &session.id)
        .details(details)
        .record(&mut tx)
        .await?;
    tx.commit().await?;

    let roles = users::roles(state.db(), &user.id).await?;
    tokens::deliver(state, delivery, &session, &refresh, roles, Some(user)).await
}

/// Audits a login refused after a right password (no failure to count).
async fn login_failed(
    state: &AppState,
    tenant_id: Option<&str>,
    user: Option<&User>,
    reason: &str,
    origin: &RequestMeta,
) -> Result<(), ApiError> {
    let mut tx = state.db().begin_write().await?;
    audit::Event::new("login.failed", &Actor::Anonymous, origin)
        .tenant(tenant_id)
        .target(user.map(|u| ("user", u.id.as_str())))
        .failed(reason)
        .record(&mut tx)
        .await?;
    Ok(tx.commit().await?)
}

/// The self-service registration request.
#[derive(Deserialize, utoipa::ToSchema)]
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

/// Creates an account when `auth.registration = "open"`; limited per client IP.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    request_body = RegisterRequest,
    security(()),
    responses(
        (status = 201, description = "The new account", body = Object),
        (status = 403, description = "Registration is closed (`registration_closed`)"),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    origin: RequestMeta,
    Json(request): Json<RegisterRequest>,
) -> Response {
    let decision = match state.limiter().policies().register_per_ip {
        Some(policy) => {
            let ip = ip_subject(origin.ip.as_deref());
            Some(
                state
                    .limiter()
                    .check(policy, &format!("register_ip:{ip}"))
                    .await,
            )
        }
        None => None,
    };
    limited(decision, create_account(state, origin, request)).await
}

async fn create_account(
    state: AppState,
    origin: RequestMeta,
    request: RegisterRequest,
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
    if request.tenant.as_ref().is_some_and(|t| t.len() > 64) {
        return Err(invalid(
            "unknown_tenant",
            "no tenant with this slug accepts registrations",
        ));
    }
    let db = state.db();
    // A disabled tenant and the `system` tenant answer exactly like a missing one.
    let tenant_id = tenants::registrable_tenant(db, request.tenant.as_deref())
        .await?
        .ok_or_else(|| {
            invalid(
                "unknown_tenant",
                "no tenant with this slug accepts registrations",
            )
        })?;
    // Hashed before the account's existence is known, so a taken address costs the same.
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
    let mut tx = db.begin_write().await?;
    match users::create(&mut tx, &new, &Actor::Anonymous, &origin).await {
        Ok(_) => tx.commit().await?,
        Err(UserError::Conflict) => {
            drop(tx);
            record_taken(db, &new.tenant_id, &origin).await?;
        }
        Err(e) => return Err(db_error(e)),
    }
    Ok(registration_accepted())
}

/// The one answer to a valid registration, whether it created an account or the email or
/// username was taken: telling them apart would let anyone test which addresses have
/// accounts. The person registering signs in next; a taken address's owner is unaffected.
fn registration_accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "status": "accepted",
            "detail": "if this email and username were free, the account exists now: sign in with them",
        })),
    )
        .into_response()
}

/// Audits a registration that named a taken email or username (administrators see attempts
/// to probe or squat on accounts; the caller does not).
async fn record_taken(db: &Db, tenant_id: &str, origin: &RequestMeta) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    audit::Event::new("user.registration_refused", &Actor::Anonymous, origin)
        .in_tenant(tenant_id)
        .failed("account_exists")
        .record(&mut tx)
        .await?;
    Ok(tx.commit().await?)
}
