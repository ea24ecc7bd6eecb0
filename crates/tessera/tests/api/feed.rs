//! The revocation feed: every revocation services must honour, by cursor and as an SSE
//! stream, for clients allowed `tokens:introspect`, tenant by tenant.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, basic, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

async fn page(app: &TestApp, gate: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1/auth/revocations{query}")))
        .header("authorization", gate)
        .send()
        .await
        .expect("sent")
}

async fn items(app: &TestApp, gate: &str, query: &str) -> Value {
    let response = page(app, gate, query).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("JSON")
}

/// An admin's token and a client allowed to follow the feed (its Basic header).
async fn follower(app: &TestApp) -> (String, String) {
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let (id, secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
    (admin, basic(&id, &secret))
}

on_each_database! {
    async fn every_kind_of_revocation_reaches_the_feed_in_order(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let (admin, gate) = follower(&app).await;
        let start = items(&app, &gate, "").await;
        assert_eq!(start["items"], json!([]));

        // A logout, a user disabled (with their session), and one access token revoked.
        let ada = app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let ada_login = app.login("ada@example.com", PASSWORD).await;
        let bob = app.login("root@example.com", PASSWORD).await;
        let bob_token = bob["access_token"].as_str().expect("t");
        assert_eq!(app.post_bearer("/api/v1/auth/logout", bob_token).await.status(), 204);
        let disable = app.send(reqwest::Method::PATCH, &format!("/api/v1/admin/users/{}", ada.id), &admin, Some(json!({"active": false}))).await;
        assert_eq!(disable.status(), 200);
        let (revoker, revoker_secret) = app.new_client(&admin, json!(["tokens:revoke"])).await;
        let revoked = app.client.post(app.url("/oauth2/revoke"))
            .header("authorization", basic(&revoker, &revoker_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={admin}"))
            .send().await.expect("sent");
        assert_eq!(revoked.status(), 200);

        let all = items(&app, &gate, "?after=0").await;
        let kinds: Vec<&str> = all["items"].as_array().expect("items").iter().map(|i| i["kind"].as_str().expect("kind")).collect();
        // Disabling writes the sessions first, then the subject.
        assert_eq!(kinds, ["session", "session", "subject", "token"]);
        let items = all["items"].as_array().expect("items");
        assert_eq!(items[0]["sid"], bob["session_id"]);
        assert_eq!(items[1]["sid"], ada_login["session_id"]);
        assert_eq!(items[2]["sub"], ada.id.as_str());
        let longest = tessera::revocations::MAX_TOKEN_TTL_SECS;
        for item in items {
            let (revoked_at, expires_at) = (item["revoked_at"].as_i64().expect("at"), item["expires_at"].as_i64().expect("exp"));
            assert!(expires_at > revoked_at && expires_at <= revoked_at + longest + 1, "{item}");
            assert_eq!(item["tid"], tessera::tenants::DEFAULT_TENANT_ID);
        }
        assert!(items[2]["issued_before"].as_i64().is_some());
        assert!(items[3]["jti"].as_str().is_some());
        assert_eq!(all["has_more"], false);

        // Resuming from the cursor gives nothing new; small pages say there is more.
        let cursor = all["cursor"].as_str().expect("cursor");
        assert_eq!(items_after(&app, &gate, cursor).await, json!([]));
        // A cursor from a replaced database (beyond every entry) starts over, never skips.
        assert_eq!(items_after(&app, &gate, "999999").await, all["items"]);
        let first = self::items(&app, &gate, "?limit=1").await;
        assert_eq!(first["items"].as_array().expect("items").len(), 1);
        assert_eq!(first["has_more"], true);
        let second = self::items(&app, &gate, &format!("?limit=1&after={}", first["cursor"].as_str().expect("c"))).await;
        assert_eq!(second["items"][0]["sid"], ada_login["session_id"]);
    }
}

async fn items_after(app: &TestApp, gate: &str, cursor: &str) -> Value {
    items(app, gate, &format!("?after={cursor}")).await["items"].clone()
}

on_each_database! {
    async fn only_introspecting_clients_follow_and_bad_input_is_named(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let (admin, gate) = follower(&app).await;
        let (plain, plain_secret) = app.new_client(&admin, json!(["reports:read"])).await;

        for response in [
            app.get("/api/v1/auth/revocations").await,
            page(&app, &basic("nobody", "tss_wrong"), "").await,
            page(&app, &format!("Bearer {admin}"), "").await,
        ] {
            let headers = response.headers().clone();
            problem(response, 401, "invalid_client").await;
            assert_eq!(headers["www-authenticate"], "Basic realm=\"tessera\"");
        }
        problem(page(&app, &basic(&plain, &plain_secret), "").await, 403, "insufficient_scope").await;
        for bad in ["?after=-1", "?after=abc", "?after=1e9"] {
            problem(page(&app, &gate, bad).await, 422, "invalid_cursor").await;
        }
        for bad in ["?limit=0", "?limit=1001", "?limit=x"] {
            problem(page(&app, &gate, bad).await, 422, "invalid_limit").await;
        }
        let stream = app.client.get(app.url("/api/v1/auth/revocations/stream"))
            .header("authorization", &gate).header("last-event-id", "nope")
            .send().await.expect("sent");
        problem(stream, 422, "invalid_cursor").await;
    }
}

on_each_database! {
    async fn a_tenants_clients_see_only_that_tenants_revocations(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let (admin, gate) = follower(&app).await;
        let (other, other_secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
        let pool = app.state.db().pool();
        sqlx::query("INSERT INTO tenants (id, slug, name, active, created_at) VALUES ('t-other', 'other', 'Other', 1, 0)")
            .execute(pool).await.expect("tenant");
        sqlx::query("UPDATE clients SET tenant_id = 't-other' WHERE id = $1").bind(&other)
            .execute(pool).await.expect("moved");
        let (platform, platform_secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
        sqlx::query("UPDATE clients SET tenant_id = $1 WHERE id = $2").bind(tessera::tenants::SYSTEM_TENANT_ID).bind(&platform)
            .execute(pool).await.expect("moved");

        let session = app.login("root@example.com", PASSWORD).await;
        app.post_bearer("/api/v1/auth/logout", session["access_token"].as_str().expect("t")).await;

        assert_eq!(items(&app, &gate, "").await["items"].as_array().expect("items").len(), 1);
        let foreign = items(&app, &basic(&other, &other_secret), "").await;
        assert_eq!(foreign["items"], json!([]));
        // The cursor still moves past what the tenant does not see.
        assert_ne!(foreign["cursor"], "0");
        assert_eq!(items(&app, &basic(&platform, &platform_secret), "").await["items"].as_array().expect("items").len(), 1);
    }
}

/// Reads the stream until an event of `kind` arrives; returns its id and data.
pub(crate) async fn next_event(
    stream: &mut reqwest::Response,
    buffer: &mut String,
    kind: &str,
) -> (String, Value) {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start().to_owned())
            };
            if field("event:").as_deref() == Some(kind) {
                let data = field("data:").unwrap_or_default();
                let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return (field("id:").unwrap_or_default(), value);
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within 5 s; read so far: {buffer:?}"))
            .expect("stream readable")
            .expect("stream open");
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
}

on_each_database! {
    async fn the_stream_catches_up_pushes_new_revocations_and_resumes(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let (_, gate) = follower(&app).await;
        let first = app.login("root@example.com", PASSWORD).await;
        app.post_bearer("/api/v1/auth/logout", first["access_token"].as_str().expect("t")).await;

        let open = |last: Option<String>| {
            let mut request = app.client.get(app.url("/api/v1/auth/revocations/stream")).header("authorization", &gate);
            if let Some(last) = last {
                request = request.header("last-event-id", last);
            }
            request.send()
        };
        let mut stream = open(None).await.expect("stream");
        assert_eq!(stream.status(), 200);
        assert!(stream.headers()["content-type"].to_str().expect("type").starts_with("text/event-stream"));
        let mut buffer = String::new();
        let (caught_up_id, entry) = next_event(&mut stream, &mut buffer, "revocation").await;
        assert_eq!(entry["sid"], first["session_id"]);
        let (ready_id, _) = next_event(&mut stream, &mut buffer, "ready").await;
        assert_eq!(ready_id, caught_up_id);

        // A revocation made now is pushed, well within a second.
        let second = app.login("root@example.com", PASSWORD).await;
        let started = std::time::Instant::now();
        app.post_bearer("/api/v1/auth/logout", second["access_token"].as_str().expect("t")).await;
        let (pushed_id, entry) = next_event(&mut stream, &mut buffer, "revocation").await;
        assert_eq!(entry["sid"], second["session_id"]);
        assert!(started.elapsed() < Duration::from_secs(1), "pushed after {:?}", started.elapsed());
        drop(stream);

        // Resuming after the first entry sends the second, then `ready`; nothing twice.
        let mut resumed = open(Some(ready_id)).await.expect("stream");
        let mut buffer = String::new();
        let (id, entry) = next_event(&mut resumed, &mut buffer, "revocation").await;
        assert_eq!((id.as_str(), &entry["sid"]), (pushed_id.as_str(), &second["session_id"]));
        let (ready, _) = next_event(&mut resumed, &mut buffer, "ready").await;
        assert_eq!(ready, pushed_id);
        assert!(!buffer.contains("revocation"), "{buffer}");
    }
}

#[tokio::test]
async fn a_client_holds_a_bounded_number_of_streams() {
    let app = crate::helpers::spawn_app().await;
    let (_, gate) = follower(&app).await;
    let open = || {
        app.client
            .get(app.url("/api/v1/auth/revocations/stream"))
            .header("authorization", &gate)
            .send()
    };
    let mut streams = Vec::new();
    for _ in 0..tessera::revocations::MAX_STREAMS_PER_CLIENT {
        let stream = open().await.expect("stream");
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    let refused = open().await.expect("answer");
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 429, "too_many_streams").await;

    // Closing one frees its place.
    streams.pop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let again = open().await.expect("answer");
        if again.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
