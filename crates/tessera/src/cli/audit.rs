//! `tessera audit verify | export`.

use std::io::Write as _;

use super::AuditAction;
use crate::audit::chain::{self, ChainKey, Verdict};
use crate::audit::store::export_lines;
use crate::config::Config;
use crate::db::{Create, Db};
use crate::master::{Generate, MasterKey};

pub(super) async fn run(config: &Config, action: AuditAction) -> anyhow::Result<()> {
    let db = Db::connect(&config.database, Create::Never).await?;
    let outcome = match action {
        AuditAction::Verify { tip } => verify(config, &db, tip.as_deref()).await,
        AuditAction::Export { tenant } => {
            let mut lines = export_lines(db.clone(), tenant);
            let mut out = std::io::stdout().lock();
            while let Some(line) = lines.recv().await {
                out.write_all(&line)?;
            }
            out.flush()?;
            Ok(())
        }
    };
    db.close().await;
    outcome
}

async fn verify(config: &Config, db: &Db, tip: Option<&str>) -> anyhow::Result<()> {
    let tip = tip
        .map(|text| {
            text.split_once(':')
                .and_then(|(seq, hash)| Some((seq.parse::<i64>().ok()?, hash.to_owned())))
                .ok_or_else(|| anyhow::anyhow!("--tip: expected SEQ:HASH, such as 42:3f9a…"))
        })
        .transpose()?;
    let master = MasterKey::load(config, Generate::IfMissing)?;
    if let Some((seq, hash)) = &tip {
        anyhow::ensure!(
            chain::holds_tip(db, *seq, hash).await?,
            "audit chain broken at event {seq}: the recorded tip is gone or was rewritten"
        );
    }
    match chain::verify(db, &ChainKey::new(&master)).await? {
        Verdict::Intact {
            verified,
            from_seq,
            to_seq,
            unsealed,
        } => {
            println!(
                "audit chain intact: {verified} events ({from_seq}..={to_seq}), \
                 {unsealed} not sealed yet"
            );
            Ok(())
        }
        Verdict::Broken { seq, reason } => {
            anyhow::bail!("audit chain broken at event {seq}: {reason}")
        }
    }
}
