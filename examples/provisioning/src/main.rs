//! Runs the provisioning example.
//!
//! ```text
//! TESSERA_URL=http://127.0.0.1:8080 TESSERA_CLIENT_ID=… TESSERA_CLIENT_SECRET=tss_… \
//! TESSERA_TENANT_ID=… cargo run -p tessera-example-provisioning
//! ```
//!
//! The client needs `events:publish`; Tessera needs this page's origin
//! (`http://127.0.0.1:3001`) in `http.cors_allowed_origins`.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tessera_example_provisioning::{Publisher, router};

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} must be set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let tessera = var("TESSERA_URL")?.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{tessera}/oauth2/token"))
        .basic_auth(
            var("TESSERA_CLIENT_ID")?,
            Some(var("TESSERA_CLIENT_SECRET")?),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=events:publish")
        .send()
        .await
        .context("cannot reach Tessera")?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("no access token: is the client allowed events:publish?")?
        .to_owned();
    let publisher = Publisher {
        tessera,
        token,
        tenant_id: var("TESSERA_TENANT_ID")?,
        http,
    };
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    tracing::info!(%bind, "provisioning example listening");
    axum::serve(listener, router(publisher, Duration::from_millis(800))).await?;
    Ok(())
}
