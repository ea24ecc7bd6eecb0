//! What other Rust services link to trust Tessera.
//!
//! A [`Verifier`] discovers the issuer (RFC 8414 metadata), caches its JWKS (fetched again
//! on an unknown `kid`, at most every few seconds, and refreshed in the background), verifies
//! tokens with [`tessera_token`], the same rules the server signs by, and follows Tessera's
//! revocation feed so a revoked session is refused here within a second, without a call per
//! request. An introspection mode asks Tessera instead, with a short cache and a circuit
//! breaker that fails closed.
//!
//! The feed's entries ([`tessera_token::Revocation`]) are tagged by `kind`: `session`
//! (`sid`), `subject` (`sub`: a user or client disabled, covering its tokens issued at or
//! before `issued_before`), `token` (`jti`) and `tenant` (a tenant disabled: every token of
//! its `tid` issued at or before `issued_before`, users' and service accounts' alike).
//! Entries of a kind this version does not know are skipped.
//!
//! [`Flags`] keeps Tessera's feature flags for one evaluation context in memory: fetched with
//! OFREP's bulk endpoint (ETag, 304), refreshed on each event of the change stream, read by
//! typed getters that never wait on the network.
//!
//! With the `axum` feature (on by default): the [`Authenticated`] extractor, the
//! [`axum::Require`] permission guard, and [`axum::AuthLayer`] /
//! [`axum::RequirePermissionLayer`] for whole routers.
//!
//! ```no_run
//! # async fn run() -> Result<(), tessera_client::SetupError> {
//! let verifier = tessera_client::Verifier::builder("https://auth.example.com", "platform")
//!     .client_credentials("client-id", "tss_secret")
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "axum")]
pub mod axum;
mod error;
mod fetch;
mod flags;
mod introspection;
mod keys;
mod revocations;
mod sse;
mod tickets;
mod verifier;

pub use error::{AuthError, SetupError};
pub use flags::{Flags, FlagsBuilder, FlagsError};
pub use tessera_token;
pub use tickets::{RedeemedTicket, TicketError, TicketRedeemer};
pub use verifier::{Authenticated, Builder, Verifier};
