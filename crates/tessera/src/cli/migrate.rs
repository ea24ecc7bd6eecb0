//! `tessera migrate up | down [--steps N] | status`.

use super::MigrateAction;
use crate::config::Config;
use crate::db::{Create, Db};

pub(super) async fn run(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let create = match action {
        MigrateAction::Up => Create::IfMissing,
        MigrateAction::Down { .. } | MigrateAction::Status => Create::Never,
    };
    let db = Db::connect(&config.database, create).await?;
    match action {
        MigrateAction::Up => {
            let applied = db.migrate_up().await?;
            if applied.is_empty() {
                println!("schema already current");
            }
            for version in applied {
                println!("applied {version}");
            }
        }
        MigrateAction::Down { steps } => {
            let reverted = db.migrate_down(steps as usize).await?;
            if reverted.is_empty() {
                println!("nothing to roll back");
            }
            for version in reverted {
                println!("reverted {version}");
            }
        }
        MigrateAction::Status => {
            for m in db.migration_status().await? {
                let state = match (m.applied, m.modified) {
                    (true, true) => "applied, but changed since (checksum differs)",
                    (true, false) => "applied",
                    (false, _) => "pending",
                };
                println!("{:>4}  {:<30} {state}", m.version, m.description);
            }
        }
    }
    db.close().await;
    Ok(())
}
