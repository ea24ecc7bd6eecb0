//! Refresh tokens: opaque, 256 random bits, stored only as a SHA-256 hash, rotated on every
//! use.
//!
//! A token's successor is derived, not random: an HMAC of the token under a key derived from
//! the master key. So when two tabs refresh with the same token, the one that loses the race
//! can be given the very successor the winner stored, without the server ever keeping a token
//! in a form that could be replayed from a database dump.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Marks Tessera refresh tokens, so secret scanners and people can recognise one.
const PREFIX: &str = "tsr_";

/// Length of the base64url text of 32 bytes.
const ENCODED_LEN: usize = 43;

/// A refresh token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

impl RefreshToken {
    /// A new random token, the first of a session.
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes)?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let mut text = String::with_capacity(PREFIX.len() + ENCODED_LEN);
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
        Self(text)
    }

    /// Accepts exactly the shape this server issues; anything else is not worth a query.
    pub fn parse(text: &str) -> Option<Self> {
        let body = text.strip_prefix(PREFIX)?;
        let valid = body.len() == ENCODED_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self(text.to_owned()))
    }

    /// The token text, to hand to its owner.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks up: hex SHA-256. A plain hash is right here: the
    /// token has 256 bits of entropy, so nothing can be guessed from it.
    pub fn hash(&self) -> String {
        crate::digest::sha256_hex(self.0.as_bytes())
    }

    /// The token that replaces this one at rotation.
    pub fn successor(&self, key: &hmac::Key) -> Self {
        let tag = hmac::sign(key, self.0.as_bytes());
        Self::from_bytes(tag.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_and_nothing_else_does() {
        let token = RefreshToken::generate().expect("random");
        assert_eq!(RefreshToken::parse(token.as_str()), Some(token.clone()));
        assert_eq!(token.as_str().len(), 47);
        for bad in [
            "",
            "tsr_",
            &token.as_str()[1..],
            &format!("{}A", token.as_str()),
            &token.as_str().replace("tsr_", "tsx_"),
            "tsr_++++++++++++++++++++++++++++++++++++++++++",
        ] {
            assert_eq!(RefreshToken::parse(bad), None, "{bad:?}");
        }
        assert!(!format!("{token:?}").contains(&token.as_str()[4..]));
    }

    #[test]
    fn successors_are_deterministic_per_key_and_differ_from_their_token() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1u8; 32]);
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[2u8; 32]);
        let token = RefreshToken::generate().expect("random");
        let next = token.successor(&key);
        assert_eq!(next, token.successor(&key));
        assert_ne!(next, token.successor(&other));
        assert_ne!(next, token);
        assert!(RefreshToken::parse(next.as_str()).is_some());
        assert_eq!(token.hash().len(), 64);
        assert_ne!(token.hash(), next.hash());
    }
}
