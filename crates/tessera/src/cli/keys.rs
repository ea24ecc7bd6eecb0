//! `tessera keys list | rotate`.

use tessera_token::{Algorithm, unix_now};

use super::KeysAction;
use crate::config::{Config, SigningAlgorithm};
use crate::db::{Create, Db};
use crate::keys::{max_token_lifetime, store};
use crate::master::{Generate, MasterKey};

pub(super) async fn run(config: &Config, action: KeysAction) -> anyhow::Result<()> {
    if config.token.algorithm == SigningAlgorithm::HS256 {
        anyhow::bail!(
            "token.algorithm is HS256: the configured shared secret is the only key; rotate it \
             in the configuration (and in every verifier)"
        );
    }
    let db = Db::connect(&config.database, Create::Never).await?;
    let outcome = match action {
        KeysAction::List => list(config, &db).await,
        KeysAction::Rotate { delay, algorithm } => {
            let algorithm = algorithm.map_or(config.token.algorithm, Into::into);
            rotate(config, &db, delay, algorithm).await
        }
    };
    db.close().await;
    outcome
}

async fn list(config: &Config, db: &Db) -> anyhow::Result<()> {
    let rows = store::list(db).await?;
    if rows.is_empty() {
        println!("no signing keys yet; `tessera serve` creates the first one");
        return Ok(());
    }
    let now = unix_now();
    let lifetime = max_token_lifetime(config);
    let plan = store::schedule(&rows, now, lifetime);
    println!(
        "{:<44} {:<6} {:<10} {:<22} {:<22}",
        "kid", "alg", "state", "signs from", "published until"
    );
    for row in &rows {
        let state = if plan.signer.is_some_and(|s| s.kid == row.kid) {
            "active"
        } else if row.activated_at > now {
            "pending"
        } else if plan.published.iter().any(|p| p.kid == row.kid) {
            "retired"
        } else {
            "expired"
        };
        let until = row
            .unpublish_at(lifetime)
            .map_or_else(|| "-".to_owned(), time);
        println!(
            "{:<44} {:<6} {:<10} {:<22} {:<22}",
            row.kid,
            row.alg.as_str(),
            state,
            time(row.activated_at),
            until
        );
    }
    Ok(())
}

async fn rotate(
    config: &Config,
    db: &Db,
    delay: Option<u64>,
    algorithm: SigningAlgorithm,
) -> anyhow::Result<()> {
    let alg: Algorithm = algorithm.into();
    if alg == Algorithm::HS256 {
        anyhow::bail!("--algorithm: HS256 keys are not stored; choose EdDSA or ES256");
    }
    let master = MasterKey::load(config, Generate::IfMissing)?;
    let delay = delay.unwrap_or(config.token.rotation_delay_secs);
    let delay = i64::try_from(delay).map_err(|_| anyhow::anyhow!("--delay is too large"))?;
    let row = store::rotate(db, &master, alg, unix_now(), delay).await?;
    println!(
        "new {} key {} published now, signing from {}",
        row.alg.as_str(),
        row.kid,
        time(row.activated_at)
    );
    Ok(())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::time;

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
