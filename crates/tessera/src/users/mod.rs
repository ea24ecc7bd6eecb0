//! Accounts: validated identifiers and the account types; their queries ([`store`]), the
//! administrators' routes ([`routes`]), listing ([`listing`]) and the bootstrap admin created
//! on the first start ([`bootstrap`]).

pub mod bootstrap;
pub mod import;
pub mod listing;
pub mod routes;
pub mod store;

use std::fmt;

use axum::http::StatusCode;

use crate::http::ApiError;
use crate::http::error::db_error;

pub use store::{
    count, create, find_by_email, find_for_login, find_for_login_by_id, find_in_tenant,
    password_hash, record_login, roles, set_active, set_password_hash, swap_password_hash,
};

/// An email address, checked once; compared by its lowercase form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    raw: String,
    normalized: String,
}

impl Email {
    /// Accepts `local@domain` with no spaces, control, format or bidi characters (see
    /// [`crate::text`]), at most 254 bytes.
    /// Deliverability is not this function's business; shape and length are.
    pub fn parse(input: &str) -> Result<Self, String> {
        let raw = input.trim();
        let valid = raw.len() <= 254
            && !raw
                .chars()
                .any(|c| c.is_whitespace() || crate::text::is_hidden(c))
            && raw.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if !valid {
            return Err(format!("`{}` is not an email address", raw.escape_debug()));
        }
        Ok(Self {
            raw: raw.to_owned(),
            normalized: raw.to_lowercase(),
        })
    }

    /// As given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Lowercase, for lookups and uniqueness.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Longest first or last name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A username: 3 to 64 letters, digits, `.`, `_`, `-`; never an `@`, so a login is
/// unambiguously an email or a username.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok = (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("a username has 3 to 64 letters, digits, `.`, `_` or `-`".to_owned())
    }
}

/// A first or last name: at most [`MAX_NAME_CHARS`] characters, none of them hidden (control,
/// format or bidi characters: see [`crate::text`]).
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_NAME_CHARS || crate::text::has_hidden(value) {
        return Err(format!(
            "`{field}` has at most {MAX_NAME_CHARS} characters and no control, format or \
             bidi characters"
        ));
    }
    Ok(())
}

/// What a new account needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Tenant id.
    pub tenant_id: String,
    /// Email.
    pub email: Email,
    /// Optional login name, unique per tenant (case-insensitive).
    pub username: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// PHC or legacy hash; `None` for an account without a password.
    pub password_hash: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
}

/// A stored user, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    /// UUIDv7.
    pub id: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Email as given.
    pub email: String,
    /// Login name.
    pub username: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Whether the account may log in.
    pub active: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last successful login.
    pub last_login_at: Option<i64>,
}

/// Why an account could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Email or username already taken in the tenant.
    #[error("an account with this email or username already exists in the tenant")]
    Conflict,
    /// No such account.
    #[error("no such account")]
    NotFound,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<UserError> for ApiError {
    /// A missing account is a 404, a taken email or username a 409 `account_exists`; a
    /// database failure as every other one (see [`db_error`]).
    fn from(error: UserError) -> Self {
        match error {
            UserError::NotFound => ApiError::not_found(),
            UserError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "account_exists",
                "an account with this email or username already exists in the tenant",
            ),
            UserError::Database(e) => db_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_compared_in_lowercase() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(email.normalized(), "ada.lovelace@example.com");
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a b@x.io",
            "a@b@c",
            "a@.x",
            "a@x.",
            "a\n@x.io",
            "admin\u{200B}@example.com",
            "admin@\u{202E}moc.elpmaxe",
            "\u{FEFF}admin@example.com",
            "ad\u{2066}min@example.com",
            "admin@exam\u{00AD}ple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(65))).is_err());
    }

    #[test]
    fn names_refuse_invisible_and_bidi_characters() {
        assert!(check_name("first_name", "Zoë").is_ok());
        for bad in ["Ad\u{200B}a", "\u{202E}ecilA", "Bob\u{2069}", "x\u{E0041}"] {
            assert!(check_name("first_name", bad).is_err(), "{bad:?} accepted");
        }
    }
}
