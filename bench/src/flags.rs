//! The flag phases: `GET /api/v1/platform/config` anonymous and with a Bearer token, and the
//! OFREP bulk evaluation with 10 and then 100 flags. The flags are created through the admin
//! API by a platform administrator the CLI creates, so the server evaluates what a real
//! deployment would: a mix of types, targeting rules and rollouts.

use std::process::Stdio;

use anyhow::{Context as _, bail};
use http::header;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::load::{self, Call};
use crate::phases::{Context, Load, Phase, Target, Workload};

/// The platform administrator the setup creates.
const OPS_EMAIL: &str = "bench-ops@example.com";
const OPS_PASSWORD: &str = "bench-ops-password-1";

/// The flag phases, in order (the flag count only grows).
pub fn phases() -> Vec<Phase> {
    vec![
        Phase {
            name: "platform config anonymous",
            what: "GET /api/v1/platform/config without credentials (10 flags, public ones shown)",
            target: Target::Tessera,
            setup: |ctx| Box::pin(platform_config(ctx, false)),
        },
        Phase {
            name: "platform config bearer",
            what: "GET /api/v1/platform/config with a Bearer token (10 flags evaluated)",
            target: Target::Tessera,
            setup: |ctx| Box::pin(platform_config(ctx, true)),
        },
        Phase {
            name: "ofrep bulk 10 flags",
            what: "POST /ofrep/v1/evaluate/flags with a Bearer token, 10 flags",
            target: Target::Tessera,
            setup: |ctx| Box::pin(ofrep_bulk(ctx, 10)),
        },
        Phase {
            name: "ofrep bulk 100 flags",
            what: "POST /ofrep/v1/evaluate/flags with a Bearer token, 100 flags",
            target: Target::Tessera,
            setup: |ctx| Box::pin(ofrep_bulk(ctx, 100)),
        },
    ]
}

async fn platform_config(ctx: &Context<'_>, signed_in: bool) -> anyhow::Result<Load> {
    ensure_flags(ctx, 10).await?;
    let mut call = Call::get("/api/v1/platform/config");
    if signed_in {
        call = call.with(
            header::AUTHORIZATION,
            &format!("Bearer {}", user_token(ctx).await?),
        )?;
    }
    Ok(repeated(ctx, call))
}

/// `call` again and again on every connection, answered 200.
fn repeated(ctx: &Context<'_>, call: Call) -> Load {
    Load {
        measured: Workload {
            connections: ctx.connections,
            scripts: load::repeat(call),
            expected: &[200],
        },
        beside: None,
    }
}

async fn ofrep_bulk(ctx: &Context<'_>, flags: usize) -> anyhow::Result<Load> {
    ensure_flags(ctx, flags).await?;
    let token = user_token(ctx).await?;
    let call = Call::post_json(
        "/ofrep/v1/evaluate/flags",
        &json!({"context": {"targetingKey": "bench-user", "plan": "pro"}}),
    )
    .with(header::AUTHORIZATION, &format!("Bearer {token}"))?;
    Ok(repeated(ctx, call))
}

async fn user_token(ctx: &Context<'_>) -> anyhow::Result<String> {
    Ok(ctx.login_body(&ctx.accounts[0]).await?["access_token"]
        .as_str()
        .context("login answer without access_token")?
        .to_owned())
}

/// Makes sure flags `bench.flag.000` … up to `count` exist (creating the platform
/// administrator on first use).
async fn ensure_flags(ctx: &Context<'_>, count: usize) -> anyhow::Result<()> {
    let token = ops_token(ctx).await?;
    for n in 0..count {
        let response = ctx
            .http
            .post(ctx.url("/api/v1/admin/flags"))
            .bearer_auth(&token)
            .json(&flag(n))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            bail!(
                "creating flag {n} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// The `n`th bench flag: bools with a role rule, strings with a rollout, numbers, objects.
fn flag(n: usize) -> Value {
    let key = format!("bench.flag.{n:03}");
    match n % 4 {
        0 => json!({"key": key, "type": "bool", "default": false, "public": true,
            "rules": [{"when": [{"attribute": "roles", "op": "in", "value": ["beta"]}], "variant": "on"}]}),
        1 => json!({"key": key, "type": "string", "default": "a", "public": true,
            "variants": {"a": "a", "b": "b"},
            "rollout": [{"variant": "a", "percent": 50}, {"variant": "b", "percent": 50}]}),
        2 => json!({"key": key, "type": "number", "default": 42, "public": n % 8 == 2}),
        _ => json!({"key": key, "type": "object", "default": {"limit": n, "mode": "fast"}}),
    }
}

/// A platform administrator's token; the account is created with the CLI on first use.
async fn ops_token(ctx: &Context<'_>) -> anyhow::Result<String> {
    let login = |ctx: &Context<'_>| {
        ctx.http
            .post(ctx.url("/api/v1/auth/login"))
            .json(&json!({"login": OPS_EMAIL, "password": OPS_PASSWORD, "tenant": "system", "delivery": "body"}))
            .send()
    };
    let mut response = login(ctx).await?;
    if !response.status().is_success() {
        create_ops(ctx).await?;
        response = login(ctx).await?;
    }
    let status = response.status();
    if !status.is_success() {
        bail!("platform administrator login answered {status}");
    }
    let body: Value = response.json().await?;
    Ok(body["access_token"]
        .as_str()
        .context("login answer without access_token")?
        .to_owned())
}

async fn create_ops(ctx: &Context<'_>) -> anyhow::Result<()> {
    let mut command = ctx.tessera.command();
    command
        .args([
            "users", "create", "--email", OPS_EMAIL, "--tenant", "system",
        ])
        .args(["--role", "platform_admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("run tessera users create")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{OPS_PASSWORD}\n").as_bytes())
            .await?;
    }
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        bail!(
            "tessera users create (platform admin) failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
