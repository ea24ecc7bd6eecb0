//! The issuer's public keys: fetched from its JWKS, refreshed in the background, and fetched
//! again at once (at most every few seconds) when a token names a key not seen yet, which is
//! how a rotation reaches a service without a restart.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tessera_token::{AccessClaims, Jwks, KeySet, TokenCache, Validation, VerifyError};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::fetch;

/// Where keys come from.
pub(crate) enum Source {
    /// Fetched from this JWKS URL.
    Remote {
        http: reqwest::Client,
        jwks_uri: String,
    },
    /// Given once (tests, benchmarks, air-gapped setups).
    Fixed,
}

/// The trusted keys and the tokens verified with them.
pub(crate) struct Keys {
    source: Source,
    validation: Validation,
    cache_capacity: usize,
    min_refetch: Duration,
    current: RwLock<Arc<TokenCache>>,
    /// When keys were last fetched; held while fetching so concurrent misses fetch once.
    last_fetch: Mutex<Option<Instant>>,
}

impl Keys {
    /// Keys fetched from `jwks_uri` now.
    pub async fn remote(
        http: reqwest::Client,
        jwks_uri: String,
        validation: Validation,
        cache_capacity: usize,
        min_refetch: Duration,
    ) -> Result<Self, String> {
        let jwks = fetch_jwks(&http, &jwks_uri).await?;
        let keys = Self::new(
            Source::Remote { http, jwks_uri },
            KeySet::from_jwks(&jwks),
            validation,
            cache_capacity,
            min_refetch,
        );
        *keys.last_fetch.lock().await = Some(Instant::now());
        Ok(keys)
    }

    /// A fixed key set.
    pub fn fixed(keys: KeySet, validation: Validation, cache_capacity: usize) -> Self {
        Self::new(
            Source::Fixed,
            keys,
            validation,
            cache_capacity,
            Duration::MAX,
        )
    }

    fn new(
        source: Source,
        keys: KeySet,
        validation: Validation,
        cache_capacity: usize,
        min_refetch: Duration,
    ) -> Self {
        let cache = TokenCache::new(
            tessera_token::Verifier::new(keys, validation.clone()),
            cache_capacity,
        );
        Self {
            source,
            validation,
            cache_capacity,
            min_refetch,
            current: RwLock::new(Arc::new(cache)),
            last_fetch: Mutex::new(None),
        }
    }

    /// Verifies `token` with the keys known now.
    pub fn verify_cached(&self, token: &str, now: i64) -> Result<Arc<AccessClaims>, VerifyError> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .verify(token, now)
    }

    /// Verifies `token`, fetching the keys again first if it names an unknown key and the
    /// last fetch is old enough.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Arc<AccessClaims>, VerifyError> {
        match self.verify_cached(token, now) {
            Err(VerifyError::UnknownKey) if self.refetch(false).await => {
                self.verify_cached(token, now)
            }
            other => other,
        }
    }

    /// Fetches the key set again unless one was fetched within the minimum interval (or
    /// `force`). Whether a new set was installed.
    pub async fn refetch(&self, force: bool) -> bool {
        let Source::Remote { http, jwks_uri } = &self.source else {
            return false;
        };
        let mut last = self.last_fetch.lock().await;
        if !force && last.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        match fetch_jwks(http, jwks_uri).await {
            Ok(jwks) => {
                let keys = KeySet::from_jwks(&jwks);
                if keys.is_empty() {
                    tracing::warn!("the issuer's JWKS holds no usable key; keeping the old set");
                    return false;
                }
                let same = {
                    let current = self.current.read().unwrap_or_else(|p| p.into_inner());
                    current.verifier().keys().to_jwks() == keys.to_jwks()
                };
                if !same {
                    let cache = TokenCache::new(
                        tessera_token::Verifier::new(keys, self.validation.clone()),
                        self.cache_capacity,
                    );
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cache);
                    tracing::info!("installed the issuer's new key set");
                }
                !same
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the issuer's JWKS failed; keeping the old set");
                false
            }
        }
    }

    /// Refreshes the keys every `every` until the keys are dropped.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) {
        if matches!(self.source, Source::Fixed) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(keys) = weak.upgrade() else { return };
                keys.refetch(true).await;
            }
        });
    }
}

async fn fetch_jwks(http: &reqwest::Client, jwks_uri: &str) -> Result<Jwks, String> {
    fetch::get_json(http, jwks_uri, None).await
}
