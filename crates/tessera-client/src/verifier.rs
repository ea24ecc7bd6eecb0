//! [`Verifier`]: everything a service needs to trust a request from Tessera's users and
//! services. Built once at start ([`Verifier::builder`]), cloned cheaply into every handler.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use serde::Deserialize;
use tessera_token::{
    AccessClaims, Credential, CsrfPolicy, ExtractionPolicy, KeySet, Permission, Validation,
    extract_token, unix_now,
};

use crate::error::{AuthError, SetupError};
use crate::fetch::{self, ClientCredentials};
use crate::introspection::Introspector;
use crate::keys::Keys;
use crate::revocations::Revocations;

/// Verifies tokens for one service: locally against the issuer's keys while following its
/// revocation feed, or by asking the issuer (introspection mode).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    check: Check,
    revocations: Option<Arc<Revocations>>,
    policy: ExtractionPolicy,
    csrf: CsrfPolicy,
}

enum Check {
    Local(Arc<Keys>),
    Introspect(Box<Introspector>),
}

/// Settings for a [`Verifier`]. (No `Debug`: it holds the client secret.)
pub struct Builder {
    issuer: String,
    audience: String,
    credentials: Option<(String, String)>,
    introspection: bool,
    follow_revocations: bool,
    http: Option<reqwest::Client>,
    leeway_secs: i64,
    jwks_min_refetch: Duration,
    jwks_refresh: Duration,
    cache_capacity: usize,
    introspection_cache: Duration,
    policy: ExtractionPolicy,
    csrf: CsrfPolicy,
}

/// The parts of the issuer's metadata (RFC 8414) a verifier uses.
#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
    introspection_endpoint: Option<String>,
    revocations_endpoint: Option<String>,
    revocations_stream_endpoint: Option<String>,
}

impl Verifier {
    /// Settings for tokens issued by `issuer` (Tessera's public URL, exactly as in `iss`)
    /// for `audience`.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> Builder {
        Builder {
            issuer: issuer.into(),
            audience: audience.into(),
            credentials: None,
            introspection: false,
            follow_revocations: true,
            http: None,
            leeway_secs: Validation::DEFAULT_LEEWAY_SECS,
            jwks_min_refetch: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(300),
            cache_capacity: 100_000,
            introspection_cache: Duration::from_secs(5),
            policy: ExtractionPolicy::default(),
            csrf: Builder::default_csrf(),
        }
    }

    /// A verifier trusting exactly `keys` and remembering up to `cache_capacity` verified
    /// tokens, with no network at all: no key refresh and no revocation feed. For tests,
    /// benchmarks and isolated setups.
    pub fn with_keys(keys: KeySet, validation: Validation, cache_capacity: usize) -> Self {
        Self::from_parts(
            Check::Local(Arc::new(Keys::fixed(keys, validation, cache_capacity))),
            None,
            ExtractionPolicy::default(),
            Builder::default_csrf(),
        )
    }

    fn from_parts(
        check: Check,
        revocations: Option<Arc<Revocations>>,
        policy: ExtractionPolicy,
        csrf: CsrfPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                check,
                revocations,
                policy,
                csrf,
            }),
        }
    }

    /// The claims of `token` if it is valid and not revoked now.
    pub async fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError> {
        let now = unix_now();
        let claims = match &self.inner.check {
            Check::Local(keys) => keys.verify(token, now).await?,
            Check::Introspect(introspector) => introspector.verify(token, now).await?,
        };
        self.check_revocations(&claims)?;
        Ok(claims)
    }

    /// Like [`verify`](Self::verify) without waiting: in local mode a token naming an
    /// unknown key is refused instead of fetching keys; in introspection mode only cached
    /// answers count. The hot path for synchronous callers.
    pub fn verify_cached(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError> {
        let Check::Local(keys) = &self.inner.check else {
            return Err(AuthError::Unavailable);
        };
        let claims = keys.verify_cached(token, unix_now())?;
        self.check_revocations(&claims)?;
        Ok(claims)
    }

    fn check_revocations(&self, claims: &AccessClaims) -> Result<(), AuthError> {
        match &self.inner.revocations {
            Some(feed) if feed.covers(claims) => Err(AuthError::Revoked),
            _ => Ok(()),
        }
    }

    /// Finds the request's token (in Tessera's order: `Authorization: Bearer`, then the
    /// access cookie), checks CSRF for cookie-borne unsafe requests, and verifies it.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Authenticated, AuthError> {
        let credential = extract_token(parts, &self.inner.policy)?.ok_or(AuthError::Missing)?;
        let via_cookie = match &credential {
            Credential::Bearer(_) | Credential::LegacyQuery(_) => false,
            Credential::Cookie(_) => true,
            Credential::Ticket(_) => return Err(AuthError::Ticket),
        };
        if via_cookie && !parts.method.is_safe() {
            self.check_csrf(parts)?;
        }
        let claims = self.verify(credential.value()).await?;
        Ok(Authenticated { claims, via_cookie })
    }

    /// Tessera's CSRF rule ([`CsrfPolicy`], shared with the server): the double submit and an
    /// allowed origin. A service cannot recompute the session binding, which Tessera checks.
    fn check_csrf(&self, parts: &Parts) -> Result<(), AuthError> {
        self.inner
            .csrf
            .check(&parts.headers, None)
            .map_err(|_| AuthError::Csrf)
    }

    /// Whether the revocation feed is followed, connected and caught up. `None` without a
    /// feed (fixed keys, introspection mode, or following switched off). Fit for a readiness
    /// check: while it is `false`, revocations made meanwhile are not known here yet.
    pub fn revocations_live(&self) -> Option<bool> {
        self.inner.revocations.as_ref().map(|feed| feed.is_live())
    }

    /// Seconds since the revocation feed was last heard from (`None` without a feed).
    pub fn revocations_silence_secs(&self) -> Option<i64> {
        self.inner
            .revocations
            .as_ref()
            .map(|feed| feed.silence_secs())
    }

    /// Whether the session behind a redeemed real-time ticket has ended by what the
    /// revocation feed says: the session revoked, or its user or tenant revoked since the
    /// ticket was redeemed (a service closes the socket then; the browser reconnects with a
    /// new ticket if it still may). `None` without a feed to tell. Session expiry is
    /// `session.session_expires_at`.
    pub fn session_ended(&self, session: &crate::RedeemedTicket) -> Option<bool> {
        let feed = self.inner.revocations.as_ref()?;
        let claims = AccessClaims {
            iss: String::new(),
            aud: tessera_token::Audience::one(String::new()),
            sub: session.sub.clone(),
            client_id: String::new(),
            sid: Some(session.sid.clone()),
            tid: session.tid.clone(),
            roles: Vec::new(),
            scope: String::new(),
            amr: Vec::new(),
            auth_time: Some(session.auth_time),
            iat: session.redeemed_at,
            nbf: None,
            exp: session.session_expires_at,
            jti: String::new(),
        };
        Some(feed.covers(&claims))
    }

    /// How many revocations are held (0 without a feed).
    pub fn revocation_count(&self) -> usize {
        self.inner.revocations.as_ref().map_or(0, |feed| feed.len())
    }

    /// Fetches the issuer's keys again now (for example after a rotation announced
    /// out-of-band). Whether the set changed. Local mode only.
    pub async fn refresh_keys(&self) -> bool {
        match &self.inner.check {
            Check::Local(keys) => keys.refetch(true).await,
            Check::Introspect(_) => false,
        }
    }
}

impl Builder {
    fn default_csrf() -> CsrfPolicy {
        CsrfPolicy::default()
    }

    /// This service's client id and secret (a Tessera service account allowed
    /// `tokens:introspect`): needed to follow the revocation feed and for introspection.
    /// Without them, local verification honours revocations only through token expiry.
    pub fn client_credentials(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Some((id.into(), secret.into()));
        self
    }

    /// Asks Tessera about every new token instead of verifying locally (requires client
    /// credentials). Revocations count at once; an unreachable Tessera refuses every token.
    pub fn introspection(mut self) -> Self {
        self.introspection = true;
        self
    }

    /// How long an active introspection answer is reused (default 5 s; never past `exp`).
    pub fn introspection_cache(mut self, ttl: Duration) -> Self {
        self.introspection_cache = ttl;
        self
    }

    /// Whether to follow the revocation feed when credentials are given (default on).
    pub fn follow_revocations(mut self, follow: bool) -> Self {
        self.follow_revocations = follow;
        self
    }

    /// The HTTP client to reach Tessera with (proxies, extra root certificates…).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Least time between two key fetches caused by unknown `kid`s (default 5 s), so tokens
    /// with invented key ids cannot make the service hammer Tessera.
    pub fn jwks_min_refetch(mut self, every: Duration) -> Self {
        self.jwks_min_refetch = every;
        self
    }

    /// How often keys are fetched in the background (default 5 minutes).
    pub fn jwks_refresh(mut self, every: Duration) -> Self {
        self.jwks_refresh = every;
        self
    }

    /// How many verified tokens are remembered (default 100 000).
    pub fn token_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Names of Tessera's access cookie and real-time ticket parameter, if configured other
    /// than the defaults.
    pub fn extraction(mut self, policy: ExtractionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Names of the CSRF cookie and header (defaults `csrf_token`, `X-CSRF-Token`).
    pub fn csrf_names(mut self, cookie: impl Into<String>, header: &str) -> Self {
        self.csrf.cookie_name = cookie.into();
        self.csrf.header_name = header.to_ascii_lowercase();
        self
    }

    /// Origins allowed to send cookie-authenticated unsafe requests (`https://app.example`).
    /// Empty (the default): only the origin of the request's own `Host`. Either way the
    /// request must name its origin (`Origin`, or `Referer` when a browser sent none).
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = String>) -> Self {
        self.csrf.allowed_origins = origins.into_iter().collect();
        self
    }

    /// Discovers the issuer, reads its keys and, when following the feed, every revocation
    /// still in force, then keeps all of it current in the background. Fails rather than
    /// start a verifier that would accept what it should not.
    pub async fn build(self) -> Result<Verifier, SetupError> {
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(SetupError::Config(
                "the issuer and the audience are required".to_owned(),
            ));
        }
        if self.introspection && self.credentials.is_none() {
            return Err(SetupError::Config(
                "introspection needs client credentials".to_owned(),
            ));
        }
        let http = match self.http.clone() {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(fetch::REQUEST_TIMEOUT)
                .build()
                .map_err(|e| SetupError::Config(e.to_string()))?,
        };
        let base = self.issuer.trim_end_matches('/');
        let metadata_url = format!("{base}/.well-known/oauth-authorization-server");
        let metadata: Metadata = fetch::get_json(&http, &metadata_url, None)
            .await
            .map_err(SetupError::Discovery)?;
        if metadata.issuer != self.issuer {
            return Err(SetupError::Discovery(format!(
                "the metadata names issuer `{}`, not `{}`",
                metadata.issuer, self.issuer
            )));
        }
        let mut validation = Validation::new(self.issuer.clone(), self.audience.clone());
        validation.leeway_secs = self.leeway_secs;
        let credentials = self
            .credentials
            .as_ref()
            .map(|(id, secret)| ClientCredentials::new(id, secret));

        let check = match (&credentials, self.introspection) {
            (Some(credentials), true) => {
                let endpoint = metadata
                    .introspection_endpoint
                    .clone()
                    .unwrap_or_else(|| format!("{base}/oauth2/introspect"));
                Check::Introspect(Box::new(Introspector::new(
                    http.clone(),
                    endpoint,
                    credentials.clone(),
                    validation.clone(),
                    self.introspection_cache,
                )))
            }
            _ => {
                let keys = Keys::remote(
                    http.clone(),
                    metadata.jwks_uri.clone(),
                    validation.clone(),
                    self.cache_capacity,
                    self.jwks_min_refetch,
                )
                .await
                .map_err(SetupError::Jwks)?;
                let keys = Arc::new(keys);
                keys.spawn_refresher(self.jwks_refresh);
                Check::Local(keys)
            }
        };
        let revocations = match (&check, credentials) {
            (Check::Local(_), Some(credentials)) if self.follow_revocations => {
                let feed = Arc::new(Revocations::new(
                    http,
                    metadata
                        .revocations_endpoint
                        .unwrap_or_else(|| format!("{base}/api/v1/auth/revocations")),
                    metadata
                        .revocations_stream_endpoint
                        .unwrap_or_else(|| format!("{base}/api/v1/auth/revocations/stream")),
                    credentials,
                    self.leeway_secs,
                ));
                feed.catch_up().await.map_err(SetupError::Feed)?;
                feed.spawn_follower();
                Some(feed)
            }
            _ => None,
        };
        Ok(Verifier::from_parts(
            check,
            revocations,
            self.policy,
            self.csrf,
        ))
    }
}

/// An authenticated caller: the verified claims, and whether they came from a cookie.
#[derive(Debug, Clone)]
pub struct Authenticated {
    claims: Arc<AccessClaims>,
    via_cookie: bool,
}

impl Authenticated {
    /// The verified claims.
    pub fn claims(&self) -> &AccessClaims {
        &self.claims
    }

    /// The user id, or the client id of a service token.
    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// The tenant id.
    pub fn tenant(&self) -> &str {
        &self.claims.tid
    }

    /// The session id (`None` for service tokens).
    pub fn session(&self) -> Option<&str> {
        self.claims.sid.as_deref()
    }

    /// Whether the token came from the access cookie (a browser) rather than a header.
    pub fn via_cookie(&self) -> bool {
        self.via_cookie
    }

    /// Whether the caller holds role `name`.
    pub fn has_role(&self, name: &str) -> bool {
        self.claims.roles.iter().any(|r| r == name)
    }

    /// Whether the token's permissions (`scope`) allow `wanted` (`resource:action`). An
    /// invalid permission is allowed to no one.
    pub fn allows(&self, wanted: &str) -> bool {
        Permission::parse(wanted)
            .is_ok_and(|wanted| Permission::allowed_by_scope(&self.claims.scope, &wanted))
    }

    /// Succeeds when [`allows`](Self::allows) does; otherwise the 403 to answer.
    pub fn require(&self, wanted: &str) -> Result<(), AuthError> {
        if self.allows(wanted) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(wanted.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_token::{Audience, Signer};

    const ISSUER: &str = "https://auth.example";

    fn setup(scope: &str) -> (Verifier, String) {
        let signer = Signer::hs256(Some("k".into()), &[7u8; 32]).expect("signer");
        let now = unix_now();
        let claims = AccessClaims {
            iss: ISSUER.into(),
            aud: Audience::one("platform"),
            sub: "u1".into(),
            client_id: "tessera".into(),
            sid: Some("s1".into()),
            tid: "t1".into(),
            roles: vec!["user".into()],
            scope: scope.into(),
            amr: vec![],
            auth_time: None,
            iat: now,
            nbf: None,
            exp: now + 600,
            jti: "j1".into(),
        };
        let token = signer.sign(&claims).expect("token");
        let verifier = Verifier::with_keys(
            KeySet::new(vec![signer.verifying_key()]),
            Validation::new(ISSUER, "platform"),
            16,
        );
        (verifier, token)
    }

    fn parts(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().method(method).uri("/reports");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[tokio::test]
    async fn cookie_requests_that_change_things_need_the_csrf_token() {
        let (verifier, token) = setup("");
        let cookie = format!("access_token={token}; csrf_token=abc");
        let cookie = cookie.as_str();
        let bearer = format!("Bearer {token}");
        let cases = [
            ("GET", vec![("cookie", cookie)], Ok(())),
            ("POST", vec![("cookie", cookie)], Err(AuthError::Csrf)),
            (
                "POST",
                vec![("cookie", cookie), ("x-csrf-token", "abd")],
                Err(AuthError::Csrf),
            ),
            (
                "POST",
                vec![
                    ("cookie", cookie),
                    ("x-csrf-token", "abc"),
                    ("x-csrf-token", "abc"),
                ],
                Err(AuthError::Csrf),
            ),
            (
                "POST",
                vec![("cookie", cookie), ("x-csrf-token", "abc")],
                Err(AuthError::Csrf),
            ),
            (
                "POST",
                vec![
                    ("cookie", cookie),
                    ("x-csrf-token", "abc"),
                    ("host", "reports.example"),
                    ("origin", "https://reports.example"),
                ],
                Ok(()),
            ),
            ("POST", vec![("authorization", bearer.as_str())], Ok(())),
        ];
        for (method, headers, expected) in cases {
            let outcome = verifier.authenticate(&parts(method, &headers)).await;
            assert_eq!(outcome.map(|_| ()), expected, "{method} {headers:?}");
        }
    }

    #[tokio::test]
    async fn listed_origins_are_enforced_on_cookie_requests() {
        let (verifier, token) = setup("");
        let mut inner = Arc::try_unwrap(verifier.inner).ok().expect("sole owner");
        inner.csrf.allowed_origins = vec!["https://app.example".into()];
        let verifier = Verifier {
            inner: Arc::new(inner),
        };
        let cookie = format!("access_token={token}; csrf_token=abc");
        let base = [("cookie", cookie.as_str()), ("x-csrf-token", "abc")];
        let with = |origin: Option<&'static str>| {
            let mut headers = base.to_vec();
            headers.extend(origin.map(|o| ("origin", o)));
            parts("DELETE", &headers)
        };
        assert!(
            verifier
                .authenticate(&with(Some("https://app.example")))
                .await
                .is_ok()
        );
        for origin in [None, Some("https://evil.example")] {
            assert_eq!(
                verifier.authenticate(&with(origin)).await.map(|_| ()),
                Err(AuthError::Csrf)
            );
        }
    }

    #[tokio::test]
    async fn credentials_are_read_in_tesseras_order_and_tickets_refused() {
        let (verifier, token) = setup("reports:* *:read");
        let bearer = format!("Bearer {token}");
        let good_cookie = format!("access_token={token}");
        // A broken header is not skipped in favour of a good cookie.
        let broken = parts(
            "GET",
            &[("authorization", "Basic x"), ("cookie", &good_cookie)],
        );
        assert!(matches!(
            verifier.authenticate(&broken).await,
            Err(AuthError::Extract(_))
        ));
        assert_eq!(
            verifier.authenticate(&parts("GET", &[])).await.map(|_| ()),
            Err(AuthError::Missing)
        );
        let caller = verifier
            .authenticate(&parts("GET", &[("authorization", &bearer)]))
            .await
            .expect("valid");
        assert!(!caller.via_cookie());
        assert!(caller.allows("reports:write") && caller.allows("users:read"));
        assert!(!caller.allows("users:write") && !caller.allows("not a permission"));
        assert_eq!(
            caller.require("users:write"),
            Err(AuthError::Forbidden("users:write".into()))
        );
        let ticket = http::Request::builder()
            .uri("/events?ticket=abc")
            .header("upgrade", "websocket")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        assert_eq!(
            verifier.authenticate(&ticket).await.map(|_| ()),
            Err(AuthError::Ticket)
        );
    }
}
