//! The one implementation of Tessera's access-token format and verification rules, shared by
//! the server (which signs) and every client (which verifies), so the two can never drift.
//!
//! - [`AccessClaims`]: the RFC 9068 claim set (`typ: at+jwt`).
//! - [`Signer`]: EdDSA (Ed25519, the default), ES256, and HS256 for the legacy mode only.
//! - [`Verifier`] over a [`KeySet`] built from a JWKS document or one HS256 secret. The
//!   algorithm always comes from the key found by `kid`, never from the token alone.
//! - [`TokenCache`]: verified tokens remembered by their exact text, so a token presented
//!   again costs a lookup instead of a signature check, and is still refused once expired.
//! - [`Permission`]: `resource:action` with `*` wildcards, and whether a token's `scope`
//!   allows one.
//! - [`Revocation`]: an entry of the revocation feed and the tokens it makes invalid.
//! - [`extract_token`]: where a request's token is read from, in one fixed order.
//! - [`CsrfPolicy`]: what makes a cookie-authenticated request that changes things legitimate.

mod b64;
mod cache;
mod claims;
mod csrf;
mod extract;
mod keys;
mod permission;
mod revocation;
mod sign;
mod verify;

pub use cache::TokenCache;
pub use claims::{AccessClaims, Audience};
pub use csrf::{CsrfError, CsrfPolicy, request_origin};
pub use extract::{Credential, ExtractError, ExtractionPolicy, cookie_value, extract_token};
pub use keys::{Algorithm, Jwk, Jwks, KeyError, KeySet, VerifyingKey, generate_pkcs8};
pub use permission::{InvalidPermission, PATTERN as PERMISSION_PATTERN, Permission};
pub use revocation::{Revocation, RevocationPage, RevocationSet, Revoked};
pub use sign::{SignError, Signer};
pub use verify::{Validation, Verifier, VerifyError, unix_now, unix_now_ms};

/// Largest raw token accepted; anything longer is rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The JOSE `typ` of every access token (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";

/// Smallest HS256 secret accepted, in bytes (the size of the hash output, RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
