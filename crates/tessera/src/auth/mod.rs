//! The login flow: login with its second factor ([`mfa`]), registration, refresh, logout and
//! the caller's own account ([`routes`]), for API clients (tokens in the body,
//! `Authorization: Bearer`) and browsers (cookies with CSRF protection) alike; the lockout
//! every secret check passes ([`attempts`]) and what a login returns ([`tokens`]).

pub mod attempts;
pub mod cookies;
pub mod mfa;
pub mod routes;
pub mod tokens;

use tessera_token::ExtractionPolicy;

use crate::config::Config;
use crate::http::csrf::Csrf;
use crate::master::MasterKey;
use cookies::Cookies;

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
