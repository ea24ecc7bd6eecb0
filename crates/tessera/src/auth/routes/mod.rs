//! The login flow over HTTP: `/api/v1/auth/*` (login with its second factor, registration,
//! refresh, logout, the caller's own account) and `/api/v1/mfa/*`.

pub mod account;
pub mod login;
pub mod mfa;

use axum::Router;
use axum::routing::{get, post};

use crate::auth::cookies;
use crate::state::AppState;

/// `/api/v1/auth/*` except the session list (see [`crate::sessions::routes`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login::login))
        .route("/api/v1/auth/register", post(login::register))
        .route(cookies::REFRESH_PATH, post(account::refresh))
        .route("/api/v1/auth/logout", post(account::logout))
        .route("/api/v1/auth/me", get(account::me))
        .route("/api/v1/auth/password", post(account::change_password))
        .merge(mfa::router())
}
