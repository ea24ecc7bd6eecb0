//! Password hashing: Argon2id for every new hash, legacy PBKDF2-SHA256 (PHC and Django) and
//! bcrypt verified and upgraded, all on a bounded pool off the async runtime.
//!
//! Hashing is the one deliberately slow thing on a request path. It runs on a pool of its own,
//! one thread per core, and at most `passwords.max_queued_hashes` jobs wait; anything beyond
//! is refused at once with [`PasswordError::Busy`] (503 + `Retry-After`), so a login flood
//! queues and sheds instead of growing without bound. The pool's threads run at the lowest
//! normal OS priority: when hashing and request handling compete for the cores, requests
//! (token validation, `/me`) go first and logins absorb the wait; on an idle machine hashing
//! still gets every core.

mod argon;

use std::sync::{Arc, OnceLock};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordVerifier as _, Version};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::config::PasswordConfig;
use crate::http::ApiError;

/// Longest password accepted, in bytes; longer input is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Highest PBKDF2 iteration count accepted from a stored hash, so one corrupt or hostile row
/// cannot occupy a core for minutes.
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// Why a password operation did not happen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Every hashing slot and queue place is taken: try again shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// Longer than [`MAX_PASSWORD_BYTES`].
    #[error("password longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// Shorter than the configured minimum (new passwords only).
    #[error("password shorter than {0} characters")]
    TooShort(u32),
    /// The hashing job failed unexpectedly.
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the password matched.
    pub ok: bool,
    /// When it matched a legacy or weaker hash: its Argon2id replacement, to store.
    pub upgraded: Option<String>,
}

/// The password service of one instance.
pub struct Passwords {
    argon: Arc<Argon2<'static>>,
    min_length: u32,
    /// The hashing threads' queue.
    jobs: flume::Sender<Job>,
    /// Running plus waiting: beyond this, refuse.
    admitted: Arc<Semaphore>,
    /// A hash of a random password with the configured cost, verified for unknown accounts so
    /// they cost the same time as known ones. Made on first use, on the pool.
    dummy: Arc<OnceLock<String>>,
}

impl Passwords {
    /// A service with the configured Argon2id cost, one worker per core.
    pub fn new(config: &PasswordConfig) -> anyhow::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_workers(config, workers)
    }

    /// A service with an explicit number of hashing threads.
    pub fn with_workers(config: &PasswordConfig, workers: usize) -> anyhow::Result<Self> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid Argon2id parameters in [passwords]: {e}"))?;
        let queue = usize::try_from(config.max_queued_hashes).unwrap_or(usize::MAX);
        Ok(Self {
            argon: Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)),
            min_length: config.min_length,
            jobs: spawn_pool(workers.max(1))?,
            admitted: Arc::new(Semaphore::new(workers.max(1).saturating_add(queue))),
            dummy: Arc::new(OnceLock::new()),
        })
    }

    /// Checks a new password against the policy (length only; no composition rules, as NIST
    /// SP 800-63B advises).
    pub fn check_policy(&self, password: &str) -> Result<(), PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let chars = password.chars().count();
        if chars < usize::try_from(self.min_length).unwrap_or(usize::MAX) {
            return Err(PasswordError::TooShort(self.min_length));
        }
        Ok(())
    }

    /// Hashes a new password with Argon2id (after the policy check).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.check_policy(&password)?;
        let argon = Arc::clone(&self.argon);
        self.run(move || argon_hash(&argon, password.as_bytes()))
            .await?
    }

    /// Checks `password` against `stored`; with `None` (no such account) a dummy hash of the
    /// same cost is checked instead and the answer is always "no".
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let argon = Arc::clone(&self.argon);
        let dummy = Arc::clone(&self.dummy);
        self.run(move || {
            // Every failure costs one verification at the configured cost: an unknown account
            // checks a dummy hash, and so does a wrong password against a cheaper legacy hash,
            // so the answer's timing never tells which accounts exist or were imported.
            let dummy_check = || {
                let dummy = dummy.get_or_init(|| {
                    argon_hash(&argon, uuid::Uuid::new_v4().as_bytes()).unwrap_or_default()
                });
                let _ = verify_stored(&argon, password.as_bytes(), dummy);
            };
            let Some(stored) = stored else {
                dummy_check();
                return Ok(Verified {
                    ok: false,
                    upgraded: None,
                });
            };
            let (ok, needs_upgrade) = verify_stored(&argon, password.as_bytes(), &stored);
            let upgraded = match (ok, needs_upgrade) {
                (true, true) => Some(argon_hash(&argon, password.as_bytes())?),
                (false, true) => {
                    dummy_check();
                    None
                }
                _ => None,
            };
            Ok(Verified { ok, upgraded })
        })
        .await?
    }

    /// Runs a job on the hashing pool once admitted. The admission permit travels with the
    /// job, so a caller that goes away does not free a place that is still hashing.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| PasswordError::Busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let out = job();
                // The place is free before the caller hears back: a hashing thread runs at
                // the lowest priority and may wait long between the two, and a caller's next
                // job must not find its own finished one still holding a place.
                drop(admitted);
                let _ = done.send(out);
            }))
            .map_err(|_| PasswordError::Internal("the hashing pool has stopped".into()))?;
        result
            .await
            .map_err(|_| PasswordError::Internal("a hashing job panicked".into()))
    }
}

/// One unit of work for the hashing pool.
type Job = Box<dyn FnOnce() + Send>;

/// How long a hashing thread keeps its Argon2 memory without a job before giving it back to
/// the system. A flood reuses it; a quiet server returns to its idle footprint soon after.
const KEEP_MEMORY_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

/// Starts `workers` hashing threads; they end when the returned sender is dropped.
fn spawn_pool(workers: usize) -> anyhow::Result<flume::Sender<Job>> {
    let (sender, receiver) = flume::unbounded::<Job>();
    for n in 0..workers {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("tessera-hash-{n}"))
            .spawn(move || {
                lower_priority();
                while let Some(job) = next_job(&receiver) {
                    // A panicking job drops its result sender (the caller gets an error);
                    // the thread lives on for the next one.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
    }
    Ok(sender)
}

/// The next job for a hashing thread, releasing the thread's Argon2 memory when none came for
/// [`KEEP_MEMORY_IDLE`]; `None` once the pool is dropped.
fn next_job(receiver: &flume::Receiver<Job>) -> Option<Job> {
    match receiver.recv_timeout(KEEP_MEMORY_IDLE) {
        Ok(job) => Some(job),
        Err(flume::RecvTimeoutError::Timeout) => {
            argon::release_memory();
            receiver.recv().ok()
        }
        Err(flume::RecvTimeoutError::Disconnected) => None,
    }
}

/// Gives the calling hashing thread the lowest normal priority (nice 19 on Linux): it runs
/// whenever a core would otherwise idle, and yields at once to request handling. It is not
/// starved: a nice-19 thread still gets about 1.5% of a busy core (CFS weight 15 against
/// 1024), so logins keep trickling through even while requests saturate every core.
fn lower_priority() {
    let result = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    if let Err(error) = result {
        tracing::debug!(error = ?error, "could not lower the priority of a hashing thread");
    }
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => ApiError::unavailable(
                "overloaded",
                "too many password checks are waiting; try again in a moment",
                1,
            ),
            PasswordError::TooLong => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "password_too_long",
                format!("a password has at most {MAX_PASSWORD_BYTES} bytes"),
            ),
            PasswordError::TooShort(min) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "password_too_short",
                format!("a password has at least {min} characters"),
            ),
            PasswordError::Internal(e) => ApiError::internal(e),
        }
    }
}

fn argon_hash(argon: &Argon2<'_>, password: &[u8]) -> Result<String, PasswordError> {
    argon::hash(argon, Algorithm::Argon2id, password).map_err(PasswordError::Internal)
}

/// Whether `password` matches `stored`, and whether a match should be re-hashed.
fn verify_stored(argon: &Argon2<'_>, password: &[u8], stored: &str) -> (bool, bool) {
    if stored.starts_with("$argon2") {
        let Ok(hash) = PasswordHash::new(stored) else {
            return (false, false);
        };
        let ok = argon::verify(&hash, password);
        let current = argon.params();
        let same_cost = hash.algorithm.as_str() == "argon2id"
            && Params::try_from(&hash).is_ok_and(|p| {
                p.m_cost() == current.m_cost()
                    && p.t_cost() == current.t_cost()
                    && p.p_cost() == current.p_cost()
            });
        return (ok, !same_cost);
    }
    if stored.starts_with("$pbkdf2-sha256$") {
        let ok = PasswordHash::new(stored).is_ok_and(|hash| {
            let rounds_ok = hash
                .params
                .get_decimal("i")
                .is_some_and(|i| i <= MAX_PBKDF2_ROUNDS);
            rounds_ok
                && pbkdf2::Pbkdf2::SHA256
                    .verify_password(password, &hash)
                    .is_ok()
        });
        return (ok, true);
    }
    if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
        return (verify_django(password, rest), true);
    }
    if ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        return (bcrypt::verify(password, stored).unwrap_or(false), true);
    }
    (false, false)
}

/// Django's `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>` (the prefix already removed).
fn verify_django(password: &[u8], rest: &str) -> bool {
    let mut parts = rest.splitn(3, '$');
    let (Some(rounds), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(rounds) = rounds.parse::<u32>() else {
        return false;
    };
    let Ok(expected) = STANDARD.decode(expected) else {
        return false;
    };
    if rounds == 0 || rounds > MAX_PBKDF2_ROUNDS || expected.is_empty() || expected.len() > 64 {
        return false;
    }
    let mut computed = vec![0u8; expected.len()];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt.as_bytes(), rounds, &mut computed);
    computed.ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap Argon2id parameters so tests stay fast; the production cost is the default.
    fn cheap() -> PasswordConfig {
        PasswordConfig {
            argon2_memory_kib: 8192,
            argon2_iterations: 1,
            ..PasswordConfig::default()
        }
    }

    fn service() -> Passwords {
        Passwords::with_workers(&cheap(), 2).expect("valid parameters")
    }

    #[tokio::test]
    async fn argon2id_hashes_verify_and_are_not_upgraded() {
        let passwords = service();
        let hash = passwords.hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{hash}");
        let good = passwords
            .verify("correct horse".into(), Some(hash.clone()))
            .await;
        assert_eq!(
            good,
            Ok(Verified {
                ok: true,
                upgraded: None
            })
        );
        let bad = passwords.verify("correct horsE".into(), Some(hash)).await;
        assert_eq!(
            bad,
            Ok(Verified {
                ok: false,
                upgraded: None
            })
        );
    }

    #[tokio::test]
    async fn a_hash_with_other_argon2_costs_is_upgraded_on_success() {
        let old = Passwords::with_workers(
            &PasswordConfig {
                argon2_memory_kib: 9000,
                ..cheap()
            },
            1,
        )
        .expect("params")
        .hash("correct horse".into())
        .await
        .expect("hash");
        let verified = service()
            .verify("correct horse".into(), Some(old))
            .await
            .expect("ok");
        assert!(verified.ok);
        assert!(
            verified
                .upgraded
                .is_some_and(|h| h.contains("m=8192,t=1,p=1"))
        );
    }

    #[tokio::test]
    async fn legacy_hashes_verify_and_are_upgraded_to_argon2id() {
        let cases = [
            // RustCrypto's PBKDF2 test vector (i=4096, 40-byte output).
            (
                "passwordPASSWORDpassword",
                "$pbkdf2-sha256$i=4096,l=40$c2FsdFNBTFRzYWx0U0FMVHNhbHRTQUxUc2FsdFNBTFRzYWx0\
                 $NIyJ28vTKy8y2BS4EW6EzysXNH68GAAYHE4qH7jdU+HGNVGMfaxH6Q",
            ),
            // Django's format, computed with Python's hashlib.
            (
                "correct horse",
                "pbkdf2_sha256$1000$saltsalt$qQDPSZa3Ormyy9oK1Pu0ZLLwP2Svzmx3yu8OvDdq/J0=",
            ),
            // OpenBSD bcrypt test vector, and the same hash under the $2b$ and $2y$ prefixes.
            (
                "U*U",
                "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            ),
            (
                "U*U",
                "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            ),
            (
                "U*U",
                "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            ),
        ];
        let passwords = service();
        for (password, stored) in cases {
            let verified = passwords
                .verify(password.into(), Some(stored.into()))
                .await
                .expect("verified");
            assert!(verified.ok, "{stored}");
            let upgraded = verified.upgraded.expect("upgraded");
            assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
            let again = passwords
                .verify(password.into(), Some(upgraded))
                .await
                .expect("ok");
            assert_eq!(
                again,
                Verified {
                    ok: true,
                    upgraded: None
                }
            );

            let wrong = passwords
                .verify(format!("{password}x"), Some(stored.into()))
                .await
                .expect("verified");
            assert_eq!(
                wrong,
                Verified {
                    ok: false,
                    upgraded: None
                },
                "{stored}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_formats_and_unknown_accounts_never_match() {
        let passwords = service();
        for stored in [
            "",
            "plaintext",
            "$md5$abc",
            "pbkdf2_sha256$0$salt$AAAA",
            "pbkdf2_sha256$99999999999$salt$AAAA",
            "pbkdf2_sha256$1000$salt",
            "$argon2id$garbage",
        ] {
            let verified = passwords.verify("x".into(), Some(stored.into())).await;
            assert_eq!(
                verified,
                Ok(Verified {
                    ok: false,
                    upgraded: None
                }),
                "{stored:?}"
            );
        }
        let unknown = passwords.verify("anything".into(), None).await;
        assert_eq!(
            unknown,
            Ok(Verified {
                ok: false,
                upgraded: None
            })
        );
        assert!(
            passwords.dummy.get().is_some(),
            "unknown accounts pay for a real hash"
        );
    }

    #[tokio::test]
    async fn policy_bounds_length_in_characters_and_bytes() {
        let passwords = service();
        assert_eq!(
            passwords.check_policy("short"),
            Err(PasswordError::TooShort(10))
        );
        assert!(passwords.check_policy("ten chars!").is_ok());
        assert!(
            passwords.check_policy("ünïcödé-ok").is_ok(),
            "counted in characters"
        );
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(passwords.check_policy(&long), Err(PasswordError::TooLong));
        assert_eq!(
            passwords.verify(long, Some("$2a$05$x".into())).await,
            Err(PasswordError::TooLong),
            "refused before any hashing"
        );
    }

    #[tokio::test]
    async fn a_wrong_password_against_a_cheap_legacy_hash_still_costs_a_full_verification() {
        let passwords = service();
        let django = "pbkdf2_sha256$1000$saltsalt$qQDPSZa3Ormyy9oK1Pu0ZLLwP2Svzmx3yu8OvDdq/J0=";
        assert!(passwords.dummy.get().is_none());
        let verified = passwords
            .verify("not the password".into(), Some(django.into()))
            .await
            .expect("checked");
        assert!(!verified.ok);
        assert!(
            passwords.dummy.get().is_some(),
            "the Argon2id dummy was verified too, as for an unknown account"
        );
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        let passwords = Arc::new(
            Passwords::with_workers(
                &PasswordConfig {
                    max_queued_hashes: 1,
                    ..cheap()
                },
                1,
            )
            .expect("params"),
        );
        // Hold the only worker with a job that waits for a signal, and the only queue place.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let holding = {
            let passwords = Arc::clone(&passwords);
            tokio::spawn(async move { passwords.run(move || gate.recv()).await })
        };
        while passwords.admitted.available_permits() > 1 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let passwords = Arc::clone(&passwords);
            tokio::spawn(async move { passwords.verify("a".into(), None).await })
        };
        while passwords.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            passwords.verify("b".into(), None).await,
            Err(PasswordError::Busy)
        );
        release.send(()).expect("worker waiting");
        assert!(holding.await.expect("joined").is_ok());
        assert!(
            queued.await.expect("joined").is_ok(),
            "the queued job still runs"
        );
    }
}
