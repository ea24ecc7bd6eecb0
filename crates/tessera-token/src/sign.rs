//! Signing access tokens.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use serde_json::json;

use crate::keys::{Algorithm, Jwk, KeyError, VerifyingKey};
use crate::{AccessClaims, TOKEN_TYPE, b64};

/// Why a token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The claims could not be serialized.
    #[error("the claims could not be serialized")]
    Claims,
    /// The cryptographic operation failed (ES256 needs the system random generator).
    #[error("signing failed")]
    Crypto,
}

/// Signs access tokens with one key. The JOSE header is fixed per signer and encoded once.
pub struct Signer {
    alg: Algorithm,
    kid: Option<String>,
    header: String,
    material: Material,
}

enum Material {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair, SystemRandom),
    /// Boxed: the precomputed HMAC state is large.
    Hmac(Box<hmac::Key>, Vec<u8>),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for an EdDSA or ES256 private key in PKCS#8 form.
    pub fn from_pkcs8(
        alg: Algorithm,
        kid: impl Into<String>,
        pkcs8: &[u8],
    ) -> Result<Self, KeyError> {
        let material = match alg {
            Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(pkcs8)
                .map(Material::Ed25519)
                .map_err(|_| KeyError::InvalidPrivateKey(alg))?,
            Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map(|pair| Material::Es256(pair, SystemRandom::new()))
                .map_err(|_| KeyError::InvalidPrivateKey(alg))?,
            Algorithm::HS256 => return Err(KeyError::InvalidPrivateKey(alg)),
        };
        Ok(Self::with(alg, Some(kid.into()), material))
    }

    /// A signer for an HS256 secret (legacy mode), at least 32 bytes.
    pub fn hs256(kid: Option<String>, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < crate::MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        Ok(Self::with(
            Algorithm::HS256,
            kid,
            Material::Hmac(Box::new(key), secret.to_vec()),
        ))
    }

    fn with(alg: Algorithm, kid: Option<String>, material: Material) -> Self {
        let header = match &kid {
            Some(kid) => json!({ "alg": alg.as_str(), "typ": TOKEN_TYPE, "kid": kid }),
            None => json!({ "alg": alg.as_str(), "typ": TOKEN_TYPE }),
        };
        Self {
            alg,
            kid,
            header: b64::encode(header.to_string().as_bytes()),
            material,
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id put in every header.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Signs the claims into a compact JWS.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, SignError> {
        let payload = serde_json::to_vec(claims).map_err(|_| SignError::Claims)?;
        self.finish(self.header.clone(), &payload)
    }

    /// Signs exactly the given header and payload bytes, for tooling and tests that need
    /// tokens Tessera itself would never issue. The header is not checked.
    pub fn sign_raw(&self, header_json: &[u8], payload_json: &[u8]) -> Result<String, SignError> {
        self.finish(b64::encode(header_json), payload_json)
    }

    fn finish(&self, header_b64: String, payload: &[u8]) -> Result<String, SignError> {
        let mut token = header_b64;
        token.reserve(payload.len() * 4 / 3 + 100);
        token.push('.');
        token.push_str(&b64::encode(payload));
        let signature = match &self.material {
            Material::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
            Material::Es256(pair, rng) => pair
                .sign(rng, token.as_bytes())
                .map_err(|_| SignError::Crypto)?
                .as_ref()
                .to_vec(),
            Material::Hmac(key, _) => hmac::sign(key, token.as_bytes()).as_ref().to_vec(),
        };
        token.push('.');
        token.push_str(&b64::encode(&signature));
        Ok(token)
    }

    /// The key that verifies this signer's tokens. For HS256 that is the secret itself: keep it
    /// in process, never publish it.
    pub fn verifying_key(&self) -> VerifyingKey {
        let kid = self.kid.clone().unwrap_or_default();
        let built = match &self.material {
            Material::Ed25519(pair) => {
                VerifyingKey::public(self.alg, kid, pair.public_key().as_ref())
            }
            Material::Es256(pair, _) => {
                VerifyingKey::public(self.alg, kid, pair.public_key().as_ref())
            }
            Material::Hmac(_, secret) => VerifyingKey::hmac(self.kid.clone(), secret),
        };
        built.expect("a key pair's own public half is always a valid key")
    }

    /// The public JWK to publish; `None` for HS256, whose secret is never published.
    pub fn public_jwk(&self) -> Option<Jwk> {
        match self.material {
            Material::Hmac(..) => None,
            _ => self.verifying_key().to_jwk(),
        }
    }
}
