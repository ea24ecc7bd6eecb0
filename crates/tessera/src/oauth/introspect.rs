//! `POST /oauth2/introspect` (RFC 7662) for clients allowed `tokens:introspect`.
//!
//! Any token that cannot be used right now gets the same `{"active": false}`: garbage, a
//! wrong signature, an expired token, a revoked token, a revoked or ended session, a disabled
//! account, client or tenant, another tenant's token. Nothing tells them apart. Answers come
//! from the verified-token cache, the deny list, the revocation feed as this instance holds
//! it (the very rule, [`tessera_token::Revocation::covers`], that every verifier following
//! the feed applies, so introspection and the feed never disagree), and the session and
//! client caches, so a revocation shows at once without a database round trip per call.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_token::unix_now;

use super::client_auth::{self, OAuthError, no_store};
use crate::caller::cache::Lookup;
use crate::clients::Client;
use crate::permissions::Perm;
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;

/// The introspection endpoint.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    tag = "oauth",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses((status = 200, description = "RFC 7662 introspection answer", body = Object), (status = 400, description = "RFC 6749 error", body = client_auth::ErrorBody), (status = 401, description = "Client authentication failed", body = client_auth::ErrorBody), (status = 403, description = "The client lacks `tokens:introspect`", body = client_auth::ErrorBody))
)]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match answer(&state, &headers, &body).await {
        Ok(value) => {
            let mut response = axum::Json(value).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn answer(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let (client, fields) = client_auth::authenticate(state, headers, body).await?;
    client_auth::require_scope(&client, Perm::TokensIntrospect)?;
    let token = fields
        .get("token")
        .ok_or(OAuthError::invalid_request("token is required"))?;
    Ok(inspect(state, &client, token).await)
}

async fn inspect(state: &AppState, caller: &Client, token: &str) -> Value {
    let inactive = json!({ "active": false });
    let Ok(claims) = state.keys().current().verify(token) else {
        return inactive;
    };
    if state.denylist().is_denied(&claims.jti) || state.feed().covers(&claims) {
        return inactive;
    }
    // A tenant's services see their own tenant's tokens; the system tenant's see all.
    if caller.tenant_id != SYSTEM_TENANT_ID && caller.tenant_id != claims.tid {
        return inactive;
    }
    let usable = match &claims.sid {
        Some(sid) => matches!(
            state.session_cache().get(state.db(), sid, unix_now()).await,
            Ok(Lookup::Live(info))
                if info.session.user_id == claims.sub && info.session.tenant_id == claims.tid
        ),
        None => matches!(
            state.clients().get(state.db(), &claims.client_id).await,
            Ok(Some(entry)) if entry.usable() && entry.client.tenant_id == claims.tid
        ),
    };
    if !usable {
        return inactive;
    }
    let mut value = serde_json::to_value(&*claims).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        map.insert("active".into(), Value::Bool(true));
        map.insert("token_type".into(), Value::String("Bearer".into()));
        return value;
    }
    inactive
}
