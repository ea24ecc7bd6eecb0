//! Signing keys: which key signs now, which public keys are published, and the JWKS endpoint.
//!
//! Keys live in the database (private parts sealed with the master key), so every instance
//! and the CLI see the same set. Each instance keeps the current schedule in memory and
//! refreshes it every few seconds, and exactly at the next activation or unpublication, so a
//! rotation by `tessera keys rotate` or another instance is picked up without a restart.

pub mod routes;
pub mod store;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::HeaderValue;
use tessera_token::{
    AccessClaims, Algorithm, Audience, Jwks, KeySet, Signer, TokenCache, Validation, Verifier,
    VerifyError, unix_now,
};
use tokio::sync::Notify;

use crate::bus::changes::{Change, Changes};
use crate::config::{Config, SigningAlgorithm};
use crate::db::Db;
use crate::health::Check;
use crate::jobs::Jobs;
use crate::master::{self, Generate, MasterKey};
use store::KeyRow;

/// Longest time a rotation made elsewhere stays unnoticed.
const REFRESH_EVERY_SECS: i64 = 10;

/// Everything derived from the key schedule at one moment, swapped as a whole.
pub struct Published {
    /// Signs new access tokens.
    pub signer: Arc<Signer>,
    /// The JWKS document, serialized once.
    pub jwks_body: Arc<[u8]>,
    /// Its strong ETag.
    pub jwks_etag: HeaderValue,
    /// Algorithms of the published keys (or HS256), for the metadata document.
    pub algorithms: Vec<&'static str>,
    /// Trusts exactly the published keys, with the configured issuer, audience and leeway,
    /// and remembers the tokens it accepted.
    pub tokens: TokenCache,
    /// When the next published key starts signing, if one is waiting: caches of the JWKS
    /// must expire before then.
    pub next_activation: Option<i64>,
    next_change: Option<i64>,
}

/// Verified access tokens remembered per key set; one entry is a few hundred bytes.
const TOKEN_CACHE_CAPACITY: usize = 50_000;

impl Published {
    /// Verifies an access token now, from the cache when it was seen before.
    pub fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, VerifyError> {
        self.tokens.verify(token, unix_now())
    }

    /// The verifier of the published keys.
    pub fn verifier(&self) -> &Verifier {
        self.tokens.verifier()
    }

    /// Whether `other` publishes the same keys, signs with the same key and changes at the
    /// same moment, so swapping it in would change nothing but empty the token cache.
    fn same_as(&self, other: &Self) -> bool {
        self.jwks_etag == other.jwks_etag
            && Arc::ptr_eq(&self.signer, &other.signer)
            && self.next_change == other.next_change
    }
}

enum Mode {
    /// Keys from the database, sealed with the master key.
    Stored(Box<MasterKey>),
    /// One shared secret from the config; nothing published.
    Hs256,
}

/// The signing-key service of one instance.
pub struct Keys {
    mode: Mode,
    config: Config,
    current: RwLock<Arc<Published>>,
    /// The key rows last read, so the schedule still advances (a retired key stops signing
    /// on time) while the database cannot be read.
    rows: RwLock<Vec<KeyRow>>,
    /// Why the last refresh failed, for `/readyz`.
    refresh_error: RwLock<Option<String>>,
    /// Woken when the keys changed (a rotation by any instance or the CLI).
    changed: Notify,
}

impl Keys {
    /// Loads the schedule, creating the first signing key when there is none (or sets up the
    /// HS256 legacy mode).
    pub async fn start(config: &Config, db: &Db) -> anyhow::Result<Arc<Self>> {
        let mut loaded = Vec::new();
        let (mode, published) = if config.token.algorithm == SigningAlgorithm::HS256 {
            tracing::warn!(
                "token.algorithm = HS256: every service that verifies tokens must hold the same \
                 secret, any of them can mint tokens, and the JWKS publishes no key. Prefer \
                 EdDSA, which needs no shared secret."
            );
            (Mode::Hs256, hs256_published(config)?)
        } else {
            let master = MasterKey::load(config, Generate::IfMissing)?;
            let mut rows = store::list(db).await?;
            if rows.is_empty() {
                let alg = config.token.algorithm.into();
                let row = store::rotate(db, &master, alg, unix_now(), 0).await?;
                tracing::info!(kid = %row.kid, %alg, "created the first signing key");
                rows = store::list(db).await?;
            }
            let published = stored_published(config, &master, &rows, unix_now(), None)?;
            let configured: Algorithm = config.token.algorithm.into();
            if published.signer.algorithm() != configured {
                tracing::warn!(
                    active = %published.signer.algorithm(),
                    %configured,
                    "the active signing key is not of token.algorithm; `tessera keys rotate` switches"
                );
            }
            loaded = rows;
            (Mode::Stored(Box::new(master)), published)
        };
        Ok(Arc::new(Self {
            mode,
            config: config.clone(),
            current: RwLock::new(Arc::new(published)),
            rows: RwLock::new(loaded),
            refresh_error: RwLock::new(None),
            changed: Notify::new(),
        }))
    }

    /// The schedule in force.
    pub fn current(&self) -> Arc<Published> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Re-reads the keys from the database as of `now`.
    pub async fn refresh_at(&self, db: &Db, now: i64) -> anyhow::Result<()> {
        let Mode::Stored(master) = &self.mode else {
            return Ok(());
        };
        let previous = self.current();
        let (rows, read_error) = match store::list(db).await {
            Ok(rows) => {
                *self.rows.write().unwrap_or_else(|p| p.into_inner()) = rows.clone();
                (rows, None)
            }
            // Keep following the schedule last read: it already says when each key stops
            // signing and leaves the JWKS.
            Err(e) => (
                self.rows.read().unwrap_or_else(|p| p.into_inner()).clone(),
                Some(e),
            ),
        };
        let outcome = stored_published(&self.config, master, &rows, now, Some(&previous.signer))
            .and_then(|published| match read_error {
                None => Ok(published),
                Some(e) => {
                    self.swap(published);
                    Err(e.context("reading signing keys failed; following the last schedule read"))
                }
            });
        let mut error = self
            .refresh_error
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(published) => {
                self.swap(published);
                *error = None;
                Ok(())
            }
            Err(e) => {
                *error = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Puts `published` in force unless it changes nothing (keeping the token cache warm).
    fn swap(&self, published: Published) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if !current.same_as(&published) {
            *current = Arc::new(published);
        }
    }

    /// Readiness: a signer is loaded and the last refresh worked.
    pub fn health(&self) -> Check {
        match &*self.refresh_error.read().unwrap_or_else(|p| p.into_inner()) {
            None => Check::ok(
                "keys",
                format!("signing with {}", describe(&self.current().signer)),
            ),
            Some(e) => Check::failed("keys", format!("refreshing signing keys failed: {e}")),
        }
    }

    /// Keeps the schedule current until shutdown: at each scheduled change, when `changes`
    /// says the keys changed (a rotation anywhere), and every [`REFRESH_EVERY_SECS`].
    pub fn spawn_refresher(self: &Arc<Self>, jobs: &Jobs, db: Db, changes: &Changes) {
        if matches!(self.mode, Mode::Hs256) {
            return;
        }
        changes.follow(Arc::downgrade(self), |keys: &Self, change| {
            if matches!(change, None | Some(Change::Keys)) {
                keys.changed.notify_one();
            }
        });
        let keys = Arc::clone(self);
        jobs.spawn(async move {
            loop {
                let now = unix_now();
                let wait = keys.current().next_change.map_or(REFRESH_EVERY_SECS, |t| {
                    (t - now).clamp(0, REFRESH_EVERY_SECS)
                });
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())) => {}
                    () = keys.changed.notified() => {}
                }
                if let Err(e) = keys.refresh_at(&db, unix_now()).await {
                    tracing::error!(error = %format!("{e:#}"), "refreshing signing keys failed");
                }
            }
        });
    }
}

/// What one access token grants, beyond what every token says.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The user or service account.
    pub sub: String,
    /// The OAuth client it was issued to.
    pub client_id: String,
    /// The session, for a user's token.
    pub sid: Option<String>,
    /// The tenant.
    pub tid: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Space-separated permissions.
    pub scope: String,
    /// How the user authenticated.
    pub amr: Vec<String>,
    /// When the user authenticated.
    pub auth_time: Option<i64>,
    /// The latest the token may expire (its session's end), if anything bounds it.
    pub expires_by: Option<i64>,
}

/// The claims of an access token for `grant`, issued at `now` for the configured lifetime,
/// never past `grant.expires_by`: every access token is built here.
pub fn access_claims(config: &Config, grant: Grant, now: i64) -> AccessClaims {
    let ttl = i64::try_from(config.token.access_ttl_secs).unwrap_or(600);
    let exp = now.saturating_add(ttl);
    AccessClaims {
        iss: config.issuer(),
        aud: Audience::one(config.token.audience.clone()),
        sub: grant.sub,
        client_id: grant.client_id,
        sid: grant.sid,
        tid: grant.tid,
        roles: grant.roles,
        scope: grant.scope,
        amr: grant.amr,
        auth_time: grant.auth_time,
        iat: now,
        nbf: Some(now),
        // Never beyond what it stands for.
        exp: grant.expires_by.map_or(exp, |end| exp.min(end)),
        jti: uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// How long after its retirement a key's tokens can still be accepted somewhere: the
/// access-token lifetime, the leeway, and the time another instance may take to notice the
/// retirement and stop signing with it.
pub fn max_token_lifetime(config: &Config) -> i64 {
    let token = &config.token;
    i64::try_from(token.access_ttl_secs.saturating_add(token.leeway_secs))
        .unwrap_or(i64::MAX)
        .saturating_add(REFRESH_EVERY_SECS)
}

fn validation(config: &Config) -> Validation {
    Validation {
        issuer: config.issuer(),
        audience: config.token.audience.clone(),
        leeway_secs: i64::try_from(config.token.leeway_secs).unwrap_or(0),
    }
}

fn describe(signer: &Signer) -> String {
    match signer.kid() {
        Some(kid) => format!("{} key {kid}", signer.algorithm()),
        None => signer.algorithm().to_string(),
    }
}

fn hs256_published(config: &Config) -> anyhow::Result<Published> {
    let secret = config
        .token
        .hs256_secret_bytes()
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    let signer = Signer::hs256(None, secret.expose().as_bytes())?;
    let keys = KeySet::new(vec![signer.verifying_key()]);
    Ok(Published {
        signer: Arc::new(signer),
        jwks_body: serde_json::to_vec(&Jwks::default())?.into(),
        jwks_etag: etag_of(b"{\"keys\":[]}"),
        algorithms: vec![Algorithm::HS256.as_str()],
        tokens: TokenCache::new(
            Verifier::new(keys, validation(config)),
            TOKEN_CACHE_CAPACITY,
        ),
        next_activation: None,
        next_change: None,
    })
}

fn stored_published(
    config: &Config,
    master: &MasterKey,
    rows: &[KeyRow],
    now: i64,
    previous: Option<&Arc<Signer>>,
) -> anyhow::Result<Published> {
    let plan = store::schedule(rows, now, max_token_lifetime(config));
    let row = plan
        .signer
        .context("no signing key is active yet; `tessera keys rotate` creates one")?;
    // Unsealing costs little, but there is no reason to do it on every refresh.
    let signer = match previous {
        Some(signer) if signer.kid() == Some(row.kid.as_str()) => Arc::clone(signer),
        _ => Arc::new(row.signer(master)?),
    };
    // Only keys whose private part the master key opens, and whose stored public key is that
    // private key's, are published: a row written by someone without the master key is never
    // trusted.
    let mut published = Vec::with_capacity(plan.published.len());
    for row in &plan.published {
        match bound_public_key(master, row) {
            Ok(()) => published.push(*row),
            Err(e) => {
                tracing::error!(kid = %row.kid, error = %format!("{e:#}"), "not publishing a signing key")
            }
        }
    }
    let jwks = Jwks {
        keys: published.iter().map(|r| r.public_jwk.clone()).collect(),
    };
    let next_activation = published
        .iter()
        .map(|r| r.activated_at)
        .filter(|t| *t > now)
        .min();
    let body = serde_json::to_vec(&jwks)?;
    let mut algorithms: Vec<&'static str> = published.iter().map(|r| r.alg.as_str()).collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    Ok(Published {
        signer,
        jwks_etag: etag_of(&body),
        jwks_body: body.into(),
        algorithms,
        // Built from the published document, exactly as an outside verifier would.
        tokens: TokenCache::new(
            Verifier::new(KeySet::from_jwks(&jwks), validation(config)),
            TOKEN_CACHE_CAPACITY,
        ),
        next_activation,
        next_change: plan.next_change,
    })
}

/// Checks that `row`'s public JWK is the public half of its sealed private key, under its kid.
fn bound_public_key(master: &MasterKey, row: &KeyRow) -> anyhow::Result<()> {
    let derived = row
        .signer(master)?
        .public_jwk()
        .context("the key has no public JWK")?;
    let kid_ok = derived.thumbprint().as_deref() == Some(row.kid.as_str());
    let same = derived.kty == row.public_jwk.kty
        && derived.crv == row.public_jwk.crv
        && derived.x == row.public_jwk.x
        && derived.y == row.public_jwk.y
        && row.public_jwk.kid.as_deref() == Some(row.kid.as_str());
    anyhow::ensure!(
        kid_ok && same,
        "its stored public key is not the public half of its private key"
    );
    Ok(())
}

/// A strong ETag: a truncated SHA-256 of the body.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    use base64::Engine;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16]);
    HeaderValue::from_str(&format!("\"{tag}\"")).expect("base64url is a valid header value")
}

/// `tessera check`: the master key opens the active signing key (or the HS256 secret is
/// usable). Writes nothing.
pub async fn preflight(config: &Config, db: &Db) -> Check {
    if config.token.algorithm == SigningAlgorithm::HS256 {
        return match config.token.hs256_secret_bytes() {
            Ok(_) => Check::ok("keys", "HS256 legacy mode: shared secret configured"),
            Err(p) => Check::failed("keys", p.to_string()),
        };
    }
    let rows = match store::list(db).await {
        Ok(rows) => rows,
        Err(e) => return Check::failed("keys", format!("cannot read signing keys: {e:#}")),
    };
    let master = match MasterKey::load(config, Generate::Never) {
        Ok(master) => master,
        Err(master::MasterKeyError::Missing) if rows.is_empty() => {
            return Check::ok(
                "keys",
                "no signing key yet; `tessera serve` creates the master key and the first key",
            );
        }
        Err(e) => return Check::failed("keys", e.to_string()),
    };
    if rows.is_empty() {
        return Check::ok("keys", "no signing key yet; `tessera serve` creates one");
    }
    match stored_published(config, &master, &rows, unix_now(), None) {
        Ok(published) => Check::ok(
            "keys",
            format!(
                "master key decrypts the active {}",
                describe(&published.signer)
            ),
        ),
        Err(e) => Check::failed("keys", format!("{e:#}")),
    }
}
