//! Single-use tickets: how a browser opens a real-time connection when it can send neither a
//! header nor a cookie (a WebSocket to another origin), and how a service hosting its own
//! socket learns who a browser is.
//!
//! `POST /api/v1/realtime/ticket` (any live session; by cookie with the CSRF header) mints a
//! ticket valid [`TICKET_TTL_SECS`] seconds, bound to the caller's session, for one connection
//! attempt. Without `audience` it opens Tessera's own hub (`?ticket=`); with a service's client
//! id as `audience`, only that service can redeem it, with
//! `POST /api/v1/realtime/ticket/redeem` and its client credentials. Either way a ticket is
//! taken out of the database when presented, whoever presents it: a ticket shown to the wrong
//! party is spent. Only its SHA-256 is stored.

use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tessera_token::unix_now;

use super::handshake::live_session;
use super::store;
use crate::caller::Authenticated;
use crate::caller::cache::SessionInfo;
use crate::digest::sha256_hex;
use crate::http::ApiError;
use crate::http::error::db_error;
use crate::http::openapi::ApiRouter;
use crate::oauth::client_auth::{self, no_store};
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;
use utoipa_axum::routes;

/// How long a ticket is valid.
pub const TICKET_TTL_SECS: i64 = 30;

/// Most unspent tickets one session may hold: one per connection attempt, and a page
/// reconnects one socket at a time.
pub const MAX_OUTSTANDING: i64 = 32;

/// Prefix that makes a ticket recognisable in a leak report.
const PREFIX: &str = "rtk_";

/// The ticket routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(mint))
        .routes(routes!(redeem))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    /// The client id of the service that will redeem it; absent for Tessera's hub.
    audience: Option<String>,
}

#[derive(Serialize)]
struct Minted {
    ticket: String,
    expires_in: i64,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
}

fn json_body<T: Default + for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body does not match: {e}"),
        )
    })
}

fn new_ticket() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal("the system random generator failed"))?;
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Checks that `audience` is a usable service of the caller's tenant (or a platform one).
async fn check_audience(
    state: &AppState,
    caller: &Authenticated,
    audience: &str,
) -> Result<(), ApiError> {
    let client = if audience.len() <= 128 {
        state
            .clients()
            .get(state.db(), audience)
            .await
            .map_err(db_error)?
    } else {
        None
    };
    match client {
        Some(c)
            if c.usable()
                && (c.client.tenant_id == caller.tenant_id()
                    || c.client.tenant_id == SYSTEM_TENANT_ID) =>
        {
            Ok(())
        }
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_audience",
            "`audience` must be the client id of an active service of your tenant",
        )),
    }
}

/// `POST /api/v1/realtime/ticket`.
#[utoipa::path(
    post,
    path = "/api/v1/realtime/ticket",
    tag = "realtime",
    request_body = Object,
    responses((status = 201, description = "A single-use ticket", body = Object))
)]
async fn mint(
    State(state): State<AppState>,
    caller: Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: MintRequest = json_body(&body)?;
    if let Some(audience) = &request.audience {
        check_audience(&state, &caller, audience).await?;
    }
    let outstanding = store::outstanding_tickets(state.db(), caller.session_id())
        .await
        .map_err(db_error)?;
    if outstanding >= MAX_OUTSTANDING {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_tickets",
            format!("a session may hold {MAX_OUTSTANDING} unspent tickets"),
        )
        .retry_after(u64::try_from(TICKET_TTL_SECS).unwrap_or(30)));
    }
    let ticket = new_ticket()?;
    let expires_at = unix_now() + TICKET_TTL_SECS;
    store::insert_ticket(
        state.db(),
        &sha256_hex(ticket.as_bytes()),
        caller.session_id(),
        request.audience.as_deref(),
        expires_at,
    )
    .await
    .map_err(db_error)?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(Minted {
            ticket,
            expires_in: TICKET_TTL_SECS,
            expires_at,
            audience: request.audience,
        }),
    )
        .into_response();
    no_store(response.headers_mut());
    Ok(response)
}

fn invalid_ticket(status: StatusCode) -> ApiError {
    ApiError::new(
        status,
        "invalid_ticket",
        "the ticket is unknown, already used, expired, or meant for someone else",
    )
}

/// Takes `ticket` for `audience` (`None`: Tessera's hub) and returns its live session.
/// `status` is what a refused ticket answers.
async fn take(
    state: &AppState,
    ticket: &str,
    audience: Option<&str>,
    status: StatusCode,
) -> Result<Arc<SessionInfo>, ApiError> {
    if !ticket.starts_with(PREFIX) || ticket.len() > 128 {
        return Err(invalid_ticket(status));
    }
    let taken = store::take_ticket(state.db(), &sha256_hex(ticket.as_bytes()))
        .await
        .map_err(db_error)?;
    match taken {
        Some(t) if t.audience.as_deref() == audience => live_session(state, &t.session_id).await,
        _ => Err(invalid_ticket(status)),
    }
}

/// Redeems a ticket presented in a hub handshake: 401 when it cannot open a connection.
pub async fn redeem_for_hub(state: &AppState, ticket: &str) -> Result<Arc<SessionInfo>, ApiError> {
    take(state, ticket, None, StatusCode::UNAUTHORIZED).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemRequest {
    ticket: String,
}

/// Who the browser holding the ticket is, as a service learns it.
#[derive(Serialize)]
struct Redeemed {
    /// The user.
    sub: String,
    /// The session: watch the revocation feed for it, and close the socket when it ends.
    sid: String,
    /// The tenant.
    tid: String,
    /// The user's current roles.
    roles: Vec<String>,
    amr: Vec<String>,
    auth_time: i64,
    /// When the session ends unless refreshed (Unix seconds).
    session_expires_at: i64,
}

/// `POST /api/v1/realtime/ticket/redeem`: a service (`client_secret_basic`) redeems a ticket
/// minted for it.
#[utoipa::path(
    post,
    path = "/api/v1/realtime/ticket/redeem",
    tag = "realtime",
    request_body = Object,
    security(("client_basic" = [])),
    responses((status = 200, description = "The ticket's session", body = Object))
)]
async fn redeem(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = client_auth::authenticate_basic(&state, &headers).await?;
    let request: RedeemRequest = json_body(&body)?;
    let info = take(
        &state,
        &request.ticket,
        Some(&client.id),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
    .map_err(|e| {
        if e.status() == StatusCode::UNAUTHORIZED {
            invalid_ticket(StatusCode::UNPROCESSABLE_ENTITY)
        } else {
            e
        }
    })?;
    let roles = state
        .rbac()
        .roles_of(state.db(), &info.session.user_id)
        .await
        .map_err(ApiError::internal)?;
    let session = &info.session;
    let mut response = axum::Json(Redeemed {
        sub: session.user_id.clone(),
        sid: session.id.clone(),
        tid: session.tenant_id.clone(),
        roles: roles.to_vec(),
        amr: session.amr.clone(),
        auth_time: session.auth_time,
        session_expires_at: session.expires_at(),
    })
    .into_response();
    no_store(response.headers_mut());
    Ok(response)
}
