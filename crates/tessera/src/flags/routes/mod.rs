//! The HTTP face of the flags capability: OFREP with its change stream ([`ofrep`]),
//! `GET /api/v1/platform/config` ([`platform`]) and the admin API ([`admin`]).

pub mod admin;
pub mod ofrep;
pub mod platform;

use crate::http::openapi::ApiRouter;

/// Every flag route.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .merge(ofrep::router())
        .merge(platform::router())
        .merge(admin::router())
}
