//! The HTTP face of the flags capability: OFREP with its change stream ([`ofrep`]),
//! `GET /api/v1/platform/config` ([`platform`]) and the admin API ([`admin`]).

pub mod admin;
pub mod ofrep;
pub mod platform;

use axum::Router;

use crate::AppState;

/// Every flag route.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(ofrep::router())
        .merge(platform::router())
        .merge(admin::router())
}
