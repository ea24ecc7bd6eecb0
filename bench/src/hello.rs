//! The ceiling: a bare axum server answering `GET /` with `hello`, run as its own process
//! (`tessera-bench hello`) so that it, like Tessera, does not share a runtime with the load
//! generator. Every Tessera figure is read as a share of what this server does in the same
//! run on the same machine.

use axum::Router;
use axum::routing::get;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// The line the server prints once it listens; the rest of the line is its address.
pub const READY_LINE: &str = "hello listening on ";

/// Serves on a free loopback port until standard input closes, which happens when the
/// bench that started it exits, however it exits: the server never outlives its parent.
pub async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{READY_LINE}{}", listener.local_addr()?);
    let app = Router::new().route("/", get(|| async { "hello" }));
    let parent_gone = async {
        let mut sink = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(parent_gone)
        .await?;
    Ok(())
}
