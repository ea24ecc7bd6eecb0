//! A service other teams would write: it never holds a signing secret and never checks a JWT
//! itself. `tessera-client` verifies each request locally against Tessera's keys, and a
//! session revoked in Tessera is refused here within a second through the revocation feed.
//!
//! - `GET /whoami`: any authenticated caller.
//! - `POST /reports`: needs `reports:write` (the [`Require`] extractor).
//! - `GET /admin/stats`: everything under `/admin` needs `stats:read` (layers).
//! - `GET /healthz`: open; reports whether revocations are being followed.

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tessera_client::axum::{AuthLayer, Require, RequirePermissionLayer};
use tessera_client::{Authenticated, Verifier};

tessera_client::permission!(
    /// Writing reports.
    pub WriteReports = "reports:write"
);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Verifies Tessera tokens.
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The service's routes.
pub fn router(verifier: Verifier) -> Router {
    let admin = Router::new()
        .route("/admin/stats", get(stats))
        // Layers run outside in: authenticate first, then check the permission.
        .layer(RequirePermissionLayer::new("stats:read"))
        .layer(AuthLayer::new(verifier.clone()));
    Router::new()
        .route("/whoami", get(whoami))
        .route("/reports", post(create_report))
        .route("/healthz", get(health))
        .with_state(AppState { verifier })
        .merge(admin)
}

async fn whoami(caller: Authenticated) -> Json<Value> {
    Json(json!({
        "sub": caller.subject(),
        "tid": caller.tenant(),
        "sid": caller.session(),
        "roles": caller.claims().roles,
    }))
}

async fn create_report(Require(caller, ..): Require<WriteReports>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({ "created_by": caller.subject() })),
    )
}

async fn stats(caller: axum::Extension<Authenticated>) -> Json<Value> {
    Json(json!({ "tenant": caller.tenant(), "reports": 0 }))
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Json<Value> {
    Json(json!({
        "revocations_live": state.verifier.revocations_live(),
        "revocations_held": state.verifier.revocation_count(),
    }))
}
