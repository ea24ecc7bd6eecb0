//! `POST /api/v1/realtime/publish` (services with `events:publish`, or users holding it) and
//! `GET /api/v1/realtime/history` (the polling fallback: a channel's recent events after an
//! id, for anyone who may subscribe to it).

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_token::{Credential, extract_token};

use super::access::{self, Publisher};
use super::channel::ChannelName;
use super::event::Envelope;
use super::handshake::owner_of;
use super::{PublishError, Published};
use crate::caller::Authenticated;
use crate::caller::SESSION_CLIENT_ID;
use crate::http::error::db_error;
use crate::http::openapi::ApiRouter;
use crate::http::{ApiError, Json};
use crate::revocations::parse_cursor;
use crate::state::AppState;
use utoipa_axum::routes;

/// The publish and history routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(publish))
        .routes(routes!(history))
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    /// A service's client-credentials token, or a user's session (by Bearer or cookie, the
    /// cookie with its CSRF proof).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = extract_token(parts, &state.auth().extraction)
            .map_err(|e| ApiError::unauthorized("invalid_token", e.to_string()))?;
        let is_session_token = |token: &str| {
            state
                .keys()
                .current()
                .verify(token)
                .is_ok_and(|claims| claims.client_id == SESSION_CLIENT_ID)
        };
        match credential {
            Some(Credential::Bearer(token)) if !is_session_token(&token) => {
                Self::service(state, &token).await
            }
            Some(Credential::Bearer(_) | Credential::Cookie(_)) => {
                let caller = Authenticated::from_request_parts(parts, state).await?;
                Self::user(state, &caller).await
            }
            _ => Err(ApiError::unauthorized(
                "unauthenticated",
                "publishing needs a service token or a session (Authorization: Bearer)",
            )),
        }
    }
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    channel: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

fn publish_error(error: PublishError) -> ApiError {
    match error {
        PublishError::Invalid(message) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", message)
        }
        PublishError::KeyReused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        ),
        PublishError::Database(e) => db_error(e),
    }
}

/// `POST /api/v1/realtime/publish`: `{channel, type, data}` → 201 with the event's envelope.
/// A retry with the same `Idempotency-Key` replays the answer instead of publishing twice
/// (the idempotency layer in front of every route).
#[utoipa::path(
    post,
    path = "/api/v1/realtime/publish",
    tag = "realtime",
    request_body = PublishRequest,
    responses((status = 201, description = "The published event", body = Object))
)]
async fn publish(
    State(state): State<AppState>,
    publisher: Publisher,
    Json(request): Json<PublishRequest>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::parse(&request.channel).map_err(access::invalid_channel)?;
    publisher.may_publish(&state, &channel).await?;
    let Published { envelope, .. } = state
        .realtime()
        .publish_as(
            &channel,
            &request.kind,
            &request.data,
            &publisher.name,
            None,
        )
        .await
        .map_err(publish_error)?;
    Ok((StatusCode::CREATED, axum::Json(envelope)).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    channel: Option<String>,
    since: Option<String>,
}

#[derive(Serialize)]
struct History {
    channel: String,
    /// `false` when events after `since` were lost: reload the state instead.
    recovered: bool,
    events: Vec<Envelope>,
}

/// Parses an event id a client resumes after (`0`: from the start of the history). Event ids
/// are cursors of the event log, read by the revocation feed's rule.
pub fn parse_since(text: Option<&str>, name: &str) -> Result<i64, ApiError> {
    match text {
        None | Some("") => Ok(0),
        Some(text) => parse_cursor(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_since",
                format!("`{name}` must be an event id"),
            )
        }),
    }
}

/// `GET /api/v1/realtime/history?channel=&since=`.
#[utoipa::path(
    get,
    path = "/api/v1/realtime/history",
    tag = "realtime",
    params(
        ("channel" = String, Query, description = "`user:<id>`, `session:<id>`, `tenant:<tenant id>:<topic>`, `flags` or `status`"),
        ("since" = Option<i64>, Query, description = "The last event id seen", minimum = 0),
    ),
    responses(
        (status = 200, description = "A channel's events after `since`", body = Object),
        (status = 422, description = "Not a channel (`invalid_channel`), the caller may not read it: 403 `forbidden_channel`"),
    )
)]
async fn history(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let name = query.channel.unwrap_or_default();
    let channel = ChannelName::parse(&name).map_err(access::invalid_channel)?;
    let since = parse_since(query.since.as_deref(), "since")?;
    access::may_subscribe(&state, &owner_of(&caller.info), &channel).await?;
    let replay = state.realtime().hub().history(channel.as_str(), since);
    let mut response = axum::Json(History {
        channel: name,
        recovered: replay.recovered,
        events: replay.missed.iter().map(|e| e.envelope.clone()).collect(),
    })
    .into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(response)
}
