//! The login flow over HTTP: `/api/v1/auth/*` (login with its second factor, registration,
//! refresh, logout, the caller's own account) and `/api/v1/mfa/*`.

pub mod account;
pub mod login;
pub mod mfa;

use crate::http::openapi::ApiRouter;
use utoipa_axum::routes;

/// `/api/v1/auth/*` except the session list (see [`crate::sessions::routes`]).
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(login::login))
        .routes(routes!(login::register))
        .routes(routes!(account::refresh))
        .routes(routes!(account::logout))
        .routes(routes!(account::me))
        .routes(routes!(account::change_password))
        .merge(mfa::router())
}
