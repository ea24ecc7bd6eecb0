//! Runs the example service.
//!
//! ```text
//! TESSERA_ISSUER=http://127.0.0.1:8080 TESSERA_AUDIENCE=platform \
//! TESSERA_CLIENT_ID=… TESSERA_CLIENT_SECRET=tss_… \
//! cargo run -p tessera-example-axum-service
//! ```
//!
//! The client is a Tessera service account allowed `tokens:introspect`
//! (`tessera clients create --name reports --scope tokens:introspect`); its id is also the
//! `audience` browsers name when they ask Tessera for a ticket to `GET /chat`.

use anyhow::Context as _;
use tessera_client::{TicketRedeemer, Verifier};

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} must be set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let (issuer, client_id, secret) = (
        var("TESSERA_ISSUER")?,
        var("TESSERA_CLIENT_ID")?,
        var("TESSERA_CLIENT_SECRET")?,
    );
    let redeemer = TicketRedeemer::new(&issuer, &client_id, &secret);
    let verifier = Verifier::builder(issuer, var("TESSERA_AUDIENCE")?)
        .client_credentials(client_id, secret)
        .build()
        .await
        .context("cannot reach Tessera")?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    tracing::info!(%bind, "reports service listening");
    let app = tessera_example_axum_service::router(verifier.clone()).merge(
        tessera_example_axum_service::chat_router(verifier, redeemer),
    );
    axum::serve(listener, app).await?;
    Ok(())
}
