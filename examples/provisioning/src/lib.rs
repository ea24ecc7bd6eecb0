//! A provisioning workflow as the platforms run it (validate configuration, allocate IP/VLAN,
//! configure ONT/router, activate RADIUS, test connectivity, complete), reporting each step
//! through Tessera's real-time hub, and a page that shows the progress live.
//!
//! The workflow is a service: it publishes with its client-credentials token
//! (`events:publish`) to `tenant:<tenant id>:service-lifecycle:<instance id>`, event type
//! `service.provisioning.progress`, data `{service_instance_id, status, step, total_steps,
//! message}`, one `Idempotency-Key` per step so a retried step is never shown twice.
//!
//! The page (`GET /`) signs in to Tessera with cookies and follows the channel with
//! `EventSource` (`withCredentials`), listening for `service.provisioning.progress` by name;
//! it holds no token a script could read. Tessera must list this service's origin in
//! `http.cors_allowed_origins`, and the user needs `events:subscribe` for the topic (for
//! example a role granting `events.service-lifecycle:subscribe`).

use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The steps, in order.
pub const STEPS: [&str; 6] = [
    "Validate configuration",
    "Allocate IP/VLAN",
    "Configure ONT/router",
    "Activate RADIUS",
    "Test connectivity",
    "Complete",
];

/// The event type every step is published as.
pub const EVENT_TYPE: &str = "service.provisioning.progress";

/// The channel of one service instance's lifecycle in `tenant_id`.
pub fn channel(tenant_id: &str, instance_id: &str) -> String {
    format!("tenant:{tenant_id}:service-lifecycle:{instance_id}")
}

/// Where the workflow publishes, and as whom.
#[derive(Clone, Debug)]
pub struct Publisher {
    /// Tessera's base URL.
    pub tessera: String,
    /// A client-credentials access token holding `events:publish`.
    pub token: String,
    /// The tenant the instances belong to.
    pub tenant_id: String,
    /// HTTP client.
    pub http: reqwest::Client,
}

/// The data of step `step` (1-based) of `instance_id`.
pub fn progress(instance_id: &str, step: usize) -> Value {
    let status = if step == STEPS.len() {
        "completed"
    } else {
        "in_progress"
    };
    json!({
        "service_instance_id": instance_id,
        "status": status,
        "step": step,
        "total_steps": STEPS.len(),
        "message": STEPS[step - 1],
    })
}

impl Publisher {
    /// Publishes one step; a retry with the same instance and step is answered from
    /// Tessera's idempotency record instead of publishing twice.
    pub async fn step(&self, instance_id: &str, step: usize) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/api/v1/realtime/publish", self.tessera))
            .bearer_auth(&self.token)
            .header(
                "idempotency-key",
                format!("provisioning-{instance_id}-{step}"),
            )
            .json(&json!({
                "channel": channel(&self.tenant_id, instance_id),
                "type": EVENT_TYPE,
                "data": progress(instance_id, step),
            }))
            .send()
            .await
            .context("cannot reach Tessera")?;
        let status = response.status();
        let body: Value = response.json().await.context("unreadable answer")?;
        anyhow::ensure!(status.is_success(), "publishing failed: {status} {body}");
        Ok(body)
    }

    /// Runs the six steps of `instance_id`, `pause` apart (the real work in between).
    pub async fn run(&self, instance_id: &str, pause: Duration) -> anyhow::Result<()> {
        for step in 1..=STEPS.len() {
            tokio::time::sleep(pause).await;
            self.step(instance_id, step).await?;
        }
        Ok(())
    }
}

/// The page and `POST /provision`, which starts a workflow and returns its channel.
pub fn router(publisher: Publisher, pause: Duration) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/provision", post(provision))
        .with_state((publisher, pause))
}

async fn page(State((publisher, _)): State<(Publisher, Duration)>) -> Html<String> {
    Html(PAGE.replace("__TESSERA__", &publisher.tessera))
}

async fn provision(State((publisher, pause)): State<(Publisher, Duration)>) -> Json<Value> {
    let instance = uuid::Uuid::new_v4().to_string();
    let channel = channel(&publisher.tenant_id, &instance);
    let id = instance.clone();
    tokio::spawn(async move {
        if let Err(e) = publisher.run(&id, pause).await {
            tracing::warn!(error = %e, instance = %id, "provisioning failed");
        }
    });
    Json(json!({"service_instance_id": instance, "channel": channel}))
}

/// The page: sign in (cookies), start a workflow, watch it.
pub const PAGE: &str = include_str!("page.html");
