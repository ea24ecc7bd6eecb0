//! Authenticating a WebSocket or SSE handshake, before anything is upgraded or streamed: in
//! the shared extraction order (`Authorization: Bearer`, the access cookie, then a
//! single-use ticket from the query string), every failure a plain 401/403 problem answer.
//!
//! A long-lived access token in the query string (`?access_token=`) lands in proxy and
//! server logs, so it is refused unless `realtime.legacy_query_token_until` names a day not
//! yet past; each such use is logged with a warning and counted.
//!
//! A cookie-authenticated WebSocket handshake must come from an allowed `Origin` (browsers
//! always send one on WebSocket handshakes, and nothing else protects them: a page on another
//! site could otherwise open a socket with the user's cookie). SSE responses are guarded by
//! CORS like every other read.

use axum::http::StatusCode;
use axum::http::header::ORIGIN;
use axum::http::request::Parts;
use tessera_token::{Credential, ExtractionPolicy, extract_token, unix_now};

use super::channel::ChannelName;
use super::hub::{Owner, Transport};
use super::{access, metrics, routes, tickets};
use crate::caller::Authenticated;
use crate::caller::cache::{Lookup, SessionInfo};
use crate::http::ApiError;
use crate::state::AppState;

/// The query parameter old clients put their access token in.
pub const LEGACY_QUERY_PARAM: &str = "access_token";

/// The query parameter holding a ticket.
pub const TICKET_PARAM: &str = "ticket";

/// How a handshake was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`.
    Bearer,
    /// The access cookie.
    Cookie,
    /// A single-use ticket.
    Ticket,
    /// An access token in the query string, inside the legacy window.
    LegacyQuery,
}

/// The owner of the connection a handshake opens, and how it was authenticated.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Whose connection it is.
    pub owner: Owner,
    /// Which credential opened it.
    pub via: Via,
}

/// The extraction order of real-time handshakes: the shared one, with the legacy query
/// parameter recognised so it can be refused by name.
pub fn policy(state: &AppState) -> ExtractionPolicy {
    ExtractionPolicy {
        cookie_name: state.auth().extraction.cookie_name.clone(),
        ticket_param: TICKET_PARAM.to_owned(),
        legacy_query_param: Some(LEGACY_QUERY_PARAM.to_owned()),
    }
}

/// The connection's owner, from the session's cached state.
pub fn owner_of(info: &SessionInfo) -> Owner {
    Owner {
        session_id: info.session.id.clone(),
        user_id: info.session.user_id.clone(),
        tenant_id: info.session.tenant_id.clone(),
        session_expires_at: info.session.expires_at(),
    }
}

/// Authenticates the handshake in `parts`, or says why not (401/403, never after an upgrade).
pub async fn authenticate(
    state: &AppState,
    parts: &Parts,
    transport: Transport,
) -> Result<Handshake, ApiError> {
    let result = credential_owner(state, parts, transport).await;
    if let Err(e) = &result {
        metrics::handshake_refused(e.status().as_u16());
    }
    result
}

async fn credential_owner(
    state: &AppState,
    parts: &Parts,
    transport: Transport,
) -> Result<Handshake, ApiError> {
    let credential = extract_token(parts, &policy(state))
        .map_err(|e| ApiError::unauthorized("invalid_token", e.to_string()))?;
    let from_token = |caller: Authenticated, via| Handshake {
        owner: owner_of(&caller.info),
        via,
    };
    match credential {
        None => Err(ApiError::unauthorized(
            "unauthenticated",
            "a real-time connection needs an access token (Authorization: Bearer, or the \
             access cookie) or a ticket (`?ticket=`, from POST /api/v1/realtime/ticket)",
        )),
        Some(Credential::Bearer(token)) => Ok(from_token(
            Authenticated::from_token(state, &token, false).await?,
            Via::Bearer,
        )),
        Some(Credential::Cookie(token)) => {
            if transport == Transport::WebSocket {
                check_origin(state, parts)?;
            }
            Ok(from_token(
                Authenticated::from_token(state, &token, true).await?,
                Via::Cookie,
            ))
        }
        Some(Credential::LegacyQuery(token)) => {
            legacy_window_open(state)?;
            let caller = Authenticated::from_token(state, &token, false).await?;
            metrics::legacy_query_token();
            tracing::warn!(
                user_id = %caller.user_id(),
                "a real-time handshake sent its access token in the query string; move the \
                 client to tickets before realtime.legacy_query_token_until"
            );
            Ok(from_token(caller, Via::LegacyQuery))
        }
        Some(Credential::Ticket(ticket)) => {
            let info = tickets::redeem_for_hub(state, &ticket).await?;
            Ok(Handshake {
                owner: owner_of(&info),
                via: Via::Ticket,
            })
        }
    }
}

fn check_origin(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    let Some(origin) = parts.headers.get(ORIGIN) else {
        // Not a browser: nothing can ride on its cookies.
        return Ok(());
    };
    let allowed = origin.to_str().is_ok_and(|o| state.auth().csrf.allows(o));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "origin_not_allowed",
            "a cookie-authenticated WebSocket must come from an allowed origin",
        ))
    }
}

fn legacy_window_open(state: &AppState) -> Result<(), ApiError> {
    let end = state.config().realtime.legacy_query_token_end();
    match end {
        Some(end) if unix_now() < end => Ok(()),
        _ => Err(ApiError::unauthorized(
            "query_token_refused",
            "access tokens are not accepted in the query string; send Authorization: Bearer, \
             the access cookie, or a ticket from POST /api/v1/realtime/ticket",
        )),
    }
}

/// The session `session_id` if it is live now; otherwise 401 `session_ended`.
pub async fn live_session(
    state: &AppState,
    session_id: &str,
) -> Result<std::sync::Arc<SessionInfo>, ApiError> {
    let lookup = state
        .session_cache()
        .get(state.db(), session_id, unix_now())
        .await
        .map_err(ApiError::internal)?;
    match lookup {
        Lookup::Live(info) => Ok(info),
        Lookup::Ended => Err(ApiError::unauthorized(
            "session_ended",
            "the session has ended; log in again",
        )),
    }
}

/// Most `channel=` parameters one handshake may carry.
pub const MAX_QUERY_CHANNELS: usize = 32;

/// The channels a handshake asks for (repeated `channel=` parameters) and the event id it
/// resumes after (`since=`), each checked.
pub fn query_channels(parts: &Parts) -> Result<(Vec<ChannelName>, Option<i64>), ApiError> {
    let query = parts.uri.query().unwrap_or_default();
    let mut channels: Vec<ChannelName> = Vec::new();
    let mut since = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "channel" => {
                let channel = ChannelName::parse(&value).map_err(access::invalid_channel)?;
                if !channels.contains(&channel) {
                    channels.push(channel);
                }
                if channels.len() > MAX_QUERY_CHANNELS {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "too_many_channels",
                        format!("a handshake may name at most {MAX_QUERY_CHANNELS} channels"),
                    ));
                }
            }
            "since" => since = Some(routes::parse_since(Some(&value), "since")?),
            _ => {}
        }
    }
    Ok((channels, since))
}

/// Checks that `owner` may subscribe to every one of `channels` (403 naming the first that
/// it may not).
pub async fn permit_all(
    state: &AppState,
    owner: &Owner,
    channels: &[ChannelName],
) -> Result<(), ApiError> {
    for channel in channels {
        access::may_subscribe(state, owner, channel).await?;
    }
    Ok(())
}
