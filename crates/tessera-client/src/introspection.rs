//! Introspection mode: each token is checked by Tessera (RFC 7662), so a revocation counts
//! at once everywhere, at the price of a call per new token. Active answers are remembered
//! briefly. When Tessera cannot answer, a circuit breaker stops asking for a while, and every
//! token is refused meanwhile: the mode fails closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tessera_token::{AccessClaims, MAX_TOKEN_BYTES, Validation, VerifyError};
use tokio::time::Instant;

use crate::error::AuthError;
use crate::fetch::{self, ClientCredentials};

/// Consecutive failures that open the circuit.
const FAILURES_TO_OPEN: u32 = 5;

/// How long an open circuit refuses before one trial call.
const OPEN_FOR: Duration = Duration::from_secs(10);

/// Most answers remembered.
const CACHE_CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    /// When the trial call of a half-open circuit went out; others are refused until it
    /// returns, or until it is overdue (its caller may have given up on it).
    trial: Option<Instant>,
}

/// An active answer and until when (Unix seconds) it is reused.
type Remembered = (Arc<AccessClaims>, i64);

/// Asks Tessera about tokens.
pub(crate) struct Introspector {
    http: reqwest::Client,
    endpoint: String,
    credentials: ClientCredentials,
    validation: Validation,
    ttl: i64,
    cache: RwLock<HashMap<Box<str>, Remembered>>,
    breaker: Mutex<Breaker>,
}

impl Introspector {
    pub fn new(
        http: reqwest::Client,
        endpoint: String,
        credentials: ClientCredentials,
        validation: Validation,
        ttl: Duration,
    ) -> Self {
        Self {
            http,
            endpoint,
            credentials,
            validation,
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            cache: RwLock::new(HashMap::new()),
            breaker: Mutex::new(Breaker::default()),
        }
    }

    /// The token's claims if Tessera says it is active now.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Arc<AccessClaims>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(VerifyError::TooLarge));
        }
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some((claims, until)) = cached
            && now < until
            && now < claims.exp
        {
            return Ok(claims);
        }
        self.admit()?;
        let outcome = self.ask(token).await;
        self.record(outcome.is_ok());
        let Some(claims) = outcome? else {
            return Err(AuthError::Inactive);
        };
        // Tessera checked its own rules; these are this service's.
        if claims.iss != self.validation.issuer {
            return Err(AuthError::Invalid(VerifyError::WrongIssuer));
        }
        if !claims.aud.contains(&self.validation.audience) {
            return Err(AuthError::Invalid(VerifyError::WrongAudience));
        }
        let claims = Arc::new(claims);
        let until = now.saturating_add(self.ttl).min(claims.exp);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CACHE_CAPACITY / 4 * 3 {
                cache.clear();
            }
        }
        cache.insert(token.into(), (Arc::clone(&claims), until));
        Ok(claims)
    }

    /// Refuses while the circuit is open; lets one trial through once it may close.
    fn admit(&self) -> Result<(), AuthError> {
        let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let trial_out = breaker
            .trial
            .is_some_and(|sent| now.duration_since(sent) < fetch::REQUEST_TIMEOUT);
        match breaker.open_until {
            None => Ok(()),
            Some(until) if now >= until && !trial_out => {
                breaker.trial = Some(now);
                Ok(())
            }
            Some(_) => Err(AuthError::Unavailable),
        }
    }

    fn record(&self, answered: bool) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        breaker.trial = None;
        if answered {
            breaker.failures = 0;
            breaker.open_until = None;
        } else {
            breaker.failures = breaker.failures.saturating_add(1);
            if breaker.failures >= FAILURES_TO_OPEN || breaker.open_until.is_some() {
                breaker.open_until = Some(Instant::now() + OPEN_FOR);
                tracing::warn!("introspection failing; refusing tokens for {OPEN_FOR:?}");
            }
        }
    }

    /// Tessera's answer: `Some(claims)` when active, `None` when not, an error when it
    /// could not answer.
    async fn ask(&self, token: &str) -> Result<Option<AccessClaims>, AuthError> {
        let form = format!("token={}", fetch::form_component(token));
        let response = self
            .http
            .post(&self.endpoint)
            .timeout(fetch::REQUEST_TIMEOUT)
            .header(http::header::AUTHORIZATION, self.credentials.header())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "introspection request failed");
                AuthError::Unavailable
            })?;
        if response.status() != reqwest::StatusCode::OK {
            tracing::warn!(status = %response.status(), "introspection refused");
            return Err(AuthError::Unavailable);
        }
        let bytes = fetch::body(response).await.map_err(|e| {
            tracing::warn!(error = %e, "introspection answer unreadable");
            AuthError::Unavailable
        })?;
        let unreadable = |e: serde_json::Error| {
            tracing::warn!(error = %e, "introspection answer unreadable");
            AuthError::Unavailable
        };
        let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(unreadable)?;
        if answer.get("active") != Some(&serde_json::Value::Bool(true)) {
            return Ok(None);
        }
        serde_json::from_value(answer).map(Some).map_err(unreadable)
    }
}
