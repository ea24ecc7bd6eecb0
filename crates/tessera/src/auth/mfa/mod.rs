//! TOTP multi-factor authentication, when `features.mfa_enabled`.
//!
//! - `POST /api/v1/auth/mfa/totp/setup`: a new secret, its `otpauth://` URI and a QR code.
//! - `POST /api/v1/auth/mfa/totp/confirm` `{code}`: enables it and shows 10 single-use
//!   recovery codes, once.
//! - `POST /api/v1/auth/mfa/totp/disable` `{password, code}`.
//! - A login whose password is right answers `{mfa_required, mfa_token}` for an enrolled
//!   account; `POST /api/v1/auth/mfa/verify` `{mfa_token, code | recovery_code}` completes it
//!   (`amr` `["pwd", "otp"]`). A challenge lives 5 minutes and allows 5 attempts.
//!
//! A code's time step is accepted once per account (an atomic compare on the last step), with
//! one step of clock skew either way. Secrets are sealed under a key derived from the master
//! key; recovery codes are stored as keyed hashes.

pub mod totp;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sqlx::{AnyConnection, Row as _};

use crate::clock::Clock;
use crate::db::Db;
use crate::digest::{hex, sha256_hex};
use crate::master::MasterKey;

/// How long a login may take between its password and its code.
pub const CHALLENGE_TTL_SECS: i64 = 300;

/// Codes tried per challenge.
pub const CHALLENGE_ATTEMPTS: i32 = 5;

/// Recovery codes issued at enrollment.
pub const RECOVERY_CODES: usize = 10;

/// Secret length, in bytes (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;

/// Prefix of mfa tokens, so they are recognisable in logs and leaks.
const CHALLENGE_PREFIX: &str = "tsm_";

/// What a challenge lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Complete the login with a code.
    Verify,
    /// Enroll a second factor the tenant requires before logging in.
    Enroll,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Enroll => "enroll",
        }
    }
}

/// Whether the tenant requires a second factor of one of the user's roles. Tenants without
/// such a policy cost one read.
pub async fn required_for(
    conn: &mut AnyConnection,
    tenant_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let policy: Option<String> =
        sqlx::query_scalar("SELECT mfa_required_roles FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut *conn)
            .await?;
    let required: Vec<String> = policy
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or_default();
    if required.is_empty() {
        return Ok(false);
    }
    let roles: Vec<String> = sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(roles.iter().any(|role| required.contains(role)))
}

/// A live challenge, after counting an attempt on it.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Whose login it is.
    pub user_id: String,
    /// `body` or `cookie`.
    pub delivery: String,
    /// Attempts it still allows after this one.
    pub attempts_left: i32,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Keys of the MFA service.
pub struct Mfa {
    seal: MasterKey,
    recovery: hmac::Key,
    /// Decides code steps and challenge expiry.
    clock: Clock,
}

/// Why a code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// Wrong, outside the skew window, or already used.
    Rejected,
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system generator does not fail on supported platforms; a zeroed value would be
    // caught by every check that compares it.
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes
}

impl Mfa {
    /// The service with keys derived from `master`, reading the time from `clock`.
    pub fn new(master: &MasterKey, clock: Clock) -> Self {
        Self {
            seal: MasterKey::from_bytes(&master.derive("tessera totp seal v1")),
            recovery: hmac::Key::new(
                hmac::HMAC_SHA256,
                &master.derive("tessera recovery codes v1"),
            ),
            clock,
        }
    }

    /// Starts (or restarts) enrollment: a new secret, stored sealed and unconfirmed. `None`
    /// when the account already has a confirmed second factor: decided here, in the writing
    /// transaction, whatever a caller checked before (an older enrollment challenge may
    /// still be presented after another one was confirmed).
    pub async fn begin(&self, db: &Db, user_id: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let secret = random::<SECRET_BYTES>().to_vec();
        let sealed = self
            .seal
            .seal(&format!("totp:{user_id}"), &secret)
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let mut tx = db.begin_write().await?;
        if self.enabled(&mut tx, user_id).await? {
            return Ok(None);
        }
        sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NULL")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret_sealed, confirmed_at, last_step, created_at) \
             VALUES ($1, $2, NULL, 0, $3)",
        )
        .bind(user_id)
        .bind(STANDARD.encode(sealed))
        .bind(self.clock.now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(secret))
    }

    /// Whether the account has a confirmed second factor.
    pub async fn enabled(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT confirmed_at FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(found.is_some())
    }

    /// The account's secret and whether it is confirmed.
    async fn secret(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
    ) -> Result<Option<(Vec<u8>, bool)>, sqlx::Error> {
        let row =
            sqlx::query("SELECT secret_sealed, confirmed_at FROM mfa_totp WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: String = row.try_get("secret_sealed")?;
        let confirmed: Option<i64> = row.try_get("confirmed_at")?;
        let sealed = STANDARD
            .decode(sealed)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let secret = self
            .seal
            .open(&format!("totp:{user_id}"), &sealed)
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        Ok(Some((secret, confirmed.is_some())))
    }

    /// Accepts `code` for the account if it matches a step not used before, recording the
    /// step in the same statement (so a code is accepted once, even in parallel). With
    /// `confirming`, the enrollment in progress is checked and confirmed instead.
    pub async fn accept_code(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        code: &str,
        confirming: bool,
    ) -> Result<Result<(), CodeError>, sqlx::Error> {
        let Some((secret, confirmed)) = self.secret(conn, user_id).await? else {
            return Ok(Err(CodeError::Rejected));
        };
        if confirmed == confirming {
            return Ok(Err(CodeError::Rejected));
        }
        let now = self.clock.now();
        let Some(step) = totp::matching_step(&secret, code, now) else {
            return Ok(Err(CodeError::Rejected));
        };
        let query = if confirming {
            sqlx::query(
                "UPDATE mfa_totp SET last_step = $1, confirmed_at = $2 \
                 WHERE user_id = $3 AND last_step < $1 AND confirmed_at IS NULL",
            )
            .bind(step)
            .bind(now)
        } else {
            sqlx::query(
                "UPDATE mfa_totp SET last_step = $1 \
                 WHERE user_id = $2 AND last_step < $1 AND confirmed_at IS NOT NULL",
            )
            .bind(step)
        };
        let updated = query
            .bind(user_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        Ok(if updated == 1 {
            Ok(())
        } else {
            Err(CodeError::Rejected)
        })
    }

    fn recovery_hash(&self, code: &str) -> String {
        let normalized: String = code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        hex(hmac::sign(&self.recovery, normalized.as_bytes()).as_ref())
    }

    /// New recovery codes for the account, replacing any it had; the codes are returned once
    /// and only their keyed hashes kept.
    pub async fn new_recovery_codes(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            // 60 bits, written as three groups of four base32 characters.
            let raw = totp::base32(&random::<8>()).to_ascii_lowercase();
            let code = format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12]);
            sqlx::query(
                "INSERT INTO mfa_recovery_codes (code_hash, user_id, used_at) VALUES ($1, $2, NULL)",
            )
            .bind(self.recovery_hash(&code))
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
            codes.push(code);
        }
        Ok(codes)
    }

    /// Uses one recovery code of the account, if it is one and unused.
    pub async fn use_recovery_code(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        code: &str,
    ) -> Result<bool, sqlx::Error> {
        let used = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $1 \
             WHERE code_hash = $2 AND user_id = $3 AND used_at IS NULL",
        )
        .bind(self.clock.now())
        .bind(self.recovery_hash(code))
        .bind(user_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(used == 1)
    }

    /// Removes the account's second factor and recovery codes.
    pub async fn remove(&self, conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
        for sql in [
            "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
            "DELETE FROM mfa_challenges WHERE user_id = $1",
            "DELETE FROM mfa_totp WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Opens a challenge for a login whose password was right; returns its token.
    pub async fn challenge(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        delivery: &str,
        purpose: Purpose,
    ) -> Result<String, sqlx::Error> {
        let token = format!(
            "{CHALLENGE_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random::<32>())
        );
        let now = self.clock.now();
        sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO mfa_challenges (token_hash, user_id, delivery, attempts, expires_at, \
             created_at, purpose) VALUES ($1, $2, $3, 0, $4, $5, $6)",
        )
        .bind(sha256_hex(token.as_bytes()))
        .bind(user_id)
        .bind(delivery)
        .bind(now + CHALLENGE_TTL_SECS)
        .bind(now)
        .bind(purpose.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(token)
    }

    /// Counts an attempt on the challenge `token`: what it is for while it is live and has
    /// attempts left, `None` otherwise (unknown, expired, used up: all the same).
    async fn attempt(
        &self,
        conn: &mut AnyConnection,
        token: &str,
        purpose: Purpose,
    ) -> Result<Option<Challenge>, sqlx::Error> {
        if !token.starts_with(CHALLENGE_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let row = sqlx::query(
            "UPDATE mfa_challenges SET attempts = attempts + 1 \
             WHERE token_hash = $1 AND attempts < $2 AND expires_at > $3 AND purpose = $4 \
             RETURNING user_id, delivery, attempts, expires_at",
        )
        .bind(sha256_hex(token.as_bytes()))
        .bind(CHALLENGE_ATTEMPTS)
        .bind(self.clock.now())
        .bind(purpose.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|row| {
            Ok(Challenge {
                user_id: row.try_get("user_id")?,
                delivery: row.try_get("delivery")?,
                attempts_left: CHALLENGE_ATTEMPTS - row.try_get::<i32, _>("attempts")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Counts an attempt on the challenge `token` in a write transaction of its own, taken
    /// only for a challenge that exists: a read answers a made-up token, so a flood of them
    /// never queues behind (or holds up) the database's writers.
    pub async fn count_attempt(
        &self,
        db: &Db,
        token: &str,
        purpose: Purpose,
    ) -> Result<Option<Challenge>, sqlx::Error> {
        if !token.starts_with(CHALLENGE_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT attempts FROM mfa_challenges \
             WHERE token_hash = $1 AND attempts < $2 AND expires_at > $3 AND purpose = $4",
        )
        .bind(sha256_hex(token.as_bytes()))
        .bind(CHALLENGE_ATTEMPTS)
        .bind(self.clock.now())
        .bind(purpose.as_str())
        .fetch_optional(db.pool())
        .await?;
        if live.is_none() {
            return Ok(None);
        }
        let mut tx = db.begin_write().await?;
        let challenge = self.attempt(&mut tx, token, purpose).await?;
        tx.commit().await?;
        Ok(challenge)
    }

    /// Ends the challenge `token` (its login completes); whether it was still there, so of
    /// two logins racing on one challenge only one completes.
    pub async fn finish(&self, conn: &mut AnyConnection, token: &str) -> Result<bool, sqlx::Error> {
        let ended = sqlx::query("DELETE FROM mfa_challenges WHERE token_hash = $1")
            .bind(sha256_hex(token.as_bytes()))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        Ok(ended == 1)
    }
}

/// The `otpauth://` URI authenticator apps read (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let label = format!("{issuer}:{account}");
    let encode = |text: &str| -> String {
        form_urlencoded::byte_serialize(text.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "otpauth://totp/{}?secret={}&issuer={}&algorithm=SHA1&digits={}&period={}",
        encode(&label),
        totp::base32(secret),
        encode(issuer),
        totp::DIGITS,
        totp::STEP_SECS
    )
}

/// The URI as a QR code: an SVG image in a `data:` URL.
pub fn qr_svg_data_url(text: &str) -> Option<String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = code.size() + border * 2;
    let mut path = String::new();
    for y in 0..code.size() {
        for x in 0..code.size() {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    );
    Some(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg)
    ))
}
