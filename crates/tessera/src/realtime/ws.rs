//! `GET /api/v1/realtime/ws`: the WebSocket transport.
//!
//! The handshake is authenticated (and any `channel=` parameters permitted) before the
//! upgrade, so a refusal is an HTTP 401/403 problem, never an accepted socket closed at once.
//!
//! Client messages (JSON text): `{"type":"subscribe","channel":"…","since":42}` (`since`
//! optional: replay what the history holds after that id), `{"type":"unsubscribe",
//! "channel":"…"}`, `{"type":"ping"}`. Server messages: `{"type":"subscribed","channel":"…",
//! "recovered":true}`, `{"type":"event","event":{id,channel,type,data,time}}`,
//! `{"type":"unsubscribed","channel":"…"}`, `{"type":"error","code":"…","message":"…",
//! "channel":"…"}`, `{"type":"pong"}`.
//!
//! Close codes: 4401 session ended, 4403 refused (too many refused subscriptions), 4408 slow
//! consumer, 1001 idle timeout or server shutdown, 1009 message too large. The server pings
//! every 25 seconds; a client silent for `realtime.idle_timeout_secs` is closed.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior, timeout};

use super::channel::ChannelName;
use super::handshake::{self, Handshake};
use super::hub::{Close, Connection, FORBIDDEN, IDLE, Transport};
use super::{Rechecked, access, recheck};
use crate::http::ApiError;
use crate::http::openapi::ApiRouter;
use crate::state::AppState;
use utoipa_axum::routes;

/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(25);

/// How long one write may take before the peer is given up on.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest client message.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Read buffer of one socket.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Refused subscriptions after which the whole connection is refused (4403).
const MAX_REFUSALS: u32 = 16;

/// The WebSocket route.
pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(open))
}

/// Authenticates, permits the channels asked for, and only then upgrades.
#[utoipa::path(
    get,
    path = "/api/v1/realtime/ws",
    tag = "realtime",
    security((), ("bearer" = []), ("session" = [])),
    responses((status = 101, description = "Switching to the WebSocket protocol"))
)]
async fn open(State(state): State<AppState>, request: Request) -> Response {
    match prepare(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn prepare(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (mut parts, _body) = request.into_parts();
    let Handshake { owner, .. } =
        handshake::authenticate(state, &parts, Transport::WebSocket).await?;
    let (channels, since) = handshake::query_channels(&parts)?;
    handshake::permit_all(state, &owner, &channels).await?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, state)
        .await
        .map_err(|rejection| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_a_websocket",
                format!("expected a WebSocket handshake: {rejection}"),
            )
        })?;
    let mut connection = state.realtime().hub().connect(owner, Transport::WebSocket);
    let mut greeting = Vec::new();
    for channel in &channels {
        greeting.extend(subscribe(&mut connection, channel, since));
    }
    let state = state.clone();
    Ok(upgrade
        // Clients send small messages: a small read buffer keeps idle sockets cheap (the
        // default is 128 KiB each).
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(state, socket, connection, greeting)))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Subscribe {
        channel: String,
        since: Option<i64>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

fn error_message(code: &str, message: &str, channel: Option<&str>) -> String {
    json!({"type": "error", "code": code, "message": message, "channel": channel}).to_string()
}

/// Subscribes (already permitted) and returns the messages to send: `subscribed`, then
/// what the history holds after `since`.
fn subscribe(
    connection: &mut Connection,
    channel: &ChannelName,
    since: Option<i64>,
) -> Vec<String> {
    match connection.subscribe(channel, since) {
        Ok(replay) => {
            let mut out = vec![
                json!({"type": "subscribed", "channel": channel.as_str(), "recovered": replay.recovered})
                    .to_string(),
            ];
            out.extend(replay.missed.iter().map(|e| e.ws_text()));
            out
        }
        Err(e) => vec![error_message(
            "subscription_refused",
            &e.to_string(),
            Some(channel.as_str()),
        )],
    }
}

/// The connection's life: client messages, events, heartbeats, and the hub's closes.
async fn run(
    state: AppState,
    mut socket: WebSocket,
    mut connection: Connection,
    greeting: Vec<String>,
) {
    let link = std::sync::Arc::clone(connection.link());
    let idle = Duration::from_secs(state.config().realtime.idle_timeout_secs);
    let mut last_heard = Instant::now();
    let mut refusals = 0u32;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for text in greeting {
        if !send(&mut socket, Message::Text(text.into())).await {
            return;
        }
    }
    let mut closed = connection.close_signal();
    loop {
        let outgoing: Vec<String> = tokio::select! {
            biased;
            close = closed.wait() => {
                finish(&mut socket, close).await;
                return;
            }
            () = link.recheck_requested() => match recheck(&state, &mut connection).await {
                Rechecked::Ended => Vec::new(),
                Rechecked::Dropped(channels) => channels
                    .iter()
                    .map(|c| error_message(
                        "subscription_revoked",
                        "you may no longer subscribe to this channel",
                        Some(c),
                    ))
                    .collect(),
            },
            received = socket.recv() => {
                let Some(Ok(message)) = received else { return };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        handle(&state, &mut connection, &text, &mut refusals).await
                    }
                    Message::Binary(_) => vec![error_message(
                        "invalid_message",
                        "messages are JSON text",
                        None,
                    )],
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) => Vec::new(),
                }
            }
            Some(event) = connection.events.recv() => vec![event.ws_text()],
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle {
                    link.close(IDLE);
                    continue;
                }
                if !send(&mut socket, Message::Ping(Vec::new().into())).await {
                    return;
                }
                Vec::new()
            }
        };
        if refusals > MAX_REFUSALS {
            link.close(FORBIDDEN);
        }
        for text in outgoing {
            if !send(&mut socket, Message::Text(text.into())).await {
                return;
            }
        }
    }
}

/// Answers one client message.
async fn handle(
    state: &AppState,
    connection: &mut Connection,
    text: &str,
    refusals: &mut u32,
) -> Vec<String> {
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(_) => {
            *refusals += 1;
            return vec![error_message(
                "invalid_message",
                "expected {\"type\": \"subscribe\"|\"unsubscribe\"|\"ping\", …}",
                None,
            )];
        }
    };
    match message {
        ClientMessage::Ping { id } => vec![json!({"type": "pong", "id": id}).to_string()],
        ClientMessage::Unsubscribe { channel } => {
            if connection.unsubscribe(&channel) {
                vec![json!({"type": "unsubscribed", "channel": channel}).to_string()]
            } else {
                vec![error_message(
                    "not_subscribed",
                    "this channel is not subscribed",
                    Some(&channel),
                )]
            }
        }
        ClientMessage::Subscribe { channel, since } => {
            let parsed = match ChannelName::parse(&channel) {
                Ok(parsed) => parsed,
                Err(e) => {
                    *refusals += 1;
                    return vec![error_message(
                        "invalid_channel",
                        &e.to_string(),
                        Some(&channel),
                    )];
                }
            };
            let owner = connection.link().owner.clone();
            if let Err(e) = access::may_subscribe(state, &owner, &parsed).await {
                *refusals += 1;
                return vec![error_message(
                    e.code(),
                    "you may not subscribe to this channel",
                    Some(&channel),
                )];
            }
            subscribe(connection, &parsed, since)
        }
    }
}

/// Writes one message, giving up on a peer that does not take it in time.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// Closes the socket with the hub's code and reason.
async fn finish(socket: &mut WebSocket, close: Close) {
    let frame = CloseFrame {
        code: close.code,
        reason: close.reason.into(),
    };
    let _ = send(socket, Message::Close(Some(frame))).await;
}
