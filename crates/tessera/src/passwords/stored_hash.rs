//! Stored password hashes: which formats Tessera verifies, parsed once, with the cost of each
//! bounded.
//!
//! The same parser serves two places: `tessera users import` refuses a line whose hash could
//! never verify (unknown scheme, malformed text, a cost no login should pay), naming the
//! reason, and login verifies only what parses, so a corrupt or hostile row can neither match
//! nor hold a hashing thread for minutes.
//!
//! Formats, as platforms store them:
//! - Argon2 (`$argon2id$…`, `$argon2i$…`, `$argon2d$…`, PHC), and Django's `argon2$argon2id$…`;
//! - PBKDF2-SHA256 in PHC form (`$pbkdf2-sha256$i=…,l=…$salt$hash`, standard base64), in
//!   passlib's form (`$pbkdf2-sha256$<rounds>$<salt>$<hash>`, passlib's adapted base64 where
//!   `.` stands for `+`), and in Django's (`pbkdf2_sha256$<rounds>$<salt>$<hash>`, the salt
//!   used as text);
//! - bcrypt (`$2a$`, `$2b$`, `$2y$`), and Django's `bcrypt$…` and `bcrypt_sha256$…` (bcrypt over
//!   the hex SHA-256 of the password).

use argon2::{Algorithm, Params, PasswordHash};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use pbkdf2::password_hash::PasswordVerifier as _;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

/// Highest PBKDF2 iteration count verified (Django 5 stores 1,000,000; passlib 29,000).
pub const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;
/// Highest Argon2 memory cost verified, in KiB: 2 GiB, RFC 9106's first recommendation.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 2 * 1024 * 1024;
/// Highest Argon2 time cost (passes) verified.
pub const MAX_ARGON2_ITERATIONS: u32 = 64;
/// Highest bcrypt cost verified: 2^16 rounds takes seconds; platforms store 10 to 14.
pub const MAX_BCRYPT_COST: u32 = 16;
/// Longest PBKDF2 output compared (SHA-512-sized; SHA-256 hashes are 32 bytes).
const MAX_PBKDF2_OUTPUT: usize = 64;

/// Why a stored hash can never verify a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashFormatError {
    /// No format Tessera knows.
    #[error(
        "not a known format (Argon2; PBKDF2-SHA256 in PHC, passlib or Django form; bcrypt, \
         plain or Django's bcrypt and bcrypt_sha256)"
    )]
    Unknown,
    /// A known scheme, but the text around it does not parse.
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        /// The scheme recognised.
        scheme: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cost beyond what Tessera verifies.
    #[error("{scheme} {what} {found} is more than the {max} Tessera verifies")]
    TooCostly {
        /// The scheme recognised.
        scheme: &'static str,
        /// Which cost.
        what: &'static str,
        /// The stored cost.
        found: u64,
        /// The highest accepted.
        max: u64,
    },
}

/// What bcrypt is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BcryptInput {
    /// The password itself.
    Password,
    /// The hex SHA-256 of the password (Django's `bcrypt_sha256`), so long passwords count whole.
    Sha256Hex,
}

/// A stored hash that parsed and whose cost is within bounds.
#[derive(Debug)]
pub enum StoredHash<'a> {
    /// Argon2 in PHC form.
    Argon2(PasswordHash),
    /// PBKDF2-SHA256 in PHC form.
    Pbkdf2Phc(PasswordHash),
    /// PBKDF2-SHA256 from passlib or Django: rounds, salt bytes, expected output.
    Pbkdf2 {
        /// Iterations.
        rounds: u32,
        /// The salt as PBKDF2 takes it.
        salt: Vec<u8>,
        /// The derived key to match.
        expected: Vec<u8>,
    },
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    Bcrypt {
        /// The bcrypt string itself.
        hash: &'a str,
        /// What it was computed over.
        input: BcryptInput,
    },
}

fn malformed(scheme: &'static str, reason: &'static str) -> HashFormatError {
    HashFormatError::Malformed { scheme, reason }
}

fn too_costly(scheme: &'static str, what: &'static str, found: u64, max: u32) -> HashFormatError {
    HashFormatError::TooCostly {
        scheme,
        what,
        found,
        max: u64::from(max),
    }
}

impl<'a> StoredHash<'a> {
    /// Parses `stored`, refusing what could never verify.
    pub fn parse(stored: &'a str) -> Result<Self, HashFormatError> {
        if let Some(rest) = stored.strip_prefix("argon2$") {
            return parse_argon2(rest.strip_prefix('$').unwrap_or(rest));
        }
        if stored.starts_with("$argon2") {
            return parse_argon2(&stored[1..]);
        }
        if let Some(rest) = stored.strip_prefix("$pbkdf2-sha256$") {
            return if rest.starts_with(|c: char| c.is_ascii_digit()) {
                parse_passlib_pbkdf2(rest)
            } else {
                parse_phc_pbkdf2(stored)
            };
        }
        if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
            return parse_django_pbkdf2(rest);
        }
        if let Some(rest) = stored.strip_prefix("bcrypt_sha256$") {
            return parse_bcrypt(rest, BcryptInput::Sha256Hex);
        }
        if let Some(rest) = stored.strip_prefix("bcrypt$") {
            return parse_bcrypt(rest, BcryptInput::Password);
        }
        if stored.starts_with("$2") {
            return parse_bcrypt(stored, BcryptInput::Password);
        }
        Err(HashFormatError::Unknown)
    }

    /// Whether `password` matches. Argon2 takes the stored cost, whatever the configured one.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Argon2(hash) => super::argon::verify(hash, password),
            Self::Pbkdf2Phc(hash) => pbkdf2::Pbkdf2::SHA256
                .verify_password(password, hash)
                .is_ok(),
            Self::Pbkdf2 {
                rounds,
                salt,
                expected,
            } => {
                let mut computed = vec![0u8; expected.len()];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, *rounds, &mut computed);
                computed.ct_eq(expected).into()
            }
            Self::Bcrypt { hash, input } => match input {
                BcryptInput::Password => bcrypt::verify(password, hash).unwrap_or(false),
                BcryptInput::Sha256Hex => {
                    let digest = sha2::Sha256::digest(password);
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    bcrypt::verify(hex.as_bytes(), hash).unwrap_or(false)
                }
            },
        }
    }

    /// Whether this is Argon2id with exactly `current`'s cost (no upgrade needed).
    pub fn is_current(&self, current: &Params) -> bool {
        let Self::Argon2(hash) = self else {
            return false;
        };
        hash.algorithm.as_str() == "argon2id"
            && Params::try_from(hash).is_ok_and(|p| {
                p.m_cost() == current.m_cost()
                    && p.t_cost() == current.t_cost()
                    && p.p_cost() == current.p_cost()
            })
    }
}

/// Argon2 in PHC form, `text` without its leading `$`.
fn parse_argon2(text: &str) -> Result<StoredHash<'static>, HashFormatError> {
    const SCHEME: &str = "Argon2";
    let hash = PasswordHash::new(&format!("${text}"))
        .map_err(|_| malformed(SCHEME, "not a PHC string"))?;
    Algorithm::try_from(hash.algorithm.as_str())
        .map_err(|_| malformed(SCHEME, "not argon2id, argon2i or argon2d"))?;
    let params = Params::try_from(&hash).map_err(|_| malformed(SCHEME, "invalid parameters"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(malformed(SCHEME, "no salt or no hash"));
    }
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
        let found = u64::from(params.m_cost());
        return Err(too_costly(
            SCHEME,
            "memory (KiB)",
            found,
            MAX_ARGON2_MEMORY_KIB,
        ));
    }
    if params.t_cost() > MAX_ARGON2_ITERATIONS {
        let found = u64::from(params.t_cost());
        return Err(too_costly(
            SCHEME,
            "iterations",
            found,
            MAX_ARGON2_ITERATIONS,
        ));
    }
    Ok(StoredHash::Argon2(hash))
}

/// Iterations as text, checked against [`MAX_PBKDF2_ROUNDS`].
fn pbkdf2_rounds(scheme: &'static str, text: &str) -> Result<u32, HashFormatError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(scheme, "the rounds are not a number"));
    }
    let rounds: u64 = text.parse().unwrap_or(u64::MAX);
    if rounds == 0 {
        return Err(malformed(scheme, "zero rounds"));
    }
    if rounds > u64::from(MAX_PBKDF2_ROUNDS) {
        return Err(too_costly(scheme, "rounds", rounds, MAX_PBKDF2_ROUNDS));
    }
    Ok(u32::try_from(rounds).unwrap_or(MAX_PBKDF2_ROUNDS))
}

/// The derived key, checked for a sane length.
fn pbkdf2_output(
    scheme: &'static str,
    decoded: Option<Vec<u8>>,
) -> Result<Vec<u8>, HashFormatError> {
    match decoded {
        Some(bytes) if !bytes.is_empty() && bytes.len() <= MAX_PBKDF2_OUTPUT => Ok(bytes),
        Some(_) => Err(malformed(scheme, "the hash has an impossible length")),
        None => Err(malformed(scheme, "the hash is not base64")),
    }
}

/// passlib's adapted base64: standard base64 with `.` for `+`, without padding.
fn adapted_base64(text: &str) -> Option<Vec<u8>> {
    if text.contains(['+', '=']) {
        return None;
    }
    STANDARD_NO_PAD.decode(text.replace('.', "+")).ok()
}

/// passlib's `<rounds>$<salt>$<hash>` (after `$pbkdf2-sha256$`).
fn parse_passlib_pbkdf2(rest: &str) -> Result<StoredHash<'static>, HashFormatError> {
    const SCHEME: &str = "passlib PBKDF2-SHA256";
    let mut parts = rest.split('$');
    let (Some(rounds), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            SCHEME,
            "expected $pbkdf2-sha256$<rounds>$<salt>$<hash>",
        ));
    };
    let rounds = pbkdf2_rounds(SCHEME, rounds)?;
    let salt = adapted_base64(salt).ok_or(malformed(SCHEME, "the salt is not adapted base64"))?;
    Ok(StoredHash::Pbkdf2 {
        rounds,
        salt,
        expected: pbkdf2_output(SCHEME, adapted_base64(hash))?,
    })
}

/// The PHC form, `$pbkdf2-sha256$i=<rounds>[,l=<len>]$<salt>$<hash>`.
fn parse_phc_pbkdf2(stored: &str) -> Result<StoredHash<'static>, HashFormatError> {
    const SCHEME: &str = "PBKDF2-SHA256";
    let hash = PasswordHash::new(stored).map_err(|_| malformed(SCHEME, "not a PHC string"))?;
    let Some(rounds) = hash.params.get_decimal("i") else {
        return Err(malformed(SCHEME, "no `i` (rounds) parameter"));
    };
    pbkdf2_rounds(SCHEME, &rounds.to_string())?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(malformed(SCHEME, "no salt or no hash"));
    }
    Ok(StoredHash::Pbkdf2Phc(hash))
}

/// Django's `<rounds>$<salt>$<base64 hash>` (after `pbkdf2_sha256$`).
fn parse_django_pbkdf2(rest: &str) -> Result<StoredHash<'static>, HashFormatError> {
    const SCHEME: &str = "Django PBKDF2-SHA256";
    let mut parts = rest.splitn(3, '$');
    let (Some(rounds), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(
            SCHEME,
            "expected pbkdf2_sha256$<rounds>$<salt>$<hash>",
        ));
    };
    let rounds = pbkdf2_rounds(SCHEME, rounds)?;
    if salt.is_empty() {
        return Err(malformed(SCHEME, "an empty salt"));
    }
    Ok(StoredHash::Pbkdf2 {
        rounds,
        salt: salt.as_bytes().to_vec(),
        expected: pbkdf2_output(SCHEME, STANDARD.decode(hash).ok())?,
    })
}

/// A bcrypt string: `$2a$`, `$2b$` or `$2y$`, two cost digits, 53 characters of bcrypt's
/// base64 (22 of salt, 31 of hash).
fn parse_bcrypt(hash: &str, input: BcryptInput) -> Result<StoredHash<'_>, HashFormatError> {
    const SCHEME: &str = "bcrypt";
    let bytes = hash.as_bytes();
    let version_ok = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
    if !version_ok {
        return Err(malformed(SCHEME, "not a $2a$, $2b$ or $2y$ hash"));
    }
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'/';
    let shape_ok = bytes.len() == 60
        && bytes[4].is_ascii_digit()
        && bytes[5].is_ascii_digit()
        && bytes[6] == b'$'
        && bytes[7..].iter().all(alphabet);
    if !shape_ok {
        return Err(malformed(
            SCHEME,
            "expected $2b$<cost>$ and 53 bcrypt characters",
        ));
    }
    let cost = u32::from(bytes[4] - b'0') * 10 + u32::from(bytes[5] - b'0');
    if cost < 4 {
        return Err(malformed(SCHEME, "a cost below 4"));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(too_costly(SCHEME, "cost", u64::from(cost), MAX_BCRYPT_COST));
    }
    Ok(StoredHash::Bcrypt { hash, input })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_form_parses_and_verifies() {
        let cases = [
            (
                "correct horse",
                "$pbkdf2-sha256$1000$c2FsdHNhbHQ$qQDPSZa3Ormyy9oK1Pu0ZLLwP2Svzmx3yu8OvDdq/J0",
            ),
            (
                "correct horse",
                "pbkdf2_sha256$1000$saltsalt$qQDPSZa3Ormyy9oK1Pu0ZLLwP2Svzmx3yu8OvDdq/J0=",
            ),
            (
                "U*U",
                "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            ),
            (
                "U*U",
                "bcrypt$$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            ),
        ];
        for (password, stored) in cases {
            let parsed = StoredHash::parse(stored).unwrap_or_else(|e| panic!("{stored}: {e}"));
            assert!(parsed.verify(password.as_bytes()), "{stored}");
            assert!(!parsed.verify(b"wrong"), "{stored}");
        }
    }

    #[test]
    fn hashes_that_could_never_verify_are_refused_with_a_reason() {
        let cases: [(&str, &str); 14] = [
            ("5f4dcc3b5aa765d61d8327deb882cf99", "not a known format"),
            ("$1$md5crypt", "not a known format"),
            ("scrypt$16384$salt$8$1$hash", "not a known format"),
            ("$pbkdf2-sha256$1000$c2FsdA", "expected $pbkdf2-sha256$"),
            ("$pbkdf2-sha256$1000$c2F+sdA$AAAA", "adapted base64"),
            (
                "$pbkdf2-sha256$99999999$c2FsdA$AAAA",
                "more than the 10000000",
            ),
            ("$pbkdf2-sha256$0$c2FsdA$AAAA", "zero rounds"),
            ("$pbkdf2-sha256$i=1000$", "not a PHC string"),
            ("pbkdf2_sha256$12x$salt$AAAA", "not a number"),
            ("pbkdf2_sha256$1000$salt$not base64!", "not base64"),
            ("pbkdf2_sha256$1000$salt", "expected pbkdf2_sha256$"),
            (
                "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
                "cost 31",
            ),
            ("$2b$12$short", "53 bcrypt characters"),
            (
                "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                "memory",
            ),
        ];
        for (stored, reason) in cases {
            let error = StoredHash::parse(stored).expect_err(stored).to_string();
            assert!(error.contains(reason), "{stored}: {error}");
        }
    }
}
