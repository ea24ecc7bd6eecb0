//! `GET /api/v1/platform/config`: what a frontend loads at start instead of hard-coding flags
//! and URLs. `{app, features, api, auth, branding}`, the shape the platforms' frontends already
//! read. Anonymous callers (and callers whose credential no longer works) get the public flags;
//! an authenticated caller gets every flag evaluated for their user and tenant. `ETag` with
//! `If-None-Match` → 304; `Cache-Control: no-cache` so a browser always revalidates.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::flags::caller::Caller;
use crate::http::openapi::ApiRouter;
use crate::http::{ApiError, etag};
use utoipa_axum::routes;

/// The route.
pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(config))
}

/// The CSRF header browsers echo on unsafe requests.
const CSRF_HEADER: &str = "X-CSRF-Token";

#[utoipa::path(
    get,
    path = "/api/v1/platform/config",
    tag = "flags",
    security((), ("bearer" = []), ("session" = [])),
    responses((status = 200, description = "`{app, features, api, auth, branding}` for a frontend", body = Object), (status = 304, description = "`If-None-Match` names the current ETag"))
)]
async fn config(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = match caller {
        Ok(caller) => caller,
        // An expired or revoked credential still gets the public configuration: a frontend
        // reads it before it knows whether its session lives.
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => Caller::Anonymous,
        Err(e) => return Err(e),
    };
    let body = serde_json::to_vec(&document(&state, &caller)).map_err(ApiError::internal)?;
    let tag = content_etag(&body);
    let cache_control = HeaderValue::from_static(match caller {
        Caller::Anonymous => "public, no-cache",
        _ => "private, no-cache",
    });
    let mut response = etag::json_response(&headers, body, &tag, cache_control);
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Cookie"),
    );
    Ok(response)
}

/// A strong ETag of a body: the first 128 bits of its SHA-256.
pub fn content_etag(body: &[u8]) -> HeaderValue {
    let digest = crate::digest::sha256_hex(body);
    HeaderValue::from_str(&format!("\"{}\"", &digest[..32]))
        .unwrap_or(HeaderValue::from_static("\"\""))
}

/// The configuration document for `caller`.
pub fn document(state: &AppState, caller: &Caller) -> Value {
    let config = state.config();
    let platform = &config.platform;
    let context = caller.context(None, Map::new());
    let features = state
        .flags()
        .snapshot()
        .features(&context, matches!(caller, Caller::Anonymous));
    let cookies = &state.auth().cookies;
    let branding: Map<String, Value> = serde_json::to_value(&platform.branding)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect();
    json!({
        "app": {
            "name": platform.app_name,
            "version": platform.app_version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION")),
            "environment": config.environment.as_str(),
        },
        "features": features,
        "api": {
            "rest_url": platform.rest_url,
            "graphql_url": platform.graphql_url,
            "realtime": { "sse_url": platform.sse_url, "ws_url": platform.ws_url },
        },
        "auth": {
            "login_url": platform.login_url,
            "cookie_names": {
                "access_token": cookies.access_name(),
                "refresh_token": cookies.refresh_name(),
                "csrf_token": cookies.csrf_name(),
            },
            "csrf_header": CSRF_HEADER,
        },
        "branding": branding,
    })
}
