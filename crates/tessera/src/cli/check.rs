//! `tessera check`: the preflight. Every check runs and is printed as ok or failed with its
//! reason; the exit code is non-zero if any failed (2 when the config itself is invalid).

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::EXIT_CONFIG;
use crate::db::{Create, Db};
use crate::health::{self, Check};
use crate::keys;

pub(super) async fn run(path: Option<&Path>, as_json: bool) -> ExitCode {
    let mut checks = Vec::new();
    let config = match super::checked_config(path) {
        Ok(config) => {
            checks.push(Check::ok(
                "config",
                format!("valid ({})", config.environment.as_str()),
            ));
            Some(config)
        }
        Err(e) => {
            checks.extend(
                e.problems
                    .iter()
                    .map(|p| Check::failed("config", p.to_string())),
            );
            None
        }
    };
    if let Some(config) = &config {
        match Db::connect(&config.database, Create::Never).await {
            Ok(db) => {
                let database = health::database_checks(&db).await;
                let schema_ready = database.iter().all(|c| c.ok);
                checks.extend(database);
                if schema_ready {
                    checks.push(keys::preflight(config, &db).await);
                }
                db.close().await;
            }
            Err(e) => checks.push(Check::failed("database", e.to_string())),
        }
        checks.push(crate::bus::preflight(config).await);
        if let Some(url) = &config.redis.url {
            checks.push(health::redis_check(url.expose()).await);
        } else if config.cluster.instances > 1 {
            checks.push(Check::ok(
                "redis",
                "not configured: each instance counts rate limits alone",
            ));
        }
    }

    let ok = checks.iter().all(|c| c.ok);
    if as_json {
        println!("{}", json!({ "ok": ok, "checks": checks }));
    } else {
        for check in &checks {
            let mark = if check.ok { "ok    " } else { "FAILED" };
            println!("{mark}  {:<11} {}", check.name, check.detail);
        }
    }
    match (ok, config.is_some()) {
        (true, _) => ExitCode::SUCCESS,
        (false, false) => ExitCode::from(EXIT_CONFIG),
        (false, true) => ExitCode::FAILURE,
    }
}
