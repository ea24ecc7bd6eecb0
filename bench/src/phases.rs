//! The phases of a run, in the order they run. A phase is a name, the server it loads, a
//! setup that prepares its data through Tessera's real API (or CLI) and returns its load: a
//! script per connection and the statuses it expects. A new capability adds its phase to
//! [`all`]; nothing else in the suite changes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::load::{self, Call, Script, Scripts};
use crate::server::{self, Tessera};

/// A future a phase's setup returns.
pub type Setup<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Load>> + Send + 'a>>;

/// Which server a phase loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The bare hello server: the ceiling.
    Hello,
    /// Tessera.
    Tessera,
}

/// One phase of the run.
pub struct Phase {
    /// Its name in reports.
    pub name: &'static str,
    /// What it measures, one line.
    pub what: &'static str,
    /// The server it loads.
    pub target: Target,
    /// Prepares its data, just before it runs.
    pub setup: for<'a> fn(&'a Context<'a>) -> Setup<'a>,
}

/// Traffic on some connections, and the statuses it may be answered with.
pub struct Workload {
    /// How many connections.
    pub connections: usize,
    /// What each sends.
    pub scripts: Scripts,
    /// Statuses that are a correct answer; any other makes the phase invalid.
    pub expected: &'static [u16],
}

/// What a phase runs: the measured traffic and, optionally, traffic beside it that starts
/// before it and ends after it (a login flood beside `/me`).
pub struct Load {
    /// The traffic whose throughput and latency the phase reports.
    pub measured: Workload,
    /// Background traffic; its statuses are checked too.
    pub beside: Option<Workload>,
}

/// An account the setup created, to log in as.
pub struct Account {
    /// Its email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// What the setups get: the servers, an HTTP client and the data prepared once per
/// database.
pub struct Context<'a> {
    /// Tessera's environment, to run its CLI against the same database (phases that seed
    /// data in bulk import it rather than post it).
    #[allow(dead_code)]
    pub tessera: &'a Tessera,
    /// Where Tessera listens.
    pub addr: SocketAddr,
    /// A client for setup requests (not the load).
    pub http: reqwest::Client,
    /// A Bearer token of the bootstrap admin.
    pub admin_token: String,
    /// Plain accounts, at least as many as any phase has login connections.
    pub accounts: Vec<Account>,
    /// A client with scope `tokens:introspect`: its id and secret.
    pub client: (String, String),
    /// Connections per phase, unless a phase says otherwise.
    pub connections: usize,
}

/// Every phase, in order. The hello ceiling runs first, so the rest are read against it.
pub fn all() -> Vec<Phase> {
    let mut phases = vec![
        Phase {
            name: "hello",
            what: "GET / on the bare axum server: the ceiling",
            target: Target::Hello,
            setup: |ctx| Box::pin(hello(ctx)),
        },
        Phase {
            name: "me bearer",
            what: "GET /api/v1/auth/me with a Bearer access token",
            target: Target::Tessera,
            setup: |ctx| Box::pin(me_bearer(ctx)),
        },
        Phase {
            name: "me cookie",
            what: "GET /api/v1/auth/me with the access cookie",
            target: Target::Tessera,
            setup: |ctx| Box::pin(me_cookie(ctx)),
        },
        Phase {
            name: "refresh",
            what: "POST /api/v1/auth/refresh, each token used once (a chain per connection)",
            target: Target::Tessera,
            setup: |ctx| Box::pin(refresh(ctx)),
        },
        Phase {
            name: "one login at a time",
            what: "POST /api/v1/auth/login on one connection: the time of one login ≈ one hash",
            target: Target::Tessera,
            setup: |ctx| Box::pin(one_login(ctx)),
        },
        Phase {
            name: "login",
            what: "POST /api/v1/auth/login, one account per connection",
            target: Target::Tessera,
            setup: |ctx| Box::pin(login(ctx)),
        },
        Phase {
            name: "me during login flood",
            what: "GET /me (Bearer) while more logins arrive than the hashing queue holds",
            target: Target::Tessera,
            setup: |ctx| Box::pin(me_during_flood(ctx)),
        },
        Phase {
            name: "client credentials",
            what: "POST /oauth2/token, grant_type=client_credentials (HTTP Basic)",
            target: Target::Tessera,
            setup: |ctx| Box::pin(client_credentials(ctx)),
        },
        Phase {
            name: "introspection",
            what: "POST /oauth2/introspect of an active token (HTTP Basic)",
            target: Target::Tessera,
            setup: |ctx| Box::pin(introspection(ctx)),
        },
    ];
    phases.extend(crate::flags::phases());
    phases
}

/// Login connections: a hash takes tens of milliseconds, so a few dozen in flight keep
/// every core hashing without filling the hashing queue (64 by default), which would answer
/// 503 instead.
pub fn login_connections(connections: usize) -> usize {
    connections.min(32)
}

/// Login connections of the flood: more than the hashing queue holds, so it overflows.
pub fn flood_connections(connections: usize) -> usize {
    connections.min(32) + 64
}

/// Accounts the setup creates: one per login connection of any phase, so the per-account
/// limit of logins in flight is never what is measured.
pub fn accounts_needed(connections: usize) -> usize {
    flood_connections(connections).max(login_connections(connections))
}

async fn hello(ctx: &Context<'_>) -> anyhow::Result<Load> {
    Ok(Load {
        measured: Workload {
            connections: ctx.connections,
            scripts: load::repeat(Call::get("/")),
            expected: &[200],
        },
        beside: None,
    })
}

async fn me_bearer(ctx: &Context<'_>) -> anyhow::Result<Load> {
    let token = ctx.login_body(&ctx.accounts[0]).await?["access_token"]
        .as_str()
        .context("login answer without access_token")?
        .to_owned();
    Ok(Load {
        measured: me_with_bearer(ctx.connections, &token)?,
        beside: None,
    })
}

fn me_with_bearer(connections: usize, token: &str) -> anyhow::Result<Workload> {
    let call =
        Call::get("/api/v1/auth/me").with(header::AUTHORIZATION, &format!("Bearer {token}"))?;
    Ok(Workload {
        connections,
        scripts: load::repeat(call),
        expected: &[200],
    })
}

async fn me_cookie(ctx: &Context<'_>) -> anyhow::Result<Load> {
    let account = &ctx.accounts[0];
    let response = ctx
        .http
        .post(ctx.url("/api/v1/auth/login"))
        .json(&json!({"login": account.email, "password": account.password, "delivery": "cookie"}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("cookie login answered {}", response.status());
    }
    let cookies: Vec<String> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    if cookies.is_empty() {
        bail!("cookie login set no cookie");
    }
    let call = Call::get("/api/v1/auth/me").with(header::COOKIE, &cookies.join("; "))?;
    Ok(Load {
        measured: Workload {
            connections: ctx.connections,
            scripts: load::repeat(call),
            expected: &[200],
        },
        beside: None,
    })
}

/// A refresh token chain: each answer's successor is the next token sent, and a spent token
/// is never sent again (Tessera revokes the session when a rotated token comes back).
pub struct RefreshChain {
    /// The next token to send; `None` once a refresh was refused.
    pub token: Option<String>,
}

impl Script for RefreshChain {
    fn next(&mut self) -> Option<Call> {
        let token = self.token.take()?;
        Some(Call::post_json(
            "/api/v1/auth/refresh",
            &json!({ "refresh_token": token }),
        ))
    }

    fn answer(&mut self, status: StatusCode, _headers: &HeaderMap, body: &Bytes) {
        if status == StatusCode::OK {
            self.token = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
        }
    }
}

async fn refresh(ctx: &Context<'_>) -> anyhow::Result<Load> {
    // One session per connection, logged in before the phase so no hash lands inside it.
    let mut tokens = Vec::with_capacity(ctx.connections);
    for n in 0..ctx.connections {
        let answer = ctx
            .login_body(&ctx.accounts[n % ctx.accounts.len()])
            .await?;
        let token = answer["refresh_token"]
            .as_str()
            .context("login answer without refresh_token")?;
        tokens.push(token.to_owned());
    }
    let tokens = Arc::new(tokens);
    Ok(Load {
        measured: Workload {
            connections: ctx.connections,
            scripts: Arc::new(move |n| {
                Box::new(RefreshChain {
                    token: tokens.get(n).cloned(),
                })
            }),
            expected: &[200],
        },
        beside: None,
    })
}

fn logins(ctx: &Context<'_>, connections: usize, expected: &'static [u16]) -> Workload {
    let calls = ctx.accounts[..connections.min(ctx.accounts.len())]
        .iter()
        .map(|a| {
            Call::post_json(
                "/api/v1/auth/login",
                &json!({"login": a.email, "password": a.password, "delivery": "body"}),
            )
        })
        .collect();
    Workload {
        connections,
        scripts: load::one_each(calls),
        expected,
    }
}

async fn login(ctx: &Context<'_>) -> anyhow::Result<Load> {
    Ok(Load {
        measured: logins(ctx, login_connections(ctx.connections), &[200]),
        beside: None,
    })
}

async fn one_login(ctx: &Context<'_>) -> anyhow::Result<Load> {
    Ok(Load {
        measured: logins(ctx, 1, &[200]),
        beside: None,
    })
}

async fn me_during_flood(ctx: &Context<'_>) -> anyhow::Result<Load> {
    let token = ctx.login_body(&ctx.accounts[0]).await?["access_token"]
        .as_str()
        .context("login answer without access_token")?
        .to_owned();
    Ok(Load {
        measured: me_with_bearer(ctx.connections, &token)?,
        // 503 with Retry-After is the designed answer when the hashing queue is full.
        beside: Some(logins(ctx, flood_connections(ctx.connections), &[200, 503])),
    })
}

fn basic(ctx: &Context<'_>) -> String {
    let (id, secret) = &ctx.client;
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn client_credentials(ctx: &Context<'_>) -> anyhow::Result<Load> {
    let call = Call::post_form("/oauth2/token", "grant_type=client_credentials")
        .with(header::AUTHORIZATION, &basic(ctx))?;
    Ok(Load {
        measured: Workload {
            connections: ctx.connections,
            scripts: load::repeat(call),
            expected: &[200],
        },
        beside: None,
    })
}

async fn introspection(ctx: &Context<'_>) -> anyhow::Result<Load> {
    let answer: Value = ctx
        .http
        .post(ctx.url("/oauth2/token"))
        .header(header::AUTHORIZATION, basic(ctx))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = answer["access_token"]
        .as_str()
        .context("token answer without access_token")?;
    let body = format!("token={token}");
    // Measuring the answer for an inactive token would measure the wrong path.
    let check: Value = ctx
        .http
        .post(ctx.url("/oauth2/introspect"))
        .header(header::AUTHORIZATION, basic(ctx))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if check["active"] != json!(true) {
        bail!("the introspected token is not active: {check}");
    }
    let call =
        Call::post_form("/oauth2/introspect", &body).with(header::AUTHORIZATION, &basic(ctx))?;
    Ok(Load {
        measured: Workload {
            connections: ctx.connections,
            scripts: load::repeat(call),
            expected: &[200],
        },
        beside: None,
    })
}

impl Context<'_> {
    /// `path` on Tessera.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Logs `account` in with tokens in the body, and returns the answer.
    pub async fn login_body(&self, account: &Account) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(
                &json!({"login": account.email, "password": account.password, "delivery": "body"}),
            )
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "login of {} answered {status}: {}",
                account.email,
                response.text().await.unwrap_or_default()
            );
        }
        Ok(response.json().await?)
    }
}

/// Logs the admin in, creates `accounts` plain accounts and a client with scope
/// `tokens:introspect`, all through the admin API.
pub async fn prepare<'a>(
    tessera: &'a Tessera,
    addr: SocketAddr,
    accounts: usize,
    connections: usize,
) -> anyhow::Result<Context<'a>> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let mut ctx = Context {
        tessera,
        addr,
        http,
        admin_token: String::new(),
        accounts: Vec::new(),
        client: (String::new(), String::new()),
        connections,
    };
    let admin = Account {
        email: server::ADMIN_EMAIL.to_owned(),
        password: server::ADMIN_PASSWORD.to_owned(),
    };
    ctx.admin_token = ctx.login_body(&admin).await?["access_token"]
        .as_str()
        .context("admin login answer without access_token")?
        .to_owned();

    let mut created = Vec::with_capacity(accounts);
    // A few at a time: each creation hashes a password, and the hashing pool is the cores.
    for chunk in (0..accounts).collect::<Vec<_>>().chunks(4) {
        let requests = chunk.iter().map(|n| {
            let account = Account {
                email: format!("bench-user-{n}@example.com"),
                password: format!("bench-password-{n:05}"),
            };
            let request = ctx
                .http
                .post(ctx.url("/api/v1/admin/users"))
                .bearer_auth(&ctx.admin_token)
                .json(&json!({"email": account.email, "password": account.password}))
                .send();
            async move {
                let response = request.await?;
                if !response.status().is_success() {
                    bail!(
                        "creating {} answered {}: {}",
                        account.email,
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                }
                Ok(account)
            }
        });
        for account in futures_util::future::join_all(requests).await {
            created.push(account?);
        }
    }
    ctx.accounts = created;

    let client: Value = ctx
        .http
        .post(ctx.url("/api/v1/admin/clients"))
        .bearer_auth(&ctx.admin_token)
        .json(&json!({"name": "bench", "scopes": ["tokens:introspect"]}))
        .send()
        .await?
        .error_for_status()
        .context("create the bench client")?
        .json()
        .await?;
    let id = client["client_id"]
        .as_str()
        .or_else(|| client["id"].as_str())
        .context("client answer without an id")?;
    let secret = client["client_secret"]
        .as_str()
        .context("client answer without client_secret")?;
    ctx.client = (id.to_owned(), secret.to_owned());
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_sent(call: &Call) -> String {
        let body: Value = serde_json::from_slice(call.body()).expect("JSON body");
        body["refresh_token"].as_str().expect("a token").to_owned()
    }

    #[test]
    fn a_refresh_token_is_sent_once_and_then_its_successor() {
        let mut chain = RefreshChain {
            token: Some("first".to_owned()),
        };
        let call = chain.next().expect("a first request");
        assert_eq!(token_sent(&call), "first");
        // Nothing to send until the answer names the successor.
        assert!(chain.next().is_none());
        let answer = Bytes::from(r#"{"access_token":"a","refresh_token":"second"}"#);
        chain.answer(StatusCode::OK, &HeaderMap::new(), &answer);
        assert_eq!(
            token_sent(&chain.next().expect("a second request")),
            "second"
        );
    }

    #[test]
    fn a_refused_refresh_ends_the_chain() {
        let mut chain = RefreshChain {
            token: Some("first".to_owned()),
        };
        chain.next();
        chain.answer(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &Bytes::new());
        assert!(chain.next().is_none());
    }
}
