//! Queries on `signing_keys`, and the pure schedule that decides which key signs and which are
//! published at a given time.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use tessera_token::{Algorithm, Jwk, Signer, generate_pkcs8};

use crate::db::{Db, Job};
use crate::master::MasterKey;

/// One row of `signing_keys`, private part still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Key id (the RFC 7638 thumbprint of the public key).
    pub kid: String,
    /// Algorithm fixed by the key type.
    pub alg: Algorithm,
    /// Public JWK.
    pub public_jwk: Jwk,
    /// Nonce + AES-256-GCM ciphertext of the PKCS#8 private key.
    pub sealed_private: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Signs from this time on.
    pub activated_at: i64,
    /// A newer key signs from this time on.
    pub retired_at: Option<i64>,
}

impl KeyRow {
    /// Decrypts the private key and builds its signer.
    pub fn signer(&self, master: &MasterKey) -> anyhow::Result<Signer> {
        let pkcs8 = master.open(&self.kid, &self.sealed_private)?;
        Ok(Signer::from_pkcs8(self.alg, self.kid.clone(), &pkcs8)?)
    }

    /// When the public key leaves the JWKS: once every token it can have signed has expired.
    pub fn unpublish_at(&self, max_token_lifetime: i64) -> Option<i64> {
        self.retired_at
            .map(|r| r.saturating_add(max_token_lifetime))
    }
}

/// Which key signs and which are published at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule<'a> {
    /// The newest key whose activation time has come and that no newer key has retired.
    pub signer: Option<&'a KeyRow>,
    /// Every key a valid token may name, and those about to sign.
    pub published: Vec<&'a KeyRow>,
    /// The next time this schedule changes, if any.
    pub next_change: Option<i64>,
}

/// The schedule at `now`. `max_token_lifetime` is the access-token lifetime plus leeway.
pub fn schedule(rows: &[KeyRow], now: i64, max_token_lifetime: i64) -> Schedule<'_> {
    // A key retired in the same second its successor activated must not win a tie.
    let signer = rows
        .iter()
        .filter(|r| r.activated_at <= now && r.retired_at.is_none_or(|t| t > now))
        .max_by(|a, b| {
            (a.activated_at, a.created_at, &a.kid).cmp(&(b.activated_at, b.created_at, &b.kid))
        });
    let published = rows
        .iter()
        .filter(|r| r.unpublish_at(max_token_lifetime).is_none_or(|t| t > now))
        .collect();
    let next_change = rows
        .iter()
        .flat_map(|r| [Some(r.activated_at), r.unpublish_at(max_token_lifetime)])
        .flatten()
        .filter(|t| *t > now)
        .min();
    Schedule {
        signer,
        published,
        next_change,
    }
}

fn row_to_key(row: &AnyRow) -> anyhow::Result<KeyRow> {
    let alg: String = row.try_get("alg")?;
    let jwk: String = row.try_get("public_jwk")?;
    Ok(KeyRow {
        kid: row.try_get("kid")?,
        alg: Algorithm::from_name(&alg)
            .ok_or_else(|| anyhow::anyhow!("signing key with unknown algorithm {alg:?}"))?,
        public_jwk: serde_json::from_str(&jwk)?,
        sealed_private: row.try_get("private_key")?,
        created_at: row.try_get("created_at")?,
        activated_at: row.try_get("activated_at")?,
        retired_at: row.try_get("retired_at")?,
    })
}

/// Every key, oldest first.
pub async fn list(db: &Db) -> anyhow::Result<Vec<KeyRow>> {
    let rows = sqlx::query(
        "SELECT kid, alg, public_jwk, private_key, created_at, activated_at, retired_at \
         FROM signing_keys ORDER BY activated_at, created_at",
    )
    .fetch_all(db.pool())
    .await?;
    let mut keys = rows
        .iter()
        .map(row_to_key)
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Rotations within one second share timestamps; the still-open key sorts last.
    keys.sort_by_key(|k| (k.activated_at, k.created_at, k.retired_at.is_none()));
    Ok(keys)
}

/// Generates a key that starts signing at `now + delay`, and retires (at that same moment)
/// every key still signing. One transaction, so readers never see two open-ended signers.
/// When no key signs yet there is nobody to wait for, and the new key signs at once.
pub async fn rotate(
    db: &Db,
    master: &MasterKey,
    alg: Algorithm,
    now: i64,
    delay: i64,
) -> anyhow::Result<KeyRow> {
    let pkcs8 = generate_pkcs8(alg)?;
    // The kid is the thumbprint, so it is known before the signer is built.
    let public_jwk = Signer::from_pkcs8(alg, "", &pkcs8)?
        .public_jwk()
        .ok_or_else(|| anyhow::anyhow!("{alg} keys have a public JWK"))?;
    let kid = public_jwk
        .thumbprint()
        .ok_or_else(|| anyhow::anyhow!("generated key has no thumbprint"))?;
    let public_jwk = Jwk {
        kid: Some(kid.clone()),
        ..public_jwk
    };
    // Rotations from several instances or the CLI at once take turns, so each sees the
    // schedule the previous one left and no two keys end up signing open-ended.
    let mut tx = db.job_lock(Job::KeyRotation).await?;
    let signing: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE activated_at <= $1")
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
    let delay = if signing == 0 { 0 } else { delay };
    let row = KeyRow {
        sealed_private: master.seal(&kid, &pkcs8)?,
        kid,
        alg,
        public_jwk,
        created_at: now,
        activated_at: now.saturating_add(delay),
        retired_at: None,
    };

    // Every key that signs by the new key's activation stops signing then, including one
    // whose retirement was already set later; a key still waiting to activate after it never
    // signs at all (it stays published until its would-be tokens could have expired).
    sqlx::query(
        "UPDATE signing_keys SET retired_at = $1 \
         WHERE activated_at <= $1 AND (retired_at IS NULL OR retired_at > $1)",
    )
    .bind(row.activated_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE signing_keys SET retired_at = activated_at \
         WHERE activated_at > $1 AND (retired_at IS NULL OR retired_at > activated_at)",
    )
    .bind(row.activated_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO signing_keys \
         (kid, alg, public_jwk, private_key, created_at, activated_at, retired_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(&row.kid)
    .bind(row.alg.as_str())
    .bind(serde_json::to_string(&row.public_jwk)?)
    .bind(row.sealed_private.clone())
    .bind(row.created_at)
    .bind(row.activated_at)
    .execute(&mut *tx)
    .await?;
    // Every instance reads the schedule again at once, not at its next scheduled refresh.
    let _ = crate::bus::changes::record(
        &mut tx,
        &crate::bus::changes::Change::Keys,
        now.saturating_mul(1_000),
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, activated_at: i64, retired_at: Option<i64>) -> KeyRow {
        KeyRow {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            public_jwk: Jwk {
                kty: "OKP".into(),
                crv: None,
                x: None,
                y: None,
                kid: None,
                alg: None,
                key_use: None,
            },
            sealed_private: Vec::new(),
            created_at: activated_at,
            activated_at,
            retired_at,
        }
    }

    fn kids(rows: &[&KeyRow]) -> Vec<String> {
        rows.iter().map(|r| r.kid.clone()).collect()
    }

    #[test]
    fn a_rotated_key_is_published_before_it_signs_and_the_old_one_after() {
        // k1 signs from 0; k2 rotated in at 100 with a 300 s delay; tokens live 630 s.
        let rows = vec![row("k1", 0, Some(400)), row("k2", 400, None)];
        let life = 630;

        let at_100 = schedule(&rows, 100, life);
        assert_eq!(at_100.signer.map(|r| r.kid.as_str()), Some("k1"));
        assert_eq!(
            kids(&at_100.published),
            ["k1", "k2"],
            "k2 published before signing"
        );
        assert_eq!(at_100.next_change, Some(400));

        let at_400 = schedule(&rows, 400, life);
        assert_eq!(at_400.signer.map(|r| r.kid.as_str()), Some("k2"));
        assert_eq!(
            kids(&at_400.published),
            ["k1", "k2"],
            "k1 tokens still valid"
        );
        assert_eq!(at_400.next_change, Some(1030));

        let at_1030 = schedule(&rows, 1030, life);
        assert_eq!(
            kids(&at_1030.published),
            ["k2"],
            "k1 gone once its tokens expired"
        );
        assert_eq!(at_1030.next_change, None);
    }

    #[test]
    fn a_key_retired_in_the_second_its_successor_activates_never_signs() {
        // Two rotations in the same second: "a" retired at 50 by "b", both activated at 50.
        for (first, second) in [("a", "b"), ("b", "a")] {
            let rows = vec![row(first, 50, Some(50)), row(second, 50, None)];
            let plan = schedule(&rows, 50, 630);
            assert_eq!(plan.signer.map(|r| r.kid.as_str()), Some(second));
            assert_eq!(plan.published.len(), 2);
        }
    }

    #[test]
    fn no_key_means_no_signer() {
        let empty = schedule(&[], 5, 630);
        assert!(empty.signer.is_none() && empty.published.is_empty());
    }
}
