//! `tessera audit verify | export`.

use std::io::Write as _;

use super::AuditAction;
use crate::audit::chain::{self, ChainKey, Verdict};
use crate::audit::routes::export_lines;
use crate::config::Config;
use crate::db::{Create, Db};
use crate::keys::master::{Generate, MasterKey};

pub(super) async fn run(config: &Config, action: AuditAction) -> anyhow::Result<()> {
    let db = Db::connect(&config.database, Create::Never).await?;
    let outcome = match action {
        AuditAction::Verify => verify(config, &db).await,
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

async fn verify(config: &Config, db: &Db) -> anyhow::Result<()> {
    let master = MasterKey::load(config, Generate::IfMissing)?;
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
