//! Several instances of one deployment sharing one database (PostgreSQL: `LISTEN/NOTIFY`;
//! SQLite: the in-process bus), as a load balancer without sticky sessions would use them: a
//! change made on one is in effect on the others through the change bus, long before any
//! reconciliation read (every 5 s) could have brought it. Each wait below is bounded well
//! under that period; the latency itself is measured by the bench suite, not asserted here.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use tessera_client::Verifier;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::flags::{TEST_FLAGS, apply_flags, next_message, platform_admin};
use crate::helpers::{TestApp, TestDatabase, basic, eventually, spawn_app_with, spawn_peer};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// Below the bus's reconciliation period (5 s): what arrives within it came over the bus.
const BOUND: Duration = Duration::from_secs(3);

async fn introspect(app: &TestApp, auth: &str, token: &str) -> Value {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    app.client
        .post(app.url("/oauth2/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON")
}

async fn client_credentials(app: &TestApp, id: &str, secret: &str) -> u16 {
    app.client
        .post(app.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic(id, secret))
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn websocket(app: &TestApp, token: &str) -> Ws {
    let url = format!(
        "{}/api/v1/realtime/ws",
        app.address.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket opened")
        .0
}

/// The next JSON message or the close code, skipping pings.
async fn next_frame(ws: &mut Ws) -> Result<Value, u16> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("JSON"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                other => panic!("the socket failed: {other:?}"),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("a frame within the bound")
}

on_each_database! {
    async fn a_revocation_on_one_instance_is_in_effect_on_every_other(db: TestDatabase) {
        let a = spawn_app_with(db, |_| {}).await;
        let b = spawn_peer(&a, |_| {}).await;
        let c = spawn_peer(&a, |_| {}).await;
        let admin = a.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let (gate_id, gate_secret) = a.new_client(&admin, json!(["tokens:introspect"])).await;
        let gate = basic(&gate_id, &gate_secret);
        let config = a.state.config();
        let verifier = Verifier::builder(config.issuer(), config.token.audience.clone())
            .client_credentials(gate_id.clone(), gate_secret.clone())
            .build()
            .await
            .expect("verifier");

        // Login on A, refresh on B: one session, served by both.
        a.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let login = a.login("ada@example.com", PASSWORD).await;
        let refreshed = b
            .post_json("/api/v1/auth/refresh", &json!({"refresh_token": login["refresh_token"]}))
            .await;
        assert_eq!(refreshed.status(), 200);
        let refreshed: Value = refreshed.json().await.expect("JSON");
        let token = refreshed["access_token"].as_str().expect("token").to_owned();

        // Every place that checks the session has it cached as live.
        assert_eq!(a.get_bearer("/api/v1/auth/me", &token).await.status(), 200);
        assert_eq!(introspect(&b, &gate, &token).await["active"], true);
        assert!(verifier.verify(&token).await.is_ok());
        let mut ws = websocket(&a, &token).await;
        eventually(BOUND, "the verifier's revocation stream is live", || async {
            verifier.revocations_live() == Some(true)
        })
        .await;

        // Revoked on C.
        assert_eq!(c.post_bearer("/api/v1/auth/logout", &token).await.status(), 204);

        eventually(BOUND, "A's session cache refuses the token", || async {
            a.get_bearer("/api/v1/auth/me", &token).await.status() == 401
        })
        .await;
        eventually(BOUND, "B's introspection answers inactive", || async {
            introspect(&b, &gate, &token).await["active"] == false
        })
        .await;
        eventually(BOUND, "the tessera-client verifier refuses the token", || async {
            verifier.verify(&token).await.is_err()
        })
        .await;
        assert_eq!(next_frame(&mut ws).await, Err(4401), "A's open socket is closed");
        for app in [a, b, c] {
            app.stop().await;
        }
    }
}

on_each_database! {
    async fn role_and_client_changes_on_one_instance_apply_on_another(db: TestDatabase) {
        let a = spawn_app_with(db, |_| {}).await;
        let b = spawn_peer(&a, |_| {}).await;
        let admin = a.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let created = a
            .send(Method::POST, "/api/v1/admin/roles", &admin,
                Some(json!({"name": "support", "permissions": ["users:read"]})))
            .await;
        assert_eq!(created.status(), 201);
        let bob = a.token_for("bob@example.com", PASSWORD, &["support"]).await;

        // B caches the tenant's role definitions while refusing.
        assert_eq!(b.get_bearer("/api/v1/admin/roles", &bob).await.status(), 403);
        let widened = a
            .send(Method::PATCH, "/api/v1/admin/roles/support", &admin,
                Some(json!({"permissions": ["users:read", "roles:read"]})))
            .await;
        assert_eq!(widened.status(), 200);
        eventually(BOUND, "B's admin API grants the widened role", || async {
            b.get_bearer("/api/v1/admin/roles", &bob).await.status() == 200
        })
        .await;

        // A service account disabled on A can no longer obtain tokens on B, and enabled
        // again, can.
        let (id, secret) = a.new_client(&admin, json!(["users:read"])).await;
        assert_eq!(client_credentials(&b, &id, &secret).await, 200, "B caches the client");
        let path = format!("/api/v1/admin/clients/{id}");
        let disabled = a.send(Method::PATCH, &path, &admin, Some(json!({"active": false}))).await;
        assert_eq!(disabled.status(), 200);
        eventually(BOUND, "B refuses the disabled client", || async {
            client_credentials(&b, &id, &secret).await == 401
        })
        .await;
        let enabled = a.send(Method::PATCH, &path, &admin, Some(json!({"active": true}))).await;
        assert_eq!(enabled.status(), 200);
        eventually(BOUND, "B serves the enabled client again", || async {
            client_credentials(&b, &id, &secret).await == 200
        })
        .await;
        a.stop().await;
        b.stop().await;
    }
}

on_each_database! {
    async fn flag_changes_and_publishes_on_one_instance_reach_streams_on_another(db: TestDatabase) {
        let a = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[])).await;
        let b = spawn_peer(&a, |_| {}).await;
        let platform = platform_admin(&a).await;
        let user = a.token_for("ann@example.com", PASSWORD, &["user"]).await;

        // An OFREP change stream (SSE) on B hears a change made on A.
        let mut stream = b.client.get(b.url("/ofrep/v1/events")).bearer_auth(&user).send().await.expect("stream");
        assert_eq!(stream.status(), 200);
        let mut buffer = String::new();
        next_message(&mut stream, &mut buffer, "ready").await;
        let patched = a
            .send(Method::PATCH, "/api/v1/admin/flags/dark_mode", &platform, Some(json!({"default": true})))
            .await;
        assert_eq!(patched.status(), 200);
        tokio::time::timeout(BOUND, next_message(&mut stream, &mut buffer, "refetchEvaluation"))
            .await
            .expect("the change reached B's stream within the bound");

        // An event published on A reaches a socket subscribed on B.
        let mut ws = websocket(&b, &user).await;
        let subscribe = json!({"type": "subscribe", "channel": "flags"});
        futures_util::SinkExt::send(&mut ws, Message::Text(subscribe.to_string().into()))
            .await
            .expect("sent");
        assert_eq!(next_frame(&mut ws).await.expect("answer")["type"], "subscribed");
        let channel = tessera::realtime::channel::ChannelName::parse("flags").expect("channel");
        let published = a
            .state
            .realtime()
            .publish(&channel, "news.posted", json!({"n": 1}))
            .await
            .expect("published");
        let event = next_frame(&mut ws).await.expect("event");
        assert_eq!(event["type"], "event", "{event}");
        assert_eq!(event["event"]["id"], published.id, "the same id on every instance");
        a.stop().await;
        b.stop().await;
    }
}

on_each_database! {
    async fn a_refresh_raced_across_instances_rotates_exactly_once(db: TestDatabase) {
        let a = Arc::new(spawn_app_with(db, |_| {}).await);
        let b = Arc::new(spawn_peer(&a, |_| {}).await);
        let c = Arc::new(spawn_peer(&a, |_| {}).await);
        a.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let login = a.login("ada@example.com", PASSWORD).await;
        let token = login["refresh_token"].as_str().expect("token").to_owned();
        let tasks: Vec<_> = (0..9)
            .map(|i| {
                let app = Arc::clone([&a, &b, &c][i % 3]);
                let token = token.clone();
                tokio::spawn(async move {
                    let response = app
                        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": token}))
                        .await;
                    assert_eq!(response.status(), 200);
                    let body: Value = response.json().await.expect("JSON");
                    body["refresh_token"].as_str().expect("successor").to_owned()
                })
            })
            .collect();
        let mut successors = Vec::new();
        for task in tasks {
            successors.push(task.await.expect("task"));
        }
        successors.sort();
        successors.dedup();
        assert_eq!(successors.len(), 1, "every instance handed out the one successor");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1")
            .bind(login["session_id"].as_str().expect("sid"))
            .fetch_one(a.state.db().pool())
            .await
            .expect("count");
        assert_eq!(rows, 2, "the original and its one successor");
    }
}

#[tokio::test]
async fn the_bus_over_redis_carries_revocations_and_readiness_reports_it() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let redis = std::env::var("TESSERA_TEST_REDIS_URL").unwrap_or_default();
    assert!(
        !redis.is_empty() || std::env::var("CI").as_deref() != Ok("true"),
        "TESSERA_TEST_REDIS_URL must be set in CI"
    );
    if redis.is_empty() {
        return;
    }
    let prefix = format!("tessera-test:{}:", uuid::Uuid::new_v4().simple());
    let a = spawn_app_with(db, |c| {
        c.redis.url = Some(tessera::config::Secret::new(redis.clone()));
        c.redis.key_prefix = prefix.clone();
        c.cluster.bus = tessera::config::BusKind::Redis;
        c.cluster.instances = 2;
    })
    .await;
    let b = spawn_peer(&a, |_| {}).await;
    for app in [&a, &b] {
        eventually(BOUND, "the bus subscribed on Redis", || async {
            let ready: Value = app.get("/readyz").await.json().await.expect("JSON");
            ready["checks"]["bus"] == "ok" && ready["checks"]["redis"] == "ok"
        })
        .await;
    }
    a.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let login = a.login("ada@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().expect("token").to_owned();
    assert_eq!(b.get_bearer("/api/v1/auth/me", &token).await.status(), 200);
    assert_eq!(
        a.post_bearer("/api/v1/auth/logout", &token).await.status(),
        204
    );
    eventually(BOUND, "B refuses the session revoked on A", || async {
        b.get_bearer("/api/v1/auth/me", &token).await.status() == 401
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn exactly_one_instance_at_a_time_runs_each_singleton_job() {
    use tessera::db::Job;
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let a = spawn_app_with(db, |_| {}).await;
    let b = spawn_peer(&a, |_| {}).await;
    let c = spawn_peer(&a, |_| {}).await;
    for job in [Job::AuditChain, Job::Cleanup, Job::KeyRotation] {
        // The instances' own loops take these locks too: A gets its turn once a run ends.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let held = loop {
            if let Some(held) = a.state.db().try_job_lock(job).await.expect("lock query") {
                break held;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "A never got {job:?}'s lock"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for other in [&b, &c] {
            let skipped = other
                .state
                .db()
                .try_job_lock(job)
                .await
                .expect("lock query");
            assert!(skipped.is_none(), "{job:?} runs on one instance at a time");
        }
        held.commit().await.expect("A's run ends");
        let next = b.state.db().try_job_lock(job).await.expect("lock query");
        assert!(next.is_some(), "{job:?} runs elsewhere once A's run ended");
    }
    for app in [a, b, c] {
        app.stop().await;
    }
}
