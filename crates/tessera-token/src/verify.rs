//! Verifying access tokens: the only place Tessera's acceptance rules are written down.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::keys::{Algorithm, KeySet};
use crate::{AccessClaims, Audience, MAX_TOKEN_BYTES, TOKEN_TYPE, b64};

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The exact `iss` expected.
    pub issuer: String,
    /// An audience that must be among the token's `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
}

impl Validation {
    /// Tolerated clock skew unless configured otherwise.
    pub const DEFAULT_LEEWAY_SECS: i64 = 30;

    /// Expects this issuer and audience, with the default leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
        }
    }
}

/// Why a token was rejected. Safe to log and to return: it never carries token content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_BYTES`]; not parsed at all.
    #[error("token too large")]
    TooLarge,
    /// Not a compact JWS with a JSON header and claims (includes duplicate JSON keys).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm Tessera never accepts (`none`, RS256, …).
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header's algorithm is not the one of the key it names.
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    /// No trusted key has the header's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The header has `crit`; no extension is understood.
    #[error("unsupported critical header")]
    UnsupportedCritical,
    /// `typ` is not `at+jwt`.
    #[error("not an access token")]
    WrongType,
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// A required claim is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// `iss` is not the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// The expected audience is not in `aud`.
    #[error("wrong audience")]
    WrongAudience,
    /// Past `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// Before `nbf` or `iat` (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
}

impl VerifyError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::Malformed(_) => "token_malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::UnknownKey => "unknown_key",
            Self::UnsupportedCritical => "unsupported_critical_header",
            Self::WrongType => "wrong_token_type",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
        }
    }
}

/// The JOSE header fields Tessera reads. `jku`, `x5u`, `jwk` and `x5c` are deliberately not
/// among them: keys come only from the key set. serde rejects a repeated field.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    typ: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    /// `Some` whenever the header names `crit`, whatever its value (`null` included): no
    /// extension is understood, so its mere presence refuses the token.
    #[serde(default, deserialize_with = "present")]
    crit: Option<()>,
}

/// `Some(())` for a field that is present, whatever it holds; serde's default for `Option`
/// would read an explicit `null` as absent.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<()>, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| Some(()))
}

/// The claims as sent, every one optional so a missing one gets its own error. serde rejects a
/// repeated field.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    aud: Option<Audience>,
    sub: Option<String>,
    client_id: Option<String>,
    sid: Option<String>,
    tid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    amr: Vec<String>,
    auth_time: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
}

/// Checks tokens against a key set and the expected issuer and audience.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeySet,
    validation: Validation,
}

impl Verifier {
    /// A verifier trusting `keys`.
    pub fn new(keys: KeySet, validation: Validation) -> Self {
        Self { keys, validation }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The rules besides the signature.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// Verifies a token now.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        self.verify_at(token, unix_now())
    }

    /// Verifies a token at the given Unix time.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<AccessClaims, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not three dot-separated parts"));
        };

        let header_json =
            b64::decode(header_b64).ok_or(VerifyError::Malformed("header is not base64url"))?;
        let header: Header<'_> = serde_json::from_slice(&header_json)
            .map_err(|_| VerifyError::Malformed("header is not a valid JSON object"))?;
        if header.crit.is_some() {
            return Err(VerifyError::UnsupportedCritical);
        }
        let alg = header
            .alg
            .as_deref()
            .and_then(Algorithm::from_name)
            .ok_or(VerifyError::UnsupportedAlgorithm)?;
        let key = self
            .keys
            .find(header.kid.as_deref())
            .ok_or(VerifyError::UnknownKey)?;
        if key.algorithm() != alg {
            return Err(VerifyError::AlgorithmMismatch);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::WrongType);
        }

        let signature = b64::decode(signature_b64)
            .ok_or(VerifyError::Malformed("signature is not base64url"))?;
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        if !key.check(&token.as_bytes()[..signed_len], &signature) {
            return Err(VerifyError::BadSignature);
        }

        // Only authenticated bytes are parsed from here on.
        let payload =
            b64::decode(payload_b64).ok_or(VerifyError::Malformed("claims are not base64url"))?;
        let raw: RawClaims = serde_json::from_slice(&payload)
            .map_err(|_| VerifyError::Malformed("claims are not a valid JSON object"))?;
        self.check_claims(raw, now)
    }

    /// The time rules alone, for claims verified earlier (a cache of verified tokens must
    /// still refuse them once they expire).
    pub fn check_time(&self, claims: &AccessClaims, now: i64) -> Result<(), VerifyError> {
        self.check_times(claims.exp, claims.iat, claims.nbf, now)
    }

    fn check_times(
        &self,
        exp: i64,
        iat: i64,
        nbf: Option<i64>,
        now: i64,
    ) -> Result<(), VerifyError> {
        let leeway = self.validation.leeway_secs;
        if now > exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        let not_before = nbf.unwrap_or(iat).max(iat);
        if now.saturating_add(leeway) < not_before {
            return Err(VerifyError::NotYetValid);
        }
        Ok(())
    }

    fn check_claims(&self, raw: RawClaims, now: i64) -> Result<AccessClaims, VerifyError> {
        let v = &self.validation;
        let iss = raw.iss.ok_or(VerifyError::MissingClaim("iss"))?;
        if iss != v.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        let aud = raw
            .aud
            .filter(|a| !a.is_empty())
            .ok_or(VerifyError::MissingClaim("aud"))?;
        if !aud.contains(&v.audience) {
            return Err(VerifyError::WrongAudience);
        }
        let exp = raw.exp.ok_or(VerifyError::MissingClaim("exp"))?;
        let iat = raw.iat.ok_or(VerifyError::MissingClaim("iat"))?;
        self.check_times(exp, iat, raw.nbf, now)?;
        Ok(AccessClaims {
            iss,
            aud,
            sub: raw.sub.ok_or(VerifyError::MissingClaim("sub"))?,
            client_id: raw
                .client_id
                .ok_or(VerifyError::MissingClaim("client_id"))?,
            sid: raw.sid,
            tid: raw.tid.ok_or(VerifyError::MissingClaim("tid"))?,
            roles: raw.roles,
            scope: raw.scope,
            amr: raw.amr,
            auth_time: raw.auth_time,
            iat,
            nbf: raw.nbf,
            exp,
            jti: raw.jti.ok_or(VerifyError::MissingClaim("jti"))?,
        })
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
