//! The real-time hub through real clients (`tokio-tungstenite`, `reqwest` reading SSE): every
//! way a handshake authenticates or is refused (always before the upgrade), connections that
//! die with their session on this and on another instance, tenant isolation, resume and
//! history, slow consumers, idempotent publishing, and tickets redeemed by services.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Method;
use serde_json::{Value, json};
use tessera::config::Config;
use tessera::realtime::channel::ChannelName;
use tessera::realtime::hub::SLOW_CONSUMER;
use tessera::tenants::SYSTEM_TENANT_ID;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{TestApp, TestDatabase, basic, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// Generous: nothing here measures speed, a slow machine must still pass.
const DEADLINE: Duration = Duration::from_secs(15);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A signed-in user: its access token and session.
struct User {
    token: String,
    session_id: String,
    user_id: String,
}

async fn sign_in(app: &TestApp, email: &str, roles: &[&str]) -> User {
    let user = app.create_user(email, PASSWORD, roles, None).await;
    let login = app.login(email, PASSWORD).await;
    User {
        token: login["access_token"].as_str().expect("token").to_owned(),
        session_id: login["session_id"].as_str().expect("session").to_owned(),
        user_id: user.id,
    }
}

fn ws_url(app: &TestApp, query: &str) -> String {
    format!(
        "{}/api/v1/realtime/ws{query}",
        app.address.replace("http://", "ws://")
    )
}

/// Opens a WebSocket; a refused handshake comes back as its HTTP status and problem body.
async fn ws_open(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    let mut request = ws_url(app, query).into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            assert_eq!(content_type.as_deref(), Some("application/problem+json"));
            let body = response.body().clone().unwrap_or_default();
            Err((status, serde_json::from_slice(&body).expect("problem JSON")))
        }
        Err(e) => panic!("handshake failed outside HTTP: {e}"),
    }
}

async fn ws_bearer(app: &TestApp, token: &str) -> Ws {
    ws_open(app, "", &[("authorization", &format!("Bearer {token}"))])
        .await
        .expect("opened")
}

fn refused(result: Result<Ws, (u16, Value)>, status: u16, code: &str) {
    match result {
        Ok(_) => panic!("the handshake was accepted; expected {status} {code}"),
        Err((got, body)) => {
            assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        }
    }
}

/// The next JSON message, skipping pings.
async fn next_json(ws: &mut Ws) -> Value {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    };
    timeout(DEADLINE, read).await.expect("a message in time")
}

/// Reads until the server closes; returns the close code and reason.
async fn close_of(ws: &mut Ws) -> (u16, String) {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    };
    timeout(DEADLINE, read).await.expect("closed in time")
}

async fn send_json(ws: &mut Ws, message: Value) {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .expect("sent");
}

async fn subscribe(ws: &mut Ws, channel: &str) -> Value {
    send_json(ws, json!({"type": "subscribe", "channel": channel})).await;
    let answer = next_json(ws).await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    answer
}

async fn publish(app: &TestApp, channel: &str, kind: &str, data: Value) -> i64 {
    let channel = ChannelName::parse(channel).expect("channel");
    app.state
        .realtime()
        .publish(&channel, kind, data)
        .await
        .expect("published")
        .id
}

async fn next_event(ws: &mut Ws) -> Value {
    let message = next_json(ws).await;
    assert_eq!(message["type"], "event", "{message}");
    message["event"].clone()
}

async fn ticket(app: &TestApp, token: &str, body: Value) -> String {
    let response = app
        .send(Method::POST, "/api/v1/realtime/ticket", token, Some(body))
        .await;
    assert_eq!(response.status(), 201);
    let minted: Value = response.json().await.expect("JSON");
    assert_eq!(minted["expires_in"], 30);
    minted["ticket"].as_str().expect("ticket").to_owned()
}

/// A Server-Sent Events reader over a streaming `reqwest` response.
struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

/// One SSE event: `event:`, `id:`, and `data:` parsed as JSON.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

impl SseStream {
    async fn open(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = app
            .client
            .get(app.url(&format!("/api/v1/realtime/sse{query}")))
            .header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("sent")
    }

    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        let read = async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    if let Some(event) = parse_block(&block) {
                        return Some(event);
                    }
                    continue;
                }
                match self.response.chunk().await.expect("stream readable") {
                    Some(bytes) => self
                        .buffer
                        .push_str(std::str::from_utf8(&bytes).expect("utf-8")),
                    None => return None,
                }
            }
        };
        timeout(DEADLINE, read).await.expect("an SSE event in time")
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = "message".to_owned();
    let mut id = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    (!data.is_empty()).then(|| SseEvent {
        event,
        id,
        data: serde_json::from_str(&data).expect("JSON data"),
    })
}

/// A second instance on the same database (PostgreSQL: a real scale-out).
struct Instance {
    app: TestApp,
}

async fn second_instance(first: &TestApp) -> Instance {
    let config: Config = first.state.config().clone();
    // Its own port; everything else, the database, the data folder (its master key) and the
    // public URL (the token issuer), is the first instance's.
    let app = spawn_app_with(TestDatabase::sqlite(), move |c| {
        let bind = c.http.bind;
        *c = config;
        c.http.bind = bind;
    })
    .await;
    Instance { app }
}

on_each_database! {
    async fn a_websocket_opens_with_bearer_cookie_or_ticket(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;
        let user_channel = format!("user:{}", ada.user_id);

        let mut by_bearer = ws_bearer(&app, &ada.token).await;
        subscribe(&mut by_bearer, &user_channel).await;

        let origin = app.state.config().public_url.origin().ascii_serialization();
        let cookie = format!("access_token={}", ada.token);
        let mut by_cookie = ws_open(&app, "", &[("cookie", &cookie), ("origin", &origin)])
            .await
            .expect("cookie opens");
        subscribe(&mut by_cookie, &user_channel).await;

        let first = ticket(&app, &ada.token, json!({})).await;
        let mut by_ticket = ws_open(&app, &format!("?ticket={first}&channel={user_channel}"), &[])
            .await
            .expect("ticket opens");
        let greeting = next_json(&mut by_ticket).await;
        assert_eq!(greeting, json!({"type": "subscribed", "channel": user_channel, "recovered": true}));

        let id = publish(&app, &user_channel, "note.created", json!({"n": 1})).await;
        for ws in [&mut by_bearer, &mut by_cookie, &mut by_ticket] {
            let event = next_event(ws).await;
            assert_eq!(event["id"], id);
            assert_eq!(event["channel"], user_channel);
            assert_eq!(event["type"], "note.created");
            assert_eq!(event["data"], json!({"n": 1}));
            assert!(event["time"].as_i64().is_some_and(|t| t > 1_700_000_000_000));
        }
        send_json(&mut by_bearer, json!({"type": "ping"})).await;
        assert_eq!(next_json(&mut by_bearer).await["type"], "pong");
        app.stop().await;
    }
}

on_each_database! {
    async fn refused_handshakes_are_http_problems_before_any_upgrade(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;
        let admin = sign_in(&app, "root@example.com", &["admin"]).await;

        refused(ws_open(&app, "", &[]).await, 401, "unauthenticated");
        refused(ws_open(&app, "", &[("authorization", "Bearer nonsense")]).await, 401, "invalid_token");
        refused(ws_open(&app, "?ticket=rtk_made_up", &[]).await, 401, "invalid_ticket");

        // A ticket opens one connection, once.
        let once = ticket(&app, &ada.token, json!({})).await;
        ws_open(&app, &format!("?ticket={once}"), &[]).await.expect("first use");
        refused(ws_open(&app, &format!("?ticket={once}"), &[]).await, 401, "invalid_ticket");

        // Expired.
        let stale = ticket(&app, &ada.token, json!({})).await;
        sqlx::query("UPDATE realtime_tickets SET expires_at = expires_at - 31")
            .execute(app.state.db().pool())
            .await
            .expect("aged");
        refused(ws_open(&app, &format!("?ticket={stale}"), &[]).await, 401, "invalid_ticket");

        // Minted for a service: not a key to the hub (and spent by the attempt).
        let (client_id, _) = app.new_client(&admin.token, json!(["events:publish"])).await;
        let foreign = ticket(&app, &ada.token, json!({"audience": client_id})).await;
        refused(ws_open(&app, &format!("?ticket={foreign}"), &[]).await, 401, "invalid_ticket");

        // A long-lived token in the query string is refused outside a migration window.
        let query = format!("?access_token={}", ada.token);
        refused(ws_open(&app, &query, &[]).await, 401, "query_token_refused");
        let sse = SseStream::open(&app, &format!("{query}&channel=flags"), &[]).await;
        problem(sse, 401, "query_token_refused").await;

        // A cookie from a page on another site.
        let cookie = format!("access_token={}", ada.token);
        refused(
            ws_open(&app, "", &[("cookie", &cookie), ("origin", "https://evil.example")]).await,
            403,
            "origin_not_allowed",
        );

        // Channels named in the handshake are permitted before it is accepted.
        let other_user = format!("?channel=user:{}", admin.user_id);
        refused(ws_open(&app, &other_user, &[("authorization", &format!("Bearer {}", ada.token))]).await, 403, "forbidden_channel");
        refused(ws_open(&app, "?channel=bogus", &[("authorization", &format!("Bearer {}", ada.token))]).await, 422, "invalid_channel");

        // A session that ended cannot open anything.
        let logout = app.post_bearer("/api/v1/auth/logout", &ada.token).await;
        assert!(logout.status().is_success());
        refused(ws_open(&app, "", &[("authorization", &format!("Bearer {}", ada.token))]).await, 401, "session_ended");
        let sse = SseStream::open(&app, "?channel=flags", &[("authorization", &format!("Bearer {}", ada.token))]).await;
        problem(sse, 401, "session_ended").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn query_tokens_work_inside_the_migration_window_only() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.realtime.legacy_query_token_until = Some("2999-12-31".into());
    })
    .await;
    let ada = sign_in(&app, "ada@example.com", &["user"]).await;
    let mut ws = ws_open(
        &app,
        &format!("?access_token={}&channel=flags", ada.token),
        &[],
    )
    .await
    .expect("inside the window");
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("tessera_realtime_legacy_query_tokens_total"),
        "counted"
    );
    app.stop().await;

    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.realtime.legacy_query_token_until = Some("2020-01-31".into());
    })
    .await;
    let ada = sign_in(&app, "ada@example.com", &["user"]).await;
    refused(
        ws_open(&app, &format!("?access_token={}", ada.token), &[]).await,
        401,
        "query_token_refused",
    );
    app.stop().await;
}

on_each_database! {
    async fn every_way_a_session_ends_closes_its_sockets_with_4401(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = sign_in(&app, "root@example.com", &["admin"]).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;

        // Revoked from another request (another session of the same user).
        let mut ws = ws_bearer(&app, &ada.token).await;
        let other = app.login("ada@example.com", PASSWORD).await;
        let other_token = other["access_token"].as_str().expect("token");
        let path = format!("/api/v1/auth/sessions/{}/revoke", ada.session_id);
        assert!(app.post_bearer(&path, other_token).await.status().is_success());
        assert_eq!(close_of(&mut ws).await, (4401, "session ended".to_owned()));

        // Revoke-others, from the other session.
        let third = app.login("ada@example.com", PASSWORD).await;
        let mut ws = ws_bearer(&app, third["access_token"].as_str().expect("token")).await;
        let mut survivor = ws_bearer(&app, other_token).await;
        assert!(app.post_bearer("/api/v1/auth/sessions/revoke-others", other_token).await.status().is_success());
        assert_eq!(close_of(&mut ws).await.0, 4401);

        // Password change ends the other sessions too; the current one lives on.
        let fourth = app.login("ada@example.com", PASSWORD).await;
        let mut ws = ws_bearer(&app, fourth["access_token"].as_str().expect("token")).await;
        let changed = app
            .send(Method::POST, "/api/v1/auth/password", other_token,
                Some(json!({"current_password": PASSWORD, "new_password": "another long passphrase"})))
            .await;
        assert!(changed.status().is_success(), "{}", changed.status());
        assert_eq!(close_of(&mut ws).await.0, 4401);
        send_json(&mut survivor, json!({"type": "ping"})).await;
        assert_eq!(next_json(&mut survivor).await["type"], "pong", "the current session's socket stays");

        // Logout.
        assert!(app.post_bearer("/api/v1/auth/logout", other_token).await.status().is_success());
        assert_eq!(close_of(&mut survivor).await.0, 4401);

        // The account disabled by an administrator.
        let bob = sign_in(&app, "bob@example.com", &["user"]).await;
        let mut ws = ws_bearer(&app, &bob.token).await;
        let disabled = app
            .send(Method::PATCH, &format!("/api/v1/admin/users/{}", bob.user_id), &admin.token, Some(json!({"active": false})))
            .await;
        assert!(disabled.status().is_success(), "{}", disabled.status());
        assert_eq!(close_of(&mut ws).await.0, 4401);

        // Expiry: the sweep, run as if the session's idle time had passed, finds it.
        let eve = sign_in(&app, "eve@example.com", &["user"]).await;
        let mut ws = ws_bearer(&app, &eve.token).await;
        sqlx::query("UPDATE sessions SET idle_expires_at = 1 WHERE id = $1")
            .bind(&eve.session_id)
            .execute(app.state.db().pool())
            .await
            .expect("expired");
        app.state.session_cache().forget(&eve.session_id);
        app.state.realtime().hub().sweep(tessera_token::unix_now() + 15 * 86_400);
        assert_eq!(close_of(&mut ws).await.0, 4401);
        app.stop().await;
    }
}

on_each_database! {
    async fn an_sse_stream_ends_with_auth_revoked(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;
        let query = format!("?channel=user:{}&channel=session:{}", ada.user_id, ada.session_id);
        let bearer = format!("Bearer {}", ada.token);
        let mut sse = SseStream::new(SseStream::open(&app, &query, &[("authorization", &bearer)]).await);
        let greeting = sse.next().await.expect("subscribed");
        assert_eq!(greeting.event, "subscribed");
        let id = publish(&app, &format!("session:{}", ada.session_id), "service.provisioning.progress", json!({"step": 1})).await;
        let event = sse.next().await.expect("event");
        assert_eq!(event.event, "service.provisioning.progress", "the SSE event name is the type");
        assert_eq!(event.id, Some(id.to_string()));
        assert_eq!(event.data["data"], json!({"step": 1}));
        assert!(app.post_bearer("/api/v1/auth/logout", &ada.token).await.status().is_success());
        let last = sse.next().await.expect("auth.revoked");
        assert_eq!(last.event, "auth.revoked");
        assert_eq!(last.data["code"], 4401);
        assert!(sse.next().await.is_none(), "the stream ends");
        app.stop().await;
    }
}

/// A tenant `acme` with a member holding `roles`; returns (tenant id, its member).
async fn acme_member(app: &TestApp, roles: &[&str]) -> (String, User) {
    let ops = app
        .create_user("ops@example.com", PASSWORD, &["platform_admin"], None)
        .await;
    sqlx::query("UPDATE users SET tenant_id = $1 WHERE id = $2")
        .bind(SYSTEM_TENANT_ID)
        .bind(&ops.id)
        .execute(app.state.db().pool())
        .await
        .expect("moved");
    let body = json!({"login": "ops@example.com", "password": PASSWORD, "tenant": "system", "delivery": "body"});
    let platform: Value = app
        .post_json("/api/v1/auth/login", &body)
        .await
        .json()
        .await
        .expect("JSON");
    let platform = platform["access_token"].as_str().expect("token").to_owned();
    let created = app
        .send(
            Method::POST,
            "/api/v1/admin/tenants",
            &platform,
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let acme: Value = created.json().await.expect("JSON");
    let acme_id = acme["id"].as_str().expect("id").to_owned();
    let member = app
        .create_user("wile@example.com", PASSWORD, roles, None)
        .await;
    sqlx::query("UPDATE users SET tenant_id = $1 WHERE id = $2")
        .bind(&acme_id)
        .bind(&member.id)
        .execute(app.state.db().pool())
        .await
        .expect("moved");
    let body = json!({"login": "wile@example.com", "password": PASSWORD, "tenant": "acme", "delivery": "body"});
    let login: Value = app
        .post_json("/api/v1/auth/login", &body)
        .await
        .json()
        .await
        .expect("JSON");
    let user = User {
        token: login["access_token"].as_str().expect("token").to_owned(),
        session_id: login["session_id"].as_str().expect("session").to_owned(),
        user_id: member.id,
    };
    (acme_id, user)
}

pub(crate) async fn service_token(app: &TestApp, id: &str, secret: &str) -> String {
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .header("authorization", basic(id, secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn publish_as(
    app: &TestApp,
    token: &str,
    body: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/realtime/publish"))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("sent")
}

on_each_database! {
    async fn tenant_topics_are_isolated_both_ways(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = sign_in(&app, "root@example.com", &["admin"]).await;
        let default_tenant = tessera::tenants::DEFAULT_TENANT_ID;
        let (acme, wile) = acme_member(&app, &["admin"]).await;
        let ours = format!("tenant:{default_tenant}:service-lifecycle:i1");
        let theirs = format!("tenant:{acme}:service-lifecycle:i1");

        // Subscribe: own tenant with the permission; never another tenant's.
        let mut ws = ws_bearer(&app, &admin.token).await;
        subscribe(&mut ws, &ours).await;
        send_json(&mut ws, json!({"type": "subscribe", "channel": theirs})).await;
        let answer = next_json(&mut ws).await;
        assert_eq!((answer["type"].as_str(), answer["code"].as_str()), (Some("error"), Some("forbidden_channel")), "{answer}");
        refused(ws_open(&app, &format!("?channel={ours}"), &[("authorization", &format!("Bearer {}", wile.token))]).await, 403, "forbidden_channel");

        // Without `events:subscribe` for the topic, even the own tenant's is refused; a
        // topic-scoped grant opens that topic and what is below it only.
        let plain = sign_in(&app, "ada@example.com", &["user"]).await;
        refused(ws_open(&app, &format!("?channel={ours}"), &[("authorization", &format!("Bearer {}", plain.token))]).await, 403, "forbidden_channel");
        let role = app.send(Method::POST, "/api/v1/admin/roles", &admin.token,
            Some(json!({"name": "watcher", "permissions": ["events.service-lifecycle:subscribe"]}))).await;
        assert_eq!(role.status(), 201);
        let watcher = sign_in(&app, "watcher@example.com", &["watcher"]).await;
        ws_open(&app, &format!("?channel={ours}"), &[("authorization", &format!("Bearer {}", watcher.token))]).await.expect("topic grant");
        refused(ws_open(&app, &format!("?channel=tenant:{default_tenant}:billing"), &[("authorization", &format!("Bearer {}", watcher.token))]).await, 403, "forbidden_channel");

        // Publish: a service of this tenant reaches its own topics, not acme's.
        let (id, secret) = app.new_client(&admin.token, json!(["events:publish"])).await;
        let token = service_token(&app, &id, &secret).await;
        let body = |channel: &str| json!({"channel": channel, "type": "service.provisioning.progress", "data": {"step": 2}});
        let sent = publish_as(&app, &token, body(&ours), None).await;
        assert_eq!(sent.status(), 201);
        let envelope: Value = sent.json().await.expect("JSON");
        assert_eq!(next_event(&mut ws).await, envelope);
        problem(publish_as(&app, &token, body(&theirs), None).await, 403, "forbidden_channel").await;
        problem(publish_as(&app, &token, body(&format!("user:{}", wile.user_id)), None).await, 403, "forbidden_channel").await;
        problem(publish_as(&app, &token, body("flags"), None).await, 403, "reserved_channel").await;
        // A member of acme holding everything in acme cannot publish here either.
        problem(publish_as(&app, &wile.token, body(&ours), None).await, 403, "forbidden_channel").await;
        // Without the permission.
        problem(publish_as(&app, &plain.token, body(&format!("user:{}", plain.user_id)), None).await, 403, "forbidden").await;
        app.stop().await;
    }
}

on_each_database! {
    async fn publishing_is_idempotent_and_checks_its_input(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = sign_in(&app, "root@example.com", &["admin"]).await;
        let channel = format!("user:{}", admin.user_id);
        let body = json!({"channel": channel, "type": "job.done", "data": {"job": 7}});
        let first = publish_as(&app, &admin.token, body.clone(), Some("job-7")).await;
        assert_eq!(first.status(), 201);
        let first: Value = first.json().await.expect("JSON");
        let again = publish_as(&app, &admin.token, body.clone(), Some("job-7")).await;
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.json::<Value>().await.expect("JSON"), first);
        let history: Value = app.get_bearer(&format!("/api/v1/realtime/history?channel={channel}"), &admin.token).await.json().await.expect("JSON");
        assert_eq!(history["events"].as_array().map(Vec::len), Some(1), "published once: {history}");
        let changed = json!({"channel": channel, "type": "job.done", "data": {"job": 8}});
        problem(publish_as(&app, &admin.token, changed, Some("job-7")).await, 422, "idempotency_key_reused").await;

        problem(publish_as(&app, &admin.token, json!({"channel": "nope", "type": "x"}), None).await, 422, "invalid_channel").await;
        problem(publish_as(&app, &admin.token, json!({"channel": channel, "type": "bad type"}), None).await, 422, "invalid_event").await;
        let big = json!({"channel": channel, "type": "x", "data": "a".repeat(70_000)});
        problem(publish_as(&app, &admin.token, big, None).await, 422, "invalid_event").await;
        problem(publish_as(&app, &admin.token, body, Some(&"k".repeat(256))).await, 422, "invalid_idempotency_key").await;
        app.stop().await;
    }
}

on_each_database! {
    async fn a_reconnecting_client_gets_what_it_missed_in_order(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;
        let channel = format!("user:{}", ada.user_id);
        let bearer = format!("Bearer {}", ada.token);
        let mut sse = SseStream::new(SseStream::open(&app, &format!("?channel={channel}"), &[("authorization", &bearer)]).await);
        sse.next().await.expect("subscribed");
        let seen = publish(&app, &channel, "n", json!(0)).await;
        assert_eq!(sse.next().await.expect("event").id, Some(seen.to_string()));
        drop(sse);
        let mut missed = Vec::new();
        for n in 1..=3 {
            missed.push(publish(&app, &channel, "n", json!(n)).await);
        }
        // SSE: what EventSource sends on reconnecting.
        let last = seen.to_string();
        let mut sse = SseStream::new(SseStream::open(&app, &format!("?channel={channel}"), &[("authorization", &bearer), ("last-event-id", &last)]).await);
        let greeting = sse.next().await.expect("subscribed");
        assert_eq!(greeting.data["recovered"], true);
        for (n, id) in missed.iter().enumerate() {
            let event = sse.next().await.expect("replayed");
            assert_eq!((event.id, event.data["data"].clone()), (Some(id.to_string()), json!(n + 1)));
        }
        // WebSocket: `since` on subscribe.
        let mut ws = ws_bearer(&app, &ada.token).await;
        send_json(&mut ws, json!({"type": "subscribe", "channel": channel, "since": missed[0]})).await;
        assert_eq!(next_json(&mut ws).await["recovered"], true);
        assert_eq!(next_event(&mut ws).await["id"], missed[1]);
        assert_eq!(next_event(&mut ws).await["id"], missed[2]);
        let live = publish(&app, &channel, "n", json!(4)).await;
        assert_eq!(next_event(&mut ws).await["id"], live, "then live events, none twice");
        app.stop().await;
    }
}

on_each_database! {
    async fn history_serves_the_ring_and_says_when_it_cannot_cover(db: TestDatabase) {
        let app = spawn_app_with(db, |c| c.realtime.history_max_events = 3).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;
        let bob = sign_in(&app, "bob@example.com", &["user"]).await;
        let channel = format!("user:{}", ada.user_id);
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(publish(&app, &channel, "n", json!(n)).await);
        }
        let path = |since: i64| format!("/api/v1/realtime/history?channel={channel}&since={since}");
        let covered: Value = app.get_bearer(&path(ids[1]), &ada.token).await.json().await.expect("JSON");
        assert_eq!(covered["recovered"], true);
        let got: Vec<i64> = covered["events"].as_array().expect("events").iter().map(|e| e["id"].as_i64().expect("id")).collect();
        assert_eq!(got, ids[2..]);
        let lost: Value = app.get_bearer(&path(ids[0]), &ada.token).await.json().await.expect("JSON");
        assert_eq!(lost["recovered"], false, "event {} fell out of the ring", ids[1]);
        problem(app.get_bearer(&path(0), &bob.token).await, 403, "forbidden_channel").await;
        problem(app.get_bearer("/api/v1/realtime/history?channel=user:x&since=-1", &ada.token).await, 422, "invalid_since").await;
        problem(app.get("/api/v1/realtime/history?channel=flags").await, 401, "unauthenticated").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_slow_consumer_is_cut_while_a_fast_one_keeps_receiving() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.realtime.queue_capacity = 8).await;
    let ada = sign_in(&app, "ada@example.com", &["user"]).await;
    let mut fast = ws_open(
        &app,
        "?channel=flags",
        &[("authorization", &format!("Bearer {}", ada.token))],
    )
    .await
    .expect("fast");
    let mut slow = ws_open(
        &app,
        "?channel=flags",
        &[("authorization", &format!("Bearer {}", ada.token))],
    )
    .await
    .expect("slow");
    next_json(&mut fast).await;
    next_json(&mut slow).await;
    // Large events fill the slow reader's socket buffers, then its queue.
    let payload = "x".repeat(60_000);
    let channel = ChannelName::parse("flags").expect("channel");
    let realtime = app.state.realtime().clone();
    let deadline = Instant::now() + DEADLINE;
    let mut received = 0;
    let mut published = 0;
    let slow_cut = || {
        let cut = std::sync::atomic::AtomicBool::new(false);
        app.state.realtime().hub().each_link(
            |_| true,
            |link| {
                if link.closing() == Some(SLOW_CONSUMER) {
                    cut.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            },
        );
        cut.into_inner()
    };
    while !slow_cut() {
        assert!(Instant::now() < deadline, "the slow consumer was never cut");
        realtime
            .publish(&channel, "flag.changed", json!({"p": payload}))
            .await
            .expect("published");
        published += 1;
        next_event(&mut fast).await;
        received += 1;
    }
    assert_eq!(received, published, "the fast consumer missed nothing");
    let (code, reason) = close_of(&mut slow).await;
    assert_eq!((code, reason.as_str()), (4408, "slow consumer"));
    let last = realtime
        .publish(&channel, "flag.changed", json!({}))
        .await
        .expect("published")
        .id;
    assert_eq!(next_event(&mut fast).await["id"], last);
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("tessera_realtime_dropped_total{transport=\"ws\"}"),
        "counted"
    );
    app.stop().await;
}

on_each_database! {
    async fn a_service_redeems_a_ticket_minted_for_it_once(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = sign_in(&app, "root@example.com", &["admin"]).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;
        let (chat, chat_secret) = app.new_client(&admin.token, json!(["events:publish"])).await;
        let (other, other_secret) = app.new_client(&admin.token, json!(["events:publish"])).await;
        let client = tessera_client::TicketRedeemer::new(&app.address, &chat, &chat_secret);

        let for_chat = ticket(&app, &ada.token, json!({"audience": chat})).await;
        let redeemed = client.redeem(&for_chat).await.expect("redeemed");
        assert_eq!((redeemed.sub.as_str(), redeemed.sid.as_str()), (ada.user_id.as_str(), ada.session_id.as_str()));
        assert_eq!(redeemed.tid, tessera::tenants::DEFAULT_TENANT_ID);
        assert_eq!(redeemed.roles, ["user"]);
        assert!(matches!(client.redeem(&for_chat).await, Err(tessera_client::TicketError::Refused)), "single use");

        // Another service cannot redeem it, and the attempt spends it.
        let stolen = ticket(&app, &ada.token, json!({"audience": chat})).await;
        let thief = tessera_client::TicketRedeemer::new(&app.address, &other, &other_secret);
        assert!(matches!(thief.redeem(&stolen).await, Err(tessera_client::TicketError::Refused)));
        assert!(matches!(client.redeem(&stolen).await, Err(tessera_client::TicketError::Refused)));
        // Tickets for the hub are not for services, and bad credentials are refused outright.
        let hub_ticket = ticket(&app, &ada.token, json!({})).await;
        assert!(matches!(client.redeem(&hub_ticket).await, Err(tessera_client::TicketError::Refused)));
        let wrong = tessera_client::TicketRedeemer::new(&app.address, &chat, "tss_wrong");
        assert!(matches!(wrong.redeem(&for_chat).await, Err(tessera_client::TicketError::Unauthorized)));
        let unknown = app
            .send(Method::POST, "/api/v1/realtime/ticket", &ada.token, Some(json!({"audience": "nobody"})))
            .await;
        problem(unknown, 422, "unknown_audience").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn sessions_and_events_cross_instances_on_one_postgres() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let first = spawn_app_with(db, |_| {}).await;
    let second = second_instance(&first).await;
    let ada = sign_in(&first, "ada@example.com", &["user"]).await;
    let channel = format!("user:{}", ada.user_id);

    // A socket on the second instance gets what the first publishes.
    let mut ws = ws_bearer(&second.app, &ada.token).await;
    subscribe(&mut ws, &channel).await;
    let id = publish(&first, &channel, "note", json!({"from": "first"})).await;
    assert_eq!(next_event(&mut ws).await["id"], id);

    // A ticket minted on one instance opens a socket on the other.
    let minted = ticket(&first, &ada.token, json!({})).await;
    let mut by_ticket = ws_open(&second.app, &format!("?ticket={minted}"), &[])
        .await
        .expect("opened");

    // Revoked on the first instance: the second closes its sockets.
    assert!(
        first
            .post_bearer("/api/v1/auth/logout", &ada.token)
            .await
            .status()
            .is_success()
    );
    assert_eq!(close_of(&mut ws).await.0, 4401);
    assert_eq!(close_of(&mut by_ticket).await.0, 4401);
    second.app.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn the_axum_example_authenticates_its_own_socket_by_ticket_and_closes_it_on_logout() {
    use tessera_client::{TicketRedeemer, Verifier};
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    let admin = sign_in(&app, "root@example.com", &["admin"]).await;
    let ada = sign_in(&app, "ada@example.com", &["user"]).await;
    let (id, secret) = app
        .new_client(&admin.token, json!(["tokens:introspect"]))
        .await;
    let verifier = Verifier::builder(&app.address, &app.state.config().token.audience)
        .client_credentials(&id, &secret)
        .build()
        .await
        .expect("verifier");
    let deadline = Instant::now() + DEADLINE;
    while verifier.revocations_live() != Some(true) {
        assert!(Instant::now() < deadline, "the feed never went live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service = tessera_example_axum_service::chat_router(
        verifier,
        TicketRedeemer::new(&app.address, &id, &secret),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, service).await });
    let url = |ticket: &str| format!("ws://{address}/chat?ticket={ticket}");

    let minted = ticket(&app, &ada.token, json!({"audience": id})).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url(&minted))
        .await
        .expect("opened");
    let hello = next_json(&mut ws).await;
    assert_eq!(
        (hello["sub"].as_str(), hello["sid"].as_str()),
        (Some(ada.user_id.as_str()), Some(ada.session_id.as_str()))
    );
    match tokio_tungstenite::connect_async(url(&minted)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a spent ticket opened a socket: {:?}", other.map(|_| ())),
    }
    assert!(
        app.post_bearer("/api/v1/auth/logout", &ada.token)
            .await
            .status()
            .is_success()
    );
    assert_eq!(close_of(&mut ws).await, (4401, "session ended".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn the_provisioning_example_shows_six_steps_live_to_a_cookie_authenticated_page() {
    use tessera_example_provisioning::{EVENT_TYPE, Publisher, STEPS, channel, router};
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    let admin = sign_in(&app, "root@example.com", &["admin"]).await;
    let role = app
        .send(
            Method::POST,
            "/api/v1/admin/roles",
            &admin.token,
            Some(
                json!({"name": "operator", "permissions": ["events.service-lifecycle:subscribe"]}),
            ),
        )
        .await;
    assert_eq!(role.status(), 201);
    app.create_user("noc@example.com", PASSWORD, &["operator"], None)
        .await;
    let (id, secret) = app
        .new_client(&admin.token, json!(["events:publish"]))
        .await;
    let tenant = tessera::tenants::DEFAULT_TENANT_ID;
    let publisher = Publisher {
        tessera: app.address.clone(),
        token: service_token(&app, &id, &secret).await,
        tenant_id: tenant.to_owned(),
        http: reqwest::Client::new(),
    };

    // The page, as a browser loads it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let page_address = listener.local_addr().expect("address");
    let service = router(publisher.clone(), Duration::ZERO);
    tokio::spawn(async move { axum::serve(listener, service).await });
    let page = reqwest::get(format!("http://{page_address}/"))
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("addEventListener(\"service.provisioning.progress\"")
            && page.contains(&app.address)
    );

    // A cookie sign-in, as the page does it.
    let origin = app.state.config().public_url.origin().ascii_serialization();
    let login = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("origin", &origin)
        .json(&json!({"login": "noc@example.com", "password": PASSWORD, "delivery": "cookie"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(login.status(), 200);
    let cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let cookie = cookies.join("; ");

    let instance = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let query = format!("?channel={}", channel(tenant, instance));
    let mut sse = SseStream::new(
        SseStream::open(&app, &query, &[("cookie", &cookie), ("origin", &origin)]).await,
    );
    assert_eq!(sse.next().await.expect("subscribed").event, "subscribed");
    publisher
        .run(instance, Duration::ZERO)
        .await
        .expect("workflow ran");
    for (step, message) in STEPS.iter().enumerate() {
        let event = sse.next().await.expect("a step");
        assert_eq!(event.event, EVENT_TYPE);
        let data = &event.data["data"];
        assert_eq!(data["service_instance_id"], instance);
        assert_eq!(data["step"], step + 1);
        assert_eq!(data["total_steps"], 6);
        assert_eq!(data["message"], *message);
        let status = if step == 5 {
            "completed"
        } else {
            "in_progress"
        };
        assert_eq!(data["status"], status);
    }
    // A retried step is not shown twice.
    let first = publisher.step(instance, 6).await.expect("retried");
    let history: Value = app
        .client
        .get(app.url(&format!("/api/v1/realtime/history{query}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(history["events"].as_array().map(Vec::len), Some(6));
    assert_eq!(history["events"][5]["id"], first["id"]);
    app.stop().await;
}

on_each_database! {
    async fn flag_changes_are_announced_on_the_flags_channel_with_the_key_only(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let platform = crate::flags::platform_admin(&app).await;
        let ada = sign_in(&app, "ada@example.com", &["user"]).await;
        let mut ws = ws_bearer(&app, &ada.token).await;
        subscribe(&mut ws, "flags").await;

        let created = app
            .send(Method::POST, "/api/v1/admin/flags", &platform, Some(json!({"key": "beta_banner", "type": "bool", "default": false})))
            .await;
        assert_eq!(created.status(), 201);
        let event = next_json(&mut ws).await;
        assert_eq!((event["type"].as_str(), event["event"]["channel"].as_str()), (Some("event"), Some("flags")), "{event}");
        assert_eq!(event["event"]["type"], "flag.changed");
        assert_eq!(event["event"]["data"], json!({"key": "beta_banner"}));

        // A tenant's override is announced without naming the tenant.
        let tenant = crate::flags::tenant_of(&app, &ada.token).await;
        let set = app
            .send(Method::PUT, &format!("/api/v1/admin/flags/beta_banner/tenants/{tenant}"), &platform, Some(json!({"value": true})))
            .await;
        assert_eq!(set.status(), 200);
        let event = next_json(&mut ws).await;
        assert_eq!(event["event"]["data"], json!({"key": "beta_banner"}), "{event}");
        assert!(!event.to_string().contains(&tenant), "{event}");

        // Nobody publishes to `flags` through the API; a failed change announces nothing.
        let refused = app
            .send(Method::PATCH, "/api/v1/admin/flags/beta_banner", &platform, Some(json!({"default": "yes"})))
            .await;
        assert_eq!(refused.status(), 422);
        let other = app
            .send(Method::POST, "/api/v1/admin/flags", &platform, Some(json!({"key": "beta_other", "type": "bool", "default": true})))
            .await;
        assert_eq!(other.status(), 201);
        let event = next_json(&mut ws).await;
        assert_eq!(event["event"]["data"], json!({"key": "beta_other"}), "the next change, not the refused patch: {event}");

        let deleted = app.send(Method::DELETE, "/api/v1/admin/flags/beta_banner", &platform, None).await;
        assert_eq!(deleted.status(), 204);
        let event = next_json(&mut ws).await;
        assert_eq!(event["event"]["data"], json!({"key": "beta_banner"}), "the delete: {event}");
        app.stop().await;
    }
}
