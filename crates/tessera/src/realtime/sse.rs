//! `GET /api/v1/realtime/sse?channel=…&channel=…`: the Server-Sent Events transport.
//!
//! Authenticated and permitted before the stream starts (a refusal is a plain 401/403
//! problem). The stream opens with `event: subscribed` (`{"channels": […], "recovered": …}`),
//! then carries each event as `id: <event id>`, `event: <event type>`, `data: <envelope>`, so
//! `EventSource.addEventListener('service.provisioning.progress', …)` works and a browser
//! reconnecting sends `Last-Event-ID` and gets what it missed, in order (or `recovered:
//! false`). A comment every 15 seconds keeps proxies from closing an idle stream.
//!
//! When the session ends the stream sends `event: auth.revoked` and ends; a slow consumer or
//! a server shutdown ends it with `event: close` (`{"code", "reason"}`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::event::Event;
use super::handshake::{self, Handshake};
use super::hub::{Close, Connection, SESSION_ENDED, Transport};
use super::routes::parse_since;
use super::{Rechecked, recheck};
use crate::http::ApiError;
use crate::http::openapi::ApiRouter;
use crate::state::AppState;
use utoipa_axum::routes;

/// How often an idle stream sends a comment.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// How long one event may wait for the response body to take it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Events rendered ahead of the response body.
const BUFFER: usize = 16;

/// The SSE route.
pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(open))
}

#[utoipa::path(
    get,
    path = "/api/v1/realtime/sse",
    tag = "realtime",
    security((), ("bearer" = []), ("session" = [])),
    params(
        ("channel" = String, Query, description = "Repeatable: `user:<id>`, `session:<id>`, `tenant:<tenant id>:<topic>`, `flags` or `status`"),
        ("since" = Option<i64>, Query, description = "The last event id seen", minimum = 0),
    ),
    responses(
        (status = 200, description = "Channel events as they happen", body = String, content_type = "text/event-stream"),
        (status = 422, description = "No channel, or not a channel (`invalid_channel`); too many (`too_many_channels`)"),
    )
)]
async fn open(State(state): State<AppState>, request: Request) -> Response {
    match prepare(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// `Last-Event-ID` (what a reconnecting `EventSource` sends) or else `since=`.
fn resume_point(parts: &Parts, since: Option<i64>) -> Result<Option<i64>, ApiError> {
    match parts.headers.get("last-event-id") {
        Some(value) => {
            parse_since(Some(value.to_str().unwrap_or("invalid")), "Last-Event-ID").map(Some)
        }
        None => Ok(since),
    }
}

async fn prepare(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, _body) = request.into_parts();
    let Handshake { owner, .. } = handshake::authenticate(state, &parts, Transport::Sse).await?;
    let (channels, since) = handshake::query_channels(&parts)?;
    if channels.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_channel",
            "name at least one channel (`?channel=…`, repeatable)",
        ));
    }
    let since = resume_point(&parts, since)?;
    handshake::permit_all(state, &owner, &channels).await?;
    let mut connection = state.realtime().hub().connect(owner, Transport::Sse);
    let mut recovered = true;
    let mut missed: Vec<Arc<Event>> = Vec::new();
    for channel in &channels {
        let replay = connection.subscribe(channel, since).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_channels",
                e.to_string(),
            )
        })?;
        recovered &= replay.recovered;
        missed.extend(replay.missed);
    }
    missed.sort_by_key(|e| e.id());
    let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
    let mut greeting = vec![
        SseEvent::default()
            .event("subscribed")
            .data(json!({"channels": names, "recovered": recovered}).to_string()),
    ];
    greeting.extend(missed.iter().map(|e| render(e)));
    let (out, body) = mpsc::channel(BUFFER);
    tokio::spawn(run(state.clone(), connection, greeting, out));
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), body))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
        .into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(response)
}

fn render(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.id().to_string())
        .event(&event.envelope.kind)
        .data(&*event.json)
}

/// The last event of a stream the hub ended.
fn farewell(close: Close) -> SseEvent {
    let name = if close == SESSION_ENDED {
        "auth.revoked"
    } else {
        "close"
    };
    SseEvent::default()
        .event(name)
        .data(json!({"code": close.code, "reason": close.reason}).to_string())
}

async fn push(out: &mpsc::Sender<SseEvent>, event: SseEvent) -> bool {
    matches!(timeout(SEND_TIMEOUT, out.send(event)).await, Ok(Ok(())))
}

/// Feeds the response body until the client leaves or the hub ends the connection.
async fn run(
    state: AppState,
    mut connection: Connection,
    greeting: Vec<SseEvent>,
    out: mpsc::Sender<SseEvent>,
) {
    for event in greeting {
        if !push(&out, event).await {
            return;
        }
    }
    let link = Arc::clone(connection.link());
    let mut closed = connection.close_signal();
    loop {
        let next = tokio::select! {
            biased;
            close = closed.wait() => {
                let _ = push(&out, farewell(close)).await;
                return;
            }
            () = out.closed() => return,
            () = link.recheck_requested() => match recheck(&state, &mut connection).await {
                Rechecked::Ended => continue,
                Rechecked::Dropped(channels) if channels.is_empty() => continue,
                Rechecked::Dropped(channels) => SseEvent::default()
                    .event("error")
                    .data(json!({"code": "subscription_revoked", "channels": channels}).to_string()),
            },
            Some(event) = connection.events.recv() => render(&event),
        };
        if !push(&out, next).await {
            return;
        }
    }
}
