//! A service other teams would write: it never holds a signing secret and never checks a JWT
//! itself. `tessera-client` verifies each request locally against Tessera's keys, and a
//! session revoked in Tessera is refused here within a second through the revocation feed.
//!
//! - `GET /whoami`: any authenticated caller.
//! - `POST /reports`: needs `reports:write` (the [`Require`] extractor).
//! - `GET /admin/stats`: everything under `/admin` needs `stats:read` (layers).
//! - `GET /healthz`: open; reports whether revocations are being followed.
//! - `GET /chat?ticket=…` ([`chat_router`]): the service's own WebSocket. The browser gets a
//!   ticket naming this service from Tessera (`POST /api/v1/realtime/ticket` with
//!   `{"audience": "<this service's client id>"}`), the service redeems it once
//!   ([`TicketRedeemer`]) before upgrading, and closes the socket with 4401 as soon as the
//!   revocation feed reports the session ended ([`Verifier::session_ended`]).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tessera_client::axum::{AuthLayer, Require, RequirePermissionLayer};
use tessera_client::{Authenticated, RedeemedTicket, TicketError, TicketRedeemer, Verifier};

tessera_client::permission!(
    /// Writing reports.
    pub WriteReports = "reports:write"
);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Verifies Tessera tokens.
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The service's routes.
pub fn router(verifier: Verifier) -> Router {
    let admin = Router::new()
        .route("/admin/stats", get(stats))
        // Layers run outside in: authenticate first, then check the permission.
        .layer(RequirePermissionLayer::new("stats:read"))
        .layer(AuthLayer::new(verifier.clone()));
    Router::new()
        .route("/whoami", get(whoami))
        .route("/reports", post(create_report))
        .route("/healthz", get(health))
        .with_state(AppState { verifier })
        .merge(admin)
}

async fn whoami(caller: Authenticated) -> Json<Value> {
    Json(json!({
        "sub": caller.subject(),
        "tid": caller.tenant(),
        "sid": caller.session(),
        "roles": caller.claims().roles,
    }))
}

async fn create_report(Require(caller, ..): Require<WriteReports>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({ "created_by": caller.subject() })),
    )
}

async fn stats(caller: axum::Extension<Authenticated>) -> Json<Value> {
    Json(json!({ "tenant": caller.tenant(), "reports": 0 }))
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "revocations_live": state.verifier.revocations_live(),
        "revocations_held": state.verifier.revocation_count(),
    }))
}

/// How often an open socket asks the verifier whether its session ended (a local lookup in
/// the revocations the feed delivered; no network call).
const SESSION_CHECK: Duration = Duration::from_millis(100);

/// What the chat socket needs.
#[derive(Clone)]
pub struct ChatState {
    /// Follows the revocation feed.
    pub verifier: Verifier,
    /// Redeems tickets minted for this service.
    pub redeemer: TicketRedeemer,
}

/// The service's own WebSocket, authenticated by Tessera tickets.
pub fn chat_router(verifier: Verifier, redeemer: TicketRedeemer) -> Router {
    Router::new()
        .route("/chat", get(chat))
        .with_state(ChatState { verifier, redeemer })
}

#[derive(serde::Deserialize)]
struct ChatQuery {
    ticket: Option<String>,
}

/// Redeems the ticket before upgrading: a refused ticket is a plain 401, never a socket
/// that opens and closes at once.
async fn chat(
    State(state): State<ChatState>,
    Query(query): Query<ChatQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(ticket) = query.ticket else {
        return (StatusCode::UNAUTHORIZED, "a ticket is required").into_response();
    };
    match state.redeemer.redeem(&ticket).await {
        Ok(session) => upgrade
            .on_upgrade(move |socket| converse(socket, state.verifier, session))
            .into_response(),
        Err(TicketError::Refused) => (StatusCode::UNAUTHORIZED, "ticket refused").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "ticket redemption failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Greets the user, echoes messages, and closes when the session ends.
async fn converse(mut socket: WebSocket, verifier: Verifier, session: RedeemedTicket) {
    let hello = json!({"type": "hello", "sub": session.sub, "sid": session.sid});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut check = tokio::time::interval(SESSION_CHECK);
    loop {
        tokio::select! {
            _ = check.tick() => {
                let expired = tessera_client::tessera_token::unix_now() >= session.session_expires_at;
                if expired || verifier.session_ended(&session) == Some(true) {
                    let frame = CloseFrame { code: 4401, reason: "session ended".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    let echo = json!({"type": "echo", "text": text.as_str()});
                    if socket.send(Message::Text(echo.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}
