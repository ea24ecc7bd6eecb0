//! Liveness and readiness: `GET /healthz` says the process answers, `GET /readyz` says it can
//! serve (database reachable, schema current, signing keys) and reports what degrades it
//! (the change bus, Redis). The same checks back `tessera check`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;

use crate::db::Db;
use crate::http::openapi::ApiRouter;
use crate::http::{ApiError, Json};
use crate::state::AppState;
use utoipa_axum::routes;

/// A readiness probe must answer quickly even when the database hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One named check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short stable name (`database`, `migrations`, …).
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found; operator-facing, so never shown on the public readiness endpoint.
    pub detail: String,
}

impl Check {
    /// A passed check.
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
        }
    }

    /// A failed check.
    pub fn failed(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Routes of this module.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process is up", body = Object))
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses((status = 200, description = "Ready, or degraded (serving without Redis or the bus)", body = Object))
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut checks = database_checks(state.db()).await;
    checks.push(state.keys().health());
    let mut summary: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|c| (c.name.to_owned(), json!(if c.ok { "ok" } else { "failed" })))
        .collect();
    if checks.iter().all(|c| c.ok) {
        let mut status = "ready";
        // Without its bus an instance still serves, but learns of changes made elsewhere
        // only at its reconciliation reads: degraded.
        let bus = state.bus().health();
        if bus.ok {
            summary.insert("bus".into(), json!("ok"));
        } else {
            tracing::warn!(detail = %bus.detail, "the change bus is not connected");
            summary.insert("bus".into(), json!("degraded"));
            status = "degraded";
        }
        // Without Redis, limits are counted per instance: still serving, but degraded.
        let redis = tokio::time::timeout(CHECK_TIMEOUT, state.limiter().ping()).await;
        match redis {
            Ok(None) => {}
            Ok(Some(true)) => {
                summary.insert("redis".into(), json!("ok"));
            }
            Ok(Some(false)) | Err(_) => {
                summary.insert("redis".into(), json!("degraded"));
                status = "degraded";
            }
        }
        return Ok(Json(json!({ "status": status, "checks": summary })));
    }
    for check in checks.iter().filter(|c| !c.ok) {
        tracing::warn!(check = check.name, detail = %check.detail, "not ready");
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "a dependency of this instance is unavailable",
    )
    .with_extra(json!({ "checks": summary }))
    .retry_after(5))
}

/// Redis reachable, when configured (`tessera check`).
pub async fn redis_check(url: &str) -> Check {
    let ping = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => Check::ok("redis", "reachable"),
        Ok(Err(e)) => Check::failed("redis", e.to_string()),
        Err(_) => Check::failed("redis", "no answer within 2 s"),
    }
}

/// Database reachable, then schema current.
pub async fn database_checks(db: &Db) -> Vec<Check> {
    let reachable = match tokio::time::timeout(CHECK_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => Check::ok("database", format!("{:?} reachable", db.backend())),
        Ok(Err(e)) => Check::failed("database", e.to_string()),
        Err(_) => Check::failed("database", "no answer within 2 s"),
    };
    if !reachable.ok {
        let skipped = Check::failed("migrations", "not checked: database unreachable");
        return vec![reachable, skipped];
    }
    let migrations = match tokio::time::timeout(CHECK_TIMEOUT, db.schema_is_current()).await {
        Ok(Ok(true)) => Check::ok("migrations", "schema current"),
        Ok(Ok(false)) => Check::failed(
            "migrations",
            "schema differs from this binary; run `tessera migrate up`",
        ),
        Ok(Err(e)) => Check::failed("migrations", e.to_string()),
        Err(_) => Check::failed("migrations", "no answer within 2 s"),
    };
    vec![reachable, migrations]
}
