//! OAuth 2.0 surface: the authorization-server metadata (RFC 8414), the token endpoint
//! (client credentials), introspection (RFC 7662) and revocation (RFC 7009).

pub mod client_auth;
pub mod denylist;
pub mod introspect;
pub mod revoke;
pub mod token;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::json;

use crate::http::etag;
use crate::http::openapi::ApiRouter;
use crate::keys::etag_of;
use crate::state::AppState;
use utoipa_axum::routes;

/// Routes of this module.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(metadata))
        .routes(routes!(token::token))
        .routes(routes!(introspect::introspect))
        .routes(routes!(revoke::revoke))
}

/// Client authentication methods of every endpoint that authenticates clients.
const CLIENT_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "oauth",
    security(()),
    responses((status = 200, description = "RFC 8414 authorization-server metadata", body = Object), (status = 304, description = "`If-None-Match` names the current ETag"))
)]
async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let issuer = state.config().issuer();
    let algorithms = state.keys().current().algorithms.clone();
    let document = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        // Not registered by RFC 8414: Tessera's revocation feed, for services that verify
        // tokens locally (`client_secret_basic`, scope `tokens:introspect`).
        "revocations_endpoint": format!("{issuer}/api/v1/auth/revocations"),
        "revocations_stream_endpoint": format!("{issuer}/api/v1/auth/revocations/stream"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        // Not registered by RFC 8414: which `alg` access tokens (RFC 9068) are signed with.
        "access_token_signing_alg_values_supported": algorithms,
    });
    let body = document.to_string();
    let etag = etag_of(body.as_bytes());
    etag::json_response(
        &headers,
        body,
        &etag,
        HeaderValue::from_static("public, max-age=300"),
    )
}
