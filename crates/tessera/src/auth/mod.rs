//! Authentication: passwords, login, refresh, logout, the caller's own account, and the
//! extractor that authenticates every session endpoint, for API clients (tokens in the body,
//! `Authorization: Bearer`) and browsers (cookies with CSRF protection) alike.

pub mod account;
mod argon;
pub mod attempts;
pub mod cookies;
pub mod extract;
pub mod login;
pub mod password;
pub mod stored_hash;
pub mod tokens;

use axum::Router;
use axum::routing::{get, post};
use tessera_token::ExtractionPolicy;

use crate::AppState;
use crate::config::Config;
use crate::http::csrf::Csrf;
use crate::keys::master::MasterKey;
use cookies::Cookies;
pub use extract::{Authenticated, Target};

/// How this instance reads and protects browser credentials.
pub struct Auth {
    /// Where tokens are read from (the cookie name follows the configured prefix).
    pub extraction: ExtractionPolicy,
    /// Cookie names and attributes.
    pub cookies: Cookies,
    /// CSRF tokens and the origin allow-list.
    pub csrf: Csrf,
}

impl Auth {
    /// The browser-auth settings of `config`, secrets derived from `master`.
    pub fn new(config: &Config, master: &MasterKey) -> Self {
        let cookies = Cookies::new(config);
        let extraction = ExtractionPolicy {
            cookie_name: cookies.access_name().to_owned(),
            ..ExtractionPolicy::default()
        };
        let csrf = Csrf::new(config, master, cookies.csrf_name().to_owned());
        Self {
            extraction,
            cookies,
            csrf,
        }
    }
}

/// `/api/v1/auth/*` except the session list (see [`crate::sessions::routes`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login::login))
        .route("/api/v1/auth/register", post(login::register))
        .route(cookies::REFRESH_PATH, post(account::refresh))
        .route("/api/v1/auth/logout", post(account::logout))
        .route("/api/v1/auth/me", get(account::me))
        .route("/api/v1/auth/password", post(account::change_password))
}
