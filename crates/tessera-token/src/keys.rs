//! Algorithms, public keys, JWKS documents and the key set a verifier trusts.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, ParsedPublicKey,
};
use aws_lc_rs::{constant_time, hmac};
use serde::{Deserialize, Serialize};

use crate::MIN_HMAC_SECRET_BYTES;
use crate::b64;

/// A signing algorithm. Each key has exactly one; a token's `alg` header must name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 signatures (RFC 8037), the default.
    EdDSA,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// HMAC-SHA256 with a shared secret; only for the explicit legacy mode.
    HS256,
}

impl Algorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::HS256 => "HS256",
        }
    }

    /// Parses a JOSE name; anything else (including `none`) is `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            "HS256" => Some(Self::HS256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not be built or generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The private key bytes are not a valid PKCS#8 document for the algorithm.
    #[error("the private key is not a valid PKCS#8 {0} key")]
    InvalidPrivateKey(Algorithm),
    /// The public key bytes are not valid for the algorithm.
    #[error("the public key is not a valid {0} key")]
    InvalidPublicKey(Algorithm),
    /// An HMAC secret shorter than [`MIN_HMAC_SECRET_BYTES`].
    #[error("an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes, not {0}")]
    ShortSecret(usize),
    /// Key generation is only for asymmetric algorithms.
    #[error("{0} keys are not generated; HS256 takes a configured secret")]
    NotGenerated(Algorithm),
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// Generates a fresh private key as a PKCS#8 document (EdDSA or ES256).
pub fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Random),
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Random),
        Algorithm::HS256 => Err(KeyError::NotGenerated(alg)),
    }
}

/// A public JSON Web Key (RFC 7517) as Tessera publishes and reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// Curve: `Ed25519` or `P-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public key (OKP) or x coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// y coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithm this key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; `sig` for Tessera's keys.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

impl Jwk {
    /// The RFC 7638 thumbprint (SHA-256, base64url) of the key's required members; stable for
    /// a key whatever its `kid`, so it makes a good `kid`. `None` for incomplete keys.
    pub fn thumbprint(&self) -> Option<String> {
        let crv = self.crv.as_deref()?;
        let x = self.x.as_deref()?;
        // Members in lexicographic order, no whitespace, as RFC 7638 §3.2 requires.
        let canonical = match self.kty.as_str() {
            "OKP" => serde_json::json!({ "crv": crv, "kty": "OKP", "x": x }),
            "EC" => serde_json::json!({ "crv": crv, "kty": "EC", "x": x, "y": self.y.as_deref()? }),
            _ => return None,
        };
        let text = canonical.to_string();
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
        Some(b64::encode(hash.as_ref()))
    }
}

/// A JWKS document: `{"keys": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// A key that checks signatures, bound to one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    material: Material,
}

#[derive(Clone)]
enum Material {
    /// Parsed once, so each verification skips key decoding; `raw` is kept for the JWK.
    Public {
        key: ParsedPublicKey,
        raw: Box<[u8]>,
    },
    /// Boxed: the precomputed HMAC state is large.
    Hmac(Box<hmac::Key>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An Ed25519 or P-256 public key from its raw bytes (32 bytes, or the 65-byte
    /// uncompressed point).
    pub fn public(
        alg: Algorithm,
        kid: impl Into<String>,
        public_key: &[u8],
    ) -> Result<Self, KeyError> {
        let algorithm: &'static dyn signature::VerificationAlgorithm = match alg {
            Algorithm::EdDSA => &ED25519,
            Algorithm::ES256 => &ECDSA_P256_SHA256_FIXED,
            Algorithm::HS256 => return Err(KeyError::InvalidPublicKey(alg)),
        };
        let expected_len = if alg == Algorithm::EdDSA { 32 } else { 65 };
        if public_key.len() != expected_len {
            return Err(KeyError::InvalidPublicKey(alg));
        }
        let parsed = ParsedPublicKey::new(algorithm, public_key)
            .map_err(|_| KeyError::InvalidPublicKey(alg))?;
        Ok(Self {
            kid: Some(kid.into()),
            alg,
            material: Material::Public {
                key: parsed,
                raw: public_key.into(),
            },
        })
    }

    /// An HS256 secret (at least [`MIN_HMAC_SECRET_BYTES`]); `kid` is optional for HS256.
    pub fn hmac(kid: Option<String>, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Ok(Self {
            kid,
            alg: Algorithm::HS256,
            material: Material::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        })
    }

    /// A key from a public JWK, or `None` when the JWK is not a usable Tessera verification
    /// key: no `kid`, a symmetric (`oct`) key, an unknown type or curve, an `alg` that does
    /// not match the key type, a `use` other than `sig`, or malformed coordinates.
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        let kid = jwk.kid.as_deref().filter(|k| !k.is_empty())?;
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let alg = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
            ("EC", Some("P-256")) => Algorithm::ES256,
            _ => return None,
        };
        if jwk.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
            return None;
        }
        let x = b64::decode(jwk.x.as_deref()?)?;
        let bytes = match alg {
            Algorithm::EdDSA => x,
            _ => {
                let y = b64::decode(jwk.y.as_deref()?)?;
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                point
            }
        };
        Self::public(alg, kid, &bytes).ok()
    }

    /// The public JWK, or `None` for an HMAC secret, which is never published.
    pub fn to_jwk(&self) -> Option<Jwk> {
        let Material::Public { raw, .. } = &self.material else {
            return None;
        };
        let (kty, crv, x, y) = match self.alg {
            Algorithm::EdDSA => ("OKP", "Ed25519", b64::encode(raw), None),
            _ => (
                "EC",
                "P-256",
                b64::encode(raw.get(1..33)?),
                Some(b64::encode(raw.get(33..65)?)),
            ),
        };
        Some(Jwk {
            kty: kty.to_owned(),
            crv: Some(crv.to_owned()),
            x: Some(x),
            y,
            kid: self.kid.clone(),
            alg: Some(self.alg.as_str().to_owned()),
            key_use: Some("sig".to_owned()),
        })
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Checks `signature` over `message`.
    pub(crate) fn check(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Public { key, .. } => key.verify_sig(message, signature).is_ok(),
            Material::Hmac(key) => {
                let tag = hmac::sign(key, message);
                constant_time::verify_slices_are_equal(tag.as_ref(), signature).is_ok()
            }
        }
    }
}

/// The keys a verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// A set of the given keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self { keys }
    }

    /// Every usable key of a JWKS document; unusable entries are skipped (see
    /// [`VerifyingKey::from_jwk`]). HMAC secrets are never taken from a JWKS.
    pub fn from_jwks(jwks: &Jwks) -> Self {
        Self {
            keys: jwks
                .keys
                .iter()
                .filter_map(VerifyingKey::from_jwk)
                .collect(),
        }
    }

    /// A set holding one HS256 secret (legacy mode).
    pub fn hmac(kid: Option<String>, secret: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            keys: vec![VerifyingKey::hmac(kid, secret)?],
        })
    }

    /// The key a token header names. A token without `kid` matches only the single key of an
    /// HS256 set that has no kid either.
    pub fn find(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => match self.keys.as_slice() {
                [only] if only.alg == Algorithm::HS256 && only.kid.is_none() => Some(only),
                _ => None,
            },
        }
    }

    /// The keys.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The public keys as a JWKS document (HMAC secrets are left out).
    pub fn to_jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().filter_map(VerifyingKey::to_jwk).collect(),
        }
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        // The Ed25519 example key of RFC 8037 A.2/A.3 and its published thumbprint.
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
            y: None,
            kid: None,
            alg: None,
            key_use: None,
        };
        assert_eq!(
            jwk.thumbprint().as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }
}
