//! `POST /oauth2/token`: the client credentials grant (RFC 6749 §4.4) for service accounts,
//! authenticated with `client_secret_basic` or `client_secret_post`. Errors are RFC 6749 §5.2
//! JSON bodies (`invalid_client` with 401 and a `WWW-Authenticate` challenge, …), as every
//! OAuth client library expects, rather than problem+json.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::client_auth::{self, OAuthError, no_store};
use crate::http::ratelimit::Decision;
use crate::keys::{Grant, access_claims};
use crate::rbac::Permission;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
struct TokenBody {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

/// The token endpoint, limited per client: once the client is known every answer carries
/// the rate-limit headers, and past the limit it gets a 429 problem.
#[utoipa::path(
    post,
    path = "/oauth2/token",
    tag = "oauth",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses((status = 200, description = "An access token", body = TokenBody), (status = 400, description = "RFC 6749 error", body = client_auth::ErrorBody), (status = 401, description = "Client authentication failed", body = client_auth::ErrorBody), (status = 403, description = "A scope the client may not have", body = client_auth::ErrorBody))
)]
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut decision = None;
    let mut response = match issue(&state, &headers, &body, &mut decision).await {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(response) => response,
    };
    if let Some(decision) = decision {
        decision.apply(response.headers_mut());
    }
    response
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    decision: &mut Option<Decision>,
) -> Result<TokenBody, Response> {
    let (client, fields) = client_auth::authenticate(state, headers, body).await?;
    if let Some(policy) = state.limiter().policies().token_per_client {
        let checked = state
            .limiter()
            .check(policy, &format!("token:{}", client.id))
            .await;
        *decision = Some(checked);
        if !checked.allowed {
            return Err(checked.refusal().into_response());
        }
    }
    match fields.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only the client_credentials grant is supported",
            )
            .into());
        }
        None => return Err(OAuthError::invalid_request("grant_type is required").into()),
    }
    let allowed: Vec<Permission> = client
        .scopes
        .iter()
        .filter_map(|s| Permission::parse(s).ok())
        .collect();
    let scope = match fields
        .get("scope")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => client.scopes.join(" "),
        Some(requested) => {
            let mut granted = Vec::new();
            for text in requested.split(' ').filter(|s| !s.is_empty()) {
                let wanted = Permission::parse(text).map_err(|_| {
                    OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a requested scope is malformed",
                    )
                })?;
                if !allowed.iter().any(|a| a.allows(&wanted)) {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a requested scope is not allowed for this client",
                    )
                    .into());
                }
                granted.push(wanted.to_string());
            }
            granted.sort();
            granted.dedup();
            granted.join(" ")
        }
    };
    let config = state.config();
    // Past any revocation of the client (disabled, or a scope taken away), so services accept
    // the token.
    let now = state.rbac().issue_time(&client.id).await;
    let grant = Grant {
        sub: client.id.clone(),
        client_id: client.id,
        sid: None,
        tid: client.tenant_id,
        roles: Vec::new(),
        scope: scope.clone(),
        amr: Vec::new(),
        auth_time: None,
        expires_by: None,
    };
    let claims = access_claims(config, grant, now);
    let ttl = claims.exp - now;
    if state.feed().covers(&claims) {
        // Born revoked: the client or its tenant was disabled within the issuing margin
        // (another instance has not seen it yet, or it was enabled again a moment ago).
        return Err(OAuthError::invalid_client(false).into());
    }
    let access_token = state.keys().current().signer.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server could not sign a token",
        )
    })?;
    Ok(TokenBody {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope,
    })
}
