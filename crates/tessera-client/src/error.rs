//! What can go wrong: authenticating a request ([`AuthError`], answered with a problem), and
//! setting a verifier up ([`SetupError`]).

use http::StatusCode;
use tessera_token::{ExtractError, VerifyError};

/// Why a request is not authenticated or not allowed. Safe to log and to answer: it never
/// carries token content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no credential.
    #[error("authentication required")]
    Missing,
    /// A credential is present but unusable (malformed header, duplicate cookie…).
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The token failed verification.
    #[error(transparent)]
    Invalid(#[from] VerifyError),
    /// The token's session, subject or id was revoked.
    #[error("token revoked")]
    Revoked,
    /// Introspection answered that the token is not active.
    #[error("token not active")]
    Inactive,
    /// A real-time ticket reached a service; tickets are redeemed by Tessera itself.
    #[error("tickets are accepted by Tessera only")]
    Ticket,
    /// A cookie-authenticated unsafe request without a matching CSRF token or allowed origin.
    #[error("CSRF check failed")]
    Csrf,
    /// Authenticated, but the token does not grant this permission.
    #[error("missing permission `{0}`")]
    Forbidden(String),
    /// Tessera could not be asked (introspection down, circuit open): refused, never allowed.
    #[error("token verification unavailable")]
    Unavailable,
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing
            | Self::Extract(_)
            | Self::Invalid(_)
            | Self::Revoked
            | Self::Inactive
            | Self::Ticket => StatusCode::UNAUTHORIZED,
            Self::Csrf | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable machine-readable code, the same Tessera's own endpoints use.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "unauthenticated",
            Self::Extract(_) | Self::Ticket => "invalid_credential",
            Self::Invalid(e) => e.code(),
            Self::Revoked => "token_revoked",
            Self::Inactive => "token_inactive",
            Self::Csrf => "csrf_failed",
            Self::Forbidden(_) => "forbidden",
            Self::Unavailable => "verification_unavailable",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3), for 401 and permission 403 answers.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Self::Missing => Some("Bearer"),
            Self::Forbidden(_) => Some("Bearer error=\"insufficient_scope\""),
            _ if self.status() == StatusCode::UNAUTHORIZED => {
                Some("Bearer error=\"invalid_token\"")
            }
            _ => None,
        }
    }
}

/// Why a [`Verifier`](crate::Verifier) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The builder's settings cannot work.
    #[error("invalid verifier configuration: {0}")]
    Config(String),
    /// The issuer's metadata could not be read or does not describe this issuer.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The key set could not be read.
    #[error("reading the JWKS failed: {0}")]
    Jwks(String),
    /// The first read of the revocation feed failed: a verifier that does not know what was
    /// revoked would accept it.
    #[error("reading the revocation feed failed: {0}")]
    Feed(String),
}
