//! `GET /.well-known/jwks.json`: the public keys every verifier trusts.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;

use crate::app::AppState;
use crate::http::etag;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let published = state.keys().current();
    etag::json_response(
        &headers,
        axum::body::Bytes::from_owner(published.jwks_body.clone()),
        &published.jwks_etag,
        jwks_cache_control(state.config().token.rotation_delay_secs),
    )
}

/// Caches may keep the JWKS for at most half the rotation delay, so a rotated key reaches
/// every verifier before it signs anything. With no delay, caches must revalidate (cheap: the
/// ETag answers 304).
pub fn jwks_cache_control(rotation_delay_secs: u64) -> HeaderValue {
    let max_age = (rotation_delay_secs / 2).min(300);
    if max_age == 0 {
        HeaderValue::from_static("no-cache")
    } else {
        HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .expect("digits are a valid header value")
    }
}
