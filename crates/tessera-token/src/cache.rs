//! A cache of verified tokens. Verifying a signature costs tens of microseconds; a service
//! sees the same token many times during its few minutes of life, so the verdict is kept,
//! keyed by the token's exact text. Only tokens that passed every rule are stored, so the
//! cache cannot be filled with garbage, and the time rules are applied again on every hit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{AccessClaims, Verifier, VerifyError};

/// A [`Verifier`] and the tokens it accepted. The two belong together: a verdict reached
/// with one key set, issuer or audience says nothing about another.
pub struct TokenCache {
    verifier: Verifier,
    entries: RwLock<HashMap<Box<str>, Arc<AccessClaims>>>,
    capacity: usize,
}

impl TokenCache {
    /// `verifier` remembering at most `capacity` tokens. When full, expired tokens are
    /// dropped and, unless that frees a quarter of the room, everything is (the next
    /// presentation verifies again), so a full cache never costs a scan per insert.
    pub fn new(verifier: Verifier, capacity: usize) -> Self {
        Self {
            verifier,
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Verifies `token` at `now`, from the cache when it was verified before.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<AccessClaims>, VerifyError> {
        let verifier = &self.verifier;
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(claims) = cached {
            verifier.check_time(&claims, now)?;
            return Ok(claims);
        }
        let claims = Arc::new(verifier.verify_at(token, now)?);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, c| verifier.check_time(c, now).is_ok());
            if entries.len() > self.capacity / 4 * 3 {
                entries.clear();
            }
        }
        entries.insert(token.into(), Arc::clone(&claims));
        Ok(claims)
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Audience, KeySet, Signer, Validation, Verifier};

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://auth.example".into(),
            aud: Audience::one("platform"),
            sub: "u1".into(),
            client_id: "tessera".into(),
            sid: Some("s1".into()),
            tid: "t1".into(),
            roles: vec![],
            scope: String::new(),
            amr: vec![],
            auth_time: None,
            iat: 1_000,
            nbf: None,
            exp,
            jti: "j".into(),
        }
    }

    fn setup() -> (Signer, TokenCache) {
        let signer = Signer::hs256(Some("k".into()), &[7u8; 32]).expect("signer");
        let mut validation = Validation::new("https://auth.example", "platform");
        validation.leeway_secs = 0;
        let verifier = Verifier::new(KeySet::new(vec![signer.verifying_key()]), validation);
        (signer, TokenCache::new(verifier, 2))
    }

    #[test]
    fn a_cached_token_is_still_refused_once_expired() {
        let (signer, cache) = setup();
        let token = signer.sign(&claims(2_000)).expect("token");
        assert!(cache.verify(&token, 1_500).is_ok());
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.verify(&token, 2_001).map(|_| ()),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn only_verified_tokens_are_remembered_and_near_misses_are_not_hits() {
        let (signer, cache) = setup();
        let token = signer.sign(&claims(2_000)).expect("token");
        cache.verify(&token, 1_500).expect("valid");
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(cache.verify(&tampered, 1_500).is_err());
        assert!(cache.verify("garbage", 1_500).is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_makes_room() {
        let (signer, cache) = setup();
        for exp in [1_600, 2_000, 2_001] {
            let token = signer.sign(&claims(exp)).expect("token");
            cache.verify(&token, 1_500).expect("valid");
        }
        assert!(cache.len() <= 2);
    }
}
