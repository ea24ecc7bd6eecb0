//! Real-time tickets for services that host their own WebSocket (GraphQL subscriptions, chat):
//! the browser asks Tessera for a ticket naming the service (`POST /api/v1/realtime/ticket`
//! with `{"audience": "<client id>"}`), opens the service's socket with `?ticket=…`, and the
//! service redeems it once with its client credentials ([`TicketRedeemer::redeem`]), learning
//! who the browser is and which session to watch. [`crate::Verifier::session_ended`] then
//! tells, from the revocation feed the verifier follows, when to close the socket.

use serde::Deserialize;
use tessera_token::unix_now;

use crate::fetch::{self, ClientCredentials, REQUEST_TIMEOUT};

/// Who a redeemed ticket's browser is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RedeemedTicket {
    /// The user id.
    pub sub: String,
    /// The session: the socket lives as long as it does.
    pub sid: String,
    /// The tenant id.
    pub tid: String,
    /// The user's roles when the ticket was redeemed.
    pub roles: Vec<String>,
    /// How the user authenticated.
    pub amr: Vec<String>,
    /// When the user authenticated (Unix seconds).
    pub auth_time: i64,
    /// When the session ends unless refreshed (Unix seconds).
    pub session_expires_at: i64,
    /// When this service redeemed it (Unix seconds).
    #[serde(skip, default = "unix_now")]
    pub redeemed_at: i64,
}

/// Why a ticket was not redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Unknown, already used, expired, minted for someone else, or its session ended:
    /// refuse the socket.
    #[error("the ticket was refused")]
    Refused,
    /// Tessera did not accept this service's client credentials.
    #[error("the client credentials were refused")]
    Unauthorized,
    /// Tessera could not be asked, or answered unexpectedly.
    #[error("ticket redemption failed: {0}")]
    Unavailable(String),
}

/// Redeems tickets minted for one service.
#[derive(Debug, Clone)]
pub struct TicketRedeemer {
    http: reqwest::Client,
    url: String,
    credentials: ClientCredentials,
}

impl TicketRedeemer {
    /// Redeems at `issuer` (Tessera's base URL) as the client `client_id`.
    pub fn new(issuer: &str, client_id: &str, client_secret: &str) -> Self {
        Self::with_http(reqwest::Client::new(), issuer, client_id, client_secret)
    }

    /// The same, with a configured HTTP client.
    pub fn with_http(
        http: reqwest::Client,
        issuer: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Self {
        Self {
            http,
            url: format!(
                "{}/api/v1/realtime/ticket/redeem",
                issuer.trim_end_matches('/')
            ),
            credentials: ClientCredentials::new(client_id, client_secret),
        }
    }

    /// Redeems `ticket` (single use: a second attempt is [`TicketError::Refused`]).
    pub async fn redeem(&self, ticket: &str) -> Result<RedeemedTicket, TicketError> {
        let response = self
            .http
            .post(&self.url)
            .header(http::header::AUTHORIZATION, self.credentials.header())
            .json(&serde_json::json!({ "ticket": ticket }))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| TicketError::Unavailable(e.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            401 => return Err(TicketError::Unauthorized),
            422 => return Err(TicketError::Refused),
            other => return Err(TicketError::Unavailable(format!("status {other}"))),
        }
        let body = fetch::body(response)
            .await
            .map_err(TicketError::Unavailable)?;
        serde_json::from_slice(&body).map_err(|e| TicketError::Unavailable(e.to_string()))
    }
}
