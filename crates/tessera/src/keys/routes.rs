//! `GET /.well-known/jwks.json`: the public keys every verifier trusts.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use crate::http::etag;
use crate::http::openapi::ApiRouter;
use crate::state::AppState;
use utoipa_axum::routes;

/// Routes of this module.
pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(jwks))
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "oauth",
    security(()),
    responses((status = 200, description = "The JSON Web Key Set every verifier trusts", body = Object), (status = 304, description = "`If-None-Match` names the current ETag"))
)]
async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let published = state.keys().current();
    etag::json_response(
        &headers,
        axum::body::Bytes::from_owner(published.jwks_body.clone()),
        &published.jwks_etag,
        jwks_cache_control(
            state.config().token.rotation_delay_secs,
            published.next_activation,
            tessera_token::unix_now(),
        ),
    )
}

/// How long caches may keep the JWKS: half the rotation delay (at most 300 s), and, while a
/// published key waits to start signing, at most half the time left before it does (less the
/// time other instances take to notice), so every cache holds it before any token names it.
/// With no time to spare, caches must revalidate (cheap: the ETag answers 304).
pub fn jwks_cache_control(
    rotation_delay_secs: u64,
    next_activation: Option<i64>,
    now: i64,
) -> HeaderValue {
    let mut max_age = (rotation_delay_secs / 2).min(300);
    if let Some(at) = next_activation {
        let left = at
            .saturating_sub(now)
            .saturating_sub(super::REFRESH_EVERY_SECS)
            / 2;
        max_age = max_age.min(u64::try_from(left).unwrap_or(0));
    }
    if max_age == 0 {
        HeaderValue::from_static("no-cache")
    } else {
        HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .expect("digits are a valid header value")
    }
}
