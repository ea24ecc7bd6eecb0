//! `tessera flags list`: every flag as this configuration and database define it, with where
//! its definition and its current default value come from.

use std::fmt::Write as _;

use super::FlagsAction;
use crate::config::Config;
use crate::db::{Create, Db};
use crate::flags::set::{Declared, FlagSet};
use crate::flags::store;

pub(super) async fn run(config: &Config, action: FlagsAction) -> anyhow::Result<()> {
    let db = Db::connect(&config.database, Create::Never).await?;
    let outcome = match action {
        FlagsAction::List { json } => list(config, &db, json).await,
    };
    db.close().await;
    outcome
}

async fn list(config: &Config, db: &Db, json: bool) -> anyhow::Result<()> {
    let declared = Declared::from_config(config)
        .map_err(|problems| anyhow::anyhow!(crate::config::ConfigError { problems }.to_string()))?;
    let stored = store::load(db).await?;
    let set = FlagSet::build(&declared, &stored, std::sync::Arc::from(Vec::new()));
    if json {
        for entry in set.iter() {
            let line = serde_json::json!({
                "key": entry.flag.key,
                "type": entry.flag.spec.kind,
                "default": entry.flag.spec.default,
                "enabled": entry.flag.spec.enabled,
                "public": entry.flag.spec.public,
                "defined": entry.defined,
                "value_source": entry.value_source,
                "api_override": entry.api_override,
            });
            println!("{line}");
        }
        return Ok(());
    }
    print!("{}", table(&set));
    Ok(())
}

/// The human-readable table.
fn table(set: &FlagSet) -> String {
    if set.is_empty() {
        return "no flags: declare them as [flags.<key>] in the config file or create them \
                through the admin API\n"
            .to_owned();
    }
    let mut out = format!(
        "{:<32} {:<7} {:<16} {:<7} {:<8} {:<7} {}\n",
        "key", "type", "default", "public", "enabled", "defined", "value from"
    );
    for entry in set.iter() {
        let spec = &entry.flag.spec;
        let mut default = spec.default.to_string();
        if default.chars().count() > 16 {
            default = default.chars().take(15).collect::<String>() + "…";
        }
        let mut source = entry.value_source.describe();
        if entry.api_override {
            source.push_str(" (rules or values overridden by the api)");
        }
        let defined = match entry.defined {
            crate::flags::set::Defined::Config => "config",
            crate::flags::set::Defined::Api => "api",
        };
        let _ = writeln!(
            out,
            "{:<32} {:<7} {:<16} {:<7} {:<8} {:<7} {}",
            entry.flag.key.as_str(),
            spec.kind.as_str(),
            default,
            spec.public,
            spec.enabled,
            defined,
            source
        );
    }
    out
}
