//! Argon2id computed in memory each hashing thread keeps, instead of memory allocated and
//! freed per hash.
//!
//! One Argon2id hash needs `m_cost` KiB (19 MiB by default). Allocated per hash, the
//! allocator keeps what a login flood frees (glibc raises its mmap threshold after the first
//! large free, so later blocks come from arenas it never returns): resident memory climbed
//! to about 250 MiB after a few seconds of logins and stayed there. A hashing thread instead
//! keeps one buffer while it is busy, so the hashing pool holds at most `threads × m_cost`
//! whatever the load, and gives it back once it has been idle for a while.

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use subtle::ConstantTimeEq as _;

/// Largest buffer a thread keeps between hashes, in blocks of 1 KiB (64 MiB). A stored hash
/// asking for more (an imported one, say) is computed in memory freed right after.
const MAX_KEPT_BLOCKS: usize = 64 * 1024;

/// Smallest buffer reserved, in blocks of 1 KiB (33 MiB): above glibc's 32 MiB ceiling for its
/// dynamic mmap threshold. glibc serves a request at or above the threshold with its own
/// mapping, unmapped when freed, and raises the threshold to the size of each such block
/// freed, up to that ceiling. A 19 MiB buffer freed once would raise it to 19 MiB, so the
/// next one would come from an arena that keeps its memory after the release; a reservation
/// above the ceiling is always a mapping of its own and always goes back to the system. Only
/// the blocks a hash touches become resident.
const MAPPED_BLOCKS: usize = 33 * 1024;

/// Bytes of random salt in a new hash (the PHC recommendation).
const SALT_BYTES: usize = 16;

thread_local! {
    /// This thread's Argon2 working memory, grown to the largest cost seen (up to
    /// [`MAX_KEPT_BLOCKS`]) and reused by every hash the thread computes.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Gives this thread's Argon2 memory back to the system (an idle hashing thread does), so
/// the next hash allocates it again.
pub fn release_memory() {
    BLOCKS.with_borrow_mut(|blocks| *blocks = Vec::new());
}

/// Runs Argon2 `argon` over `password` and `salt` into `out`, in this thread's memory.
fn compute(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let needed = argon.params().block_count();
    if needed > MAX_KEPT_BLOCKS {
        let mut blocks = vec![Block::new(); needed];
        return argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..]);
    }
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.capacity() < needed {
            *blocks = Vec::with_capacity(needed.max(MAPPED_BLOCKS));
        }
        if blocks.len() < needed {
            blocks.resize(needed, Block::new());
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
    })
}

/// A new PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) for `password`.
pub fn hash(argon: &Argon2<'_>, algorithm: Algorithm, password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; SALT_BYTES];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the system random generator failed")?;
    let params = argon.params();
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    compute(argon, password, &salt, &mut out).map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the Argon2 (`argon2id`, `argon2i` or `argon2d`) hash `stored`,
/// computed with the stored cost; the comparison takes the same time wherever it differs.
pub fn verify(stored: &PasswordHash, password: &[u8]) -> bool {
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(stored.algorithm.as_str()),
        Params::try_from(stored),
        stored.salt.as_ref(),
        stored.hash.as_ref(),
    ) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    compute(&argon, password, salt, &mut out).is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn cheap() -> Argon2<'static> {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).expect("params"),
        )
    }

    #[test]
    fn hashes_made_here_and_by_the_argon2_crate_verify_both_ways() {
        let argon = cheap();
        let ours = hash(&argon, Algorithm::Argon2id, b"correct horse").expect("hash");
        assert!(ours.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(argon.verify_password(b"correct horse", &parsed).is_ok());
        assert!(verify(&parsed, b"correct horse"));
        assert!(!verify(&parsed, b"correct horsf"));

        let theirs = argon
            .hash_password(b"battery staple")
            .expect("hash")
            .to_string();
        let parsed = PasswordHash::new(&theirs).expect("PHC");
        assert!(verify(&parsed, b"battery staple"));
        assert!(!verify(&parsed, b"battery stapler"));
    }

    #[test]
    fn each_hash_gets_its_own_salt_and_the_memory_is_kept() {
        let argon = cheap();
        let a = hash(&argon, Algorithm::Argon2id, b"same").expect("hash");
        let b = hash(&argon, Algorithm::Argon2id, b"same").expect("hash");
        assert_ne!(a, b);
        assert_eq!(BLOCKS.with_borrow(Vec::len), 1024);
        release_memory();
        assert_eq!(BLOCKS.with_borrow(Vec::capacity), 0);
        let c = hash(&argon, Algorithm::Argon2id, b"same").expect("hash after a release");
        assert!(verify(&PasswordHash::new(&c).expect("PHC"), b"same"));
    }
}
