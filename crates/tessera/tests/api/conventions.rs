//! The API conventions every route follows (issue 15): idempotency keys, ETags with
//! `If-None-Match` and `If-Match`, `Link` headers on lists, deliberate `Cache-Control`, and
//! the status page built on them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::flags::{client_token, platform_admin};
use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// Sends `method` to `path` as `token`, with a JSON body and extra headers.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn client_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM clients")
        .fetch_one(app.state.db().pool())
        .await
        .expect("count")
}

on_each_database! {
    async fn a_retried_create_replays_the_first_answer_and_creates_once(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let body = json!({"name": "billing", "scopes": []});
        let key = [("idempotency-key", "create-billing-1")];
        let before = client_count(&app).await;

        let first = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&body), &key).await;
        assert_eq!(first.status(), 201);
        assert_eq!(header(&first, "idempotent-replayed"), None);
        assert_eq!(header(&first, "cache-control").as_deref(), Some("no-store"));
        let first_body = first.text().await.expect("body");

        let again = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&body), &key).await;
        assert_eq!(again.status(), 201);
        assert_eq!(header(&again, "idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(header(&again, "cache-control").as_deref(), Some("no-store"));
        assert_eq!(again.text().await.expect("body"), first_body, "the identical body, secret included");
        assert_eq!(client_count(&app).await, before + 1, "created once");

        // Neither the key nor the secret shown once is stored readably.
        let secret = serde_json::from_str::<Value>(&first_body).expect("JSON")["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned();
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT scope, fingerprint, answer FROM idempotency_keys")
                .fetch_all(app.state.db().pool())
                .await
                .expect("rows");
        assert_eq!(rows.len(), 1);
        let stored = format!("{rows:?}");
        assert!(!stored.contains(&secret) && !stored.contains("create-billing-1"));
        use base64::Engine as _;
        let answer = base64::engine::general_purpose::STANDARD
            .decode(rows[0].2.as_deref().expect("answer"))
            .expect("base64");
        assert!(
            !answer.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the stored answer is sealed"
        );
    }
}

on_each_database! {
    async fn the_same_key_with_another_body_is_refused(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let key = [("idempotency-key", "k-1")];
        let created = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&json!({"name": "a"})), &key).await;
        assert_eq!(created.status(), 201);
        let other = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&json!({"name": "b"})), &key).await;
        problem(other, 422, "idempotency_key_reused").await;
        // Another path with the same key is another request too.
        let elsewhere = call(&app, Method::POST, "/api/v1/admin/roles", &admin, Some(&json!({"name": "a"})), &key).await;
        problem(elsewhere, 422, "idempotency_key_reused").await;
        // Malformed keys and keys where they mean nothing.
        let long = "k".repeat(256);
        problem(call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&json!({"name": "a"})), &[("idempotency-key", &long)]).await, 422, "invalid_idempotency_key").await;
        let login = app.client.post(app.url("/api/v1/auth/login")).header("idempotency-key", "x")
            .json(&json!({"login": "ada@example.com", "password": PASSWORD, "delivery": "body"})).send().await.expect("sent");
        problem(login, 422, "idempotency_not_supported").await;
    }
}

on_each_database! {
    async fn a_refused_request_leaves_its_key_free(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let key = [("idempotency-key", "retry-me")];
        let bad = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&json!({"name": ""})), &key).await;
        assert_eq!(bad.status(), 422);
        let good = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&json!({"name": "ok"})), &key).await;
        assert_eq!(good.status(), 201);
        assert_eq!(header(&good, "idempotent-replayed"), None);
    }
}

on_each_database! {
    async fn keys_belong_to_their_principal(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let ada = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let bob = app.token_for("bob@example.com", PASSWORD, &["admin"]).await;
        let body = json!({"name": "shared"});
        let key = [("idempotency-key", "same-key")];
        let by_ada: Value = call(&app, Method::POST, "/api/v1/admin/clients", &ada, Some(&body), &key).await.json().await.expect("JSON");
        let for_bob = call(&app, Method::POST, "/api/v1/admin/clients", &bob, Some(&body), &key).await;
        assert_eq!(for_bob.status(), 201);
        assert_eq!(header(&for_bob, "idempotent-replayed"), None, "bob never sees ada's answer");
        let by_bob: Value = for_bob.json().await.expect("JSON");
        assert_ne!(by_ada["id"], by_bob["id"]);
        assert_ne!(by_ada["client_secret"], by_bob["client_secret"]);

        // A service account is a principal of its own, and so is nobody.
        let (id, secret) = app.new_client(&ada, json!(["events:publish"])).await;
        let service = client_token(&app, &id, &secret, "events:publish").await;
        let channel = format!("tenant:{}:jobs", tessera::tenants::DEFAULT_TENANT_ID);
        let event = json!({"channel": channel, "type": "job.done", "data": {}});
        let by_service = call(&app, Method::POST, "/api/v1/realtime/publish", &service, Some(&event), &key).await;
        assert_eq!(by_service.status(), 201, "{:?}", by_service.text().await);
        let replayed = call(&app, Method::POST, "/api/v1/realtime/publish", &service, Some(&event), &key).await;
        assert_eq!(header(&replayed, "idempotent-replayed").as_deref(), Some("true"));

        // A revoked session replays nothing: the key's owner must still be signed in.
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(app.state.db().pool()).await.expect("n");
        assert_eq!(rows, 3);
        let logout = app.client.post(app.url("/api/v1/auth/logout")).bearer_auth(&ada).send().await.expect("sent");
        assert!(logout.status().is_success());
        let after = call(&app, Method::POST, "/api/v1/admin/clients", &ada, Some(&body), &key).await;
        assert_eq!(after.status(), 401);
    }
}

on_each_database! {
    async fn a_key_in_flight_is_a_409_until_its_request_answers_or_dies(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let user_id = sqlx::query_scalar::<_, String>("SELECT id FROM users WHERE email = 'ada@example.com'")
            .fetch_one(app.state.db().pool()).await.expect("id");
        let body = json!({"name": "slow"});
        // A request holding the key: claimed and not answered.
        let service = app.state.idempotency();
        let scope = service.scope_of(&format!("user:{user_id}"), "busy");
        let uri: http::Uri = "/api/v1/admin/clients".parse().expect("uri");
        let print = tessera::idempotency::fingerprint(&Method::POST, &uri, body.to_string().as_bytes());
        let now = app.clock.now();
        let claimed = tessera::idempotency::store::claim(app.state.db(), &scope, &print, now, now - 60, now - 86_400)
            .await.expect("claimed");
        assert_eq!(claimed, tessera::idempotency::store::Claim::Fresh);

        let key = [("idempotency-key", "busy")];
        let busy = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&body), &key).await;
        assert_eq!(header(&busy, "retry-after").as_deref(), Some("1"));
        problem(busy, 409, "idempotency_in_flight").await;

        // Its request died (longer than the request timeout): the key is taken over.
        let timeout = app.state.config().http.request_timeout_secs;
        app.clock.advance(Duration::from_secs(timeout + 6));
        let runs = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&body), &key).await;
        assert_eq!(runs.status(), 201);
        assert_eq!(header(&runs, "idempotent-replayed"), None);
    }
}

on_each_database! {
    async fn concurrent_retries_create_once(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let before = client_count(&app).await;
        let body = json!({"name": "raced"});
        let attempts = (0..8).map(|_| call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&body), &[("idempotency-key", "race")]));
        let answers = futures_util::future::join_all(attempts).await;
        let mut fresh = 0;
        for answer in &answers {
            match (answer.status().as_u16(), header(answer, "idempotent-replayed")) {
                (201, None) => fresh += 1,
                (201, Some(_)) | (409, None) => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!(fresh, 1, "exactly one request ran");
        assert_eq!(client_count(&app).await, before + 1);
    }
}

on_each_database! {
    async fn keys_expire_after_their_ttl_and_cleanup_removes_them(db: TestDatabase) {
        let app = spawn_app_with(db, |c| c.idempotency.ttl_secs = 3600).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let body = json!({"name": "ttl"});
        let key = [("idempotency-key", "ttl")];
        let first = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&body), &key).await;
        assert_eq!(first.status(), 201);
        app.clock.advance(Duration::from_secs(3601));
        let removed = tessera::cleanup::run_once(app.state.db(), app.clock.now(), 3600)
            .await.expect("cleanup").expect("lock");
        assert_eq!(removed.idempotency_keys, 1);
        let later = call(&app, Method::POST, "/api/v1/admin/clients", &admin, Some(&body), &key).await;
        assert_eq!(later.status(), 201);
        assert_eq!(header(&later, "idempotent-replayed"), None, "an expired key runs afresh");
    }
}

on_each_database! {
    async fn anonymous_registration_replays_under_the_same_key(db: TestDatabase) {
        let app = spawn_app_with(db, |c| c.auth.registration = tessera::config::Registration::Open).await;
        let body = json!({"email": "new@example.com", "password": PASSWORD, "first_name": "N", "last_name": "U"});
        let send = || app.client.post(app.url("/api/v1/auth/register")).header("idempotency-key", "reg-1").json(&body).send();
        let first = send().await.expect("sent");
        assert_eq!(first.status(), 202);
        let again = send().await.expect("sent");
        assert_eq!(again.status(), 202);
        assert_eq!(header(&again, "idempotent-replayed").as_deref(), Some("true"));
    }
}

/// Reads `path`, checks its ETag and 304, and returns the tag.
async fn tag_of(app: &TestApp, token: &str, path: &str) -> String {
    let read = call(app, Method::GET, path, token, None, &[]).await;
    assert_eq!(read.status(), 200, "{path}");
    let tag = header(&read, "etag").expect("ETag");
    let again = call(
        app,
        Method::GET,
        path,
        token,
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(again.status(), 304, "{path}");
    assert_eq!(header(&again, "etag").as_deref(), Some(tag.as_str()));
    assert!(again.bytes().await.expect("body").is_empty());
    tag
}

/// Two administrators read `path` (same tag); one changes it; the other's change, made
/// against what it read, is refused with 412 (PATCH and DELETE); with the current tag it
/// goes through.
async fn lost_update_is_refused(
    app: &TestApp,
    token: &str,
    path: &str,
    change: Value,
    other: Value,
) {
    let read = tag_of(app, token, path).await;
    let first = call(
        app,
        Method::PATCH,
        path,
        token,
        Some(&change),
        &[("if-match", &read)],
    )
    .await;
    assert_eq!(first.status(), 200, "{path}: {:?}", first.text().await);
    let current = tag_of(app, token, path).await;
    assert_ne!(current, read, "{path}: a change changes the tag");
    let stale = call(
        app,
        Method::PATCH,
        path,
        token,
        Some(&other),
        &[("if-match", &read)],
    )
    .await;
    problem(stale, 412, "precondition_failed").await;
    let deleted = call(
        app,
        Method::DELETE,
        path,
        token,
        None,
        &[("if-match", &read)],
    )
    .await;
    problem(deleted, 412, "precondition_failed").await;
    let weak = call(
        app,
        Method::PATCH,
        path,
        token,
        Some(&other),
        &[("if-match", &format!("W/{current}"))],
    )
    .await;
    problem(weak, 412, "precondition_failed").await;
    let fresh = call(
        app,
        Method::PATCH,
        path,
        token,
        Some(&other),
        &[("if-match", &current)],
    )
    .await;
    assert_eq!(fresh.status(), 200, "{path}");
    let any = call(
        app,
        Method::PATCH,
        path,
        token,
        Some(&change),
        &[("if-match", "*")],
    )
    .await;
    assert_eq!(any.status(), 200, "{path}");
}

on_each_database! {
    async fn every_admin_resource_answers_304_and_412(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let platform = platform_admin(&app).await;

        let user = app.create_user("eve@example.com", PASSWORD, &["user"], None).await;
        lost_update_is_refused(&app, &admin, &format!("/api/v1/admin/users/{}", user.id),
            json!({"first_name": "Eva"}), json!({"first_name": "Evelyn"})).await;

        let role = call(&app, Method::POST, "/api/v1/admin/roles", &admin, Some(&json!({"name": "auditor", "permissions": ["audit:read"]})), &[]).await;
        assert_eq!(role.status(), 201);
        lost_update_is_refused(&app, &admin, "/api/v1/admin/roles/auditor",
            json!({"description": "one"}), json!({"description": "two"})).await;

        let (client, _) = app.new_client(&admin, json!([])).await;
        lost_update_is_refused(&app, &admin, &format!("/api/v1/admin/clients/{client}"),
            json!({"name": "one"}), json!({"name": "two"})).await;

        let tenant = crate::flags::new_tenant(&app, &platform, "acme").await;
        lost_update_is_refused(&app, &platform, &format!("/api/v1/admin/tenants/{tenant}"),
            json!({"name": "Acme One"}), json!({"name": "Acme Two"})).await;

        let flag = call(&app, Method::POST, "/api/v1/admin/flags", &platform,
            Some(&json!({"key": "beta", "type": "bool", "default": false})), &[]).await;
        assert_eq!(flag.status(), 201, "{:?}", flag.text().await);
        lost_update_is_refused(&app, &platform, "/api/v1/admin/flags/beta",
            json!({"description": "one"}), json!({"description": "two"})).await;

        // A resource that is gone fails the precondition; lists are tagged too.
        let gone = call(&app, Method::PATCH, "/api/v1/admin/roles/nobody", &admin, Some(&json!({"description": "x"})), &[("if-match", "\"x\"")]).await;
        problem(gone, 412, "precondition_failed").await;
        for list in ["/api/v1/admin/users", "/api/v1/admin/roles", "/api/v1/admin/clients", "/api/v1/audit", "/api/v1/auth/sessions"] {
            tag_of(&app, &admin, list).await;
        }
        tag_of(&app, &platform, "/api/v1/admin/tenants").await;
        tag_of(&app, &platform, "/api/v1/admin/flags").await;
    }
}

fn links(response: &reqwest::Response) -> Vec<(String, String)> {
    let text = header(response, "link").expect("Link");
    text.split(", ")
        .map(|part| {
            let (target, rel) = part.split_once("; rel=").expect("rel");
            (
                rel.trim_matches('"').to_owned(),
                target.trim_matches(['<', '>']).to_owned(),
            )
        })
        .collect()
}

on_each_database! {
    async fn lists_link_to_first_prev_next_and_last(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        for i in 0..5 {
            let created = call(&app, Method::POST, "/api/v1/admin/roles", &admin,
                Some(&json!({"name": format!("role-{i}"), "permissions": []})), &[]).await;
            assert_eq!(created.status(), 201);
        }
        let first: Value = call(&app, Method::GET, "/api/v1/admin/roles?page_size=2", &admin, None, &[]).await.json().await.expect("JSON");
        let pages = first["pages"].as_i64().expect("pages");
        assert!(pages >= 3);
        let middle = call(&app, Method::GET, "/api/v1/admin/roles?page=2&page_size=2", &admin, None, &[]).await;
        let found = links(&middle);
        let rels: Vec<&str> = found.iter().map(|(rel, _)| rel.as_str()).collect();
        assert_eq!(rels, ["first", "prev", "next", "last"]);
        let target = |rel: &str| found.iter().find(|(r, _)| r == rel).map(|(_, t)| t.clone()).expect("rel");
        assert_eq!(target("first"), "/api/v1/admin/roles?page=1&page_size=2");
        assert_eq!(target("prev"), "/api/v1/admin/roles?page=1&page_size=2");
        assert_eq!(target("next"), "/api/v1/admin/roles?page=3&page_size=2");
        assert_eq!(target("last"), format!("/api/v1/admin/roles?page={pages}&page_size=2"));
        // Following `next` to the end visits every role once, in a stable order.
        let mut seen = Vec::new();
        let mut next = Some(target("first"));
        while let Some(path) = next {
            let page = call(&app, Method::GET, &path, &admin, None, &[]).await;
            let rels = links(&page);
            next = rels.iter().find(|(r, _)| r == "next").map(|(_, t)| t.clone());
            let body: Value = page.json().await.expect("JSON");
            for item in body["items"].as_array().expect("items") {
                seen.push(item["name"].as_str().expect("name").to_owned());
            }
        }
        let total = first["total"].as_i64().expect("total");
        assert_eq!(i64::try_from(seen.len()).expect("len"), total);
        let mut unique = seen.clone();
        unique.dedup();
        assert_eq!(unique.len(), seen.len());
        // Page sizes are capped.
        problem(call(&app, Method::GET, "/api/v1/admin/roles?page_size=101", &admin, None, &[]).await, 422, "invalid_pagination").await;
    }
}

/// A platform operator's status event.
async fn post_status(
    app: &TestApp,
    token: &str,
    service: &str,
    status: &str,
    ends_at: Option<i64>,
) -> reqwest::Response {
    let mut body =
        json!({"service": service, "status": status, "message": format!("{service} is {status}")});
    if let Some(end) = ends_at {
        body["ends_at"] = json!(end);
    }
    call(
        app,
        Method::POST,
        "/api/v1/status/events",
        token,
        Some(&body),
        &[],
    )
    .await
}

async fn status_page(app: &TestApp) -> Value {
    let response = app.get("/api/v1/status").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("public, max-age=10")
    );
    response.json().await.expect("JSON")
}

on_each_database! {
    async fn the_status_page_shows_the_worst_current_status(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let platform = platform_admin(&app).await;
        assert_eq!(status_page(&app).await["overall"], "operational");
        // (events posted, in order) → overall
        let table: &[(&str, &str, &str)] = &[
            ("api", "operational", "operational"),
            ("billing", "maintenance", "maintenance"),
            ("api", "degraded", "degraded"),
            ("search", "partial_outage", "partial_outage"),
            ("billing", "major_outage", "major_outage"),
            ("billing", "operational", "partial_outage"),
            ("search", "operational", "degraded"),
            ("api", "operational", "operational"),
        ];
        for (service, status, overall) in table {
            let posted = post_status(&app, &platform, service, status, None).await;
            assert_eq!(posted.status(), 201, "{service} {status}");
            app.clock.advance(Duration::from_millis(5));
            let page = status_page(&app).await;
            assert_eq!(page["overall"], *overall, "after {service} → {status}");
        }
        let page = status_page(&app).await;
        let services: Vec<(&str, &str)> = page["services"].as_array().expect("services").iter()
            .map(|s| (s["service"].as_str().expect("name"), s["status"].as_str().expect("status"))).collect();
        assert_eq!(services, [("api", "operational"), ("billing", "operational"), ("search", "operational")]);
        assert_eq!(page["total"], 8);
        assert_eq!(page["items"][0]["service"], "api", "newest first");

        // A maintenance window that has ended no longer counts.
        let end = app.clock.now() + 600;
        assert_eq!(post_status(&app, &platform, "db", "maintenance", Some(end)).await.status(), 201);
        assert_eq!(status_page(&app).await["overall"], "maintenance");
        app.clock.advance(Duration::from_secs(601));
        assert_eq!(status_page(&app).await["overall"], "operational");

        // Recent events are a list like every other.
        let paged = app.get("/api/v1/status?page_size=3&page=2").await;
        let rels: Vec<String> = links(&paged).into_iter().map(|(rel, _)| rel).collect();
        assert_eq!(rels, ["first", "prev", "next", "last"]);
    }
}

on_each_database! {
    async fn status_events_need_a_platform_operator_and_valid_input(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let platform = platform_admin(&app).await;
        let tenant_admin = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let user = app.token_for("bob@example.com", PASSWORD, &["user"]).await;
        problem(post_status(&app, &tenant_admin, "api", "degraded", None).await, 403, "platform_only").await;
        problem(post_status(&app, &user, "api", "degraded", None).await, 403, "forbidden").await;
        let anonymous = app.client.post(app.url("/api/v1/status/events"))
            .json(&json!({"service": "api", "status": "degraded", "message": "m"})).send().await.expect("sent");
        problem(anonymous, 401, "unauthenticated").await;
        problem(post_status(&app, &platform, "API!", "degraded", None).await, 422, "validation_failed").await;
        problem(post_status(&app, &platform, "api", "down", None).await, 422, "validation_failed").await;
        problem(post_status(&app, &platform, "api", "degraded", Some(app.clock.now() - 1)).await, 422, "validation_failed").await;
        let hidden = call(&app, Method::POST, "/api/v1/status/events", &platform,
            Some(&json!({"service": "api", "status": "degraded", "message": "ok\u{202e}"})), &[]).await;
        problem(hidden, 422, "validation_failed").await;

        // A monitor: a service account of the platform tenant holding `status:write`.
        let (id, secret) = app.new_client(&platform, json!(["status:write"])).await;
        let monitor = client_token(&app, &id, &secret, "status:write").await;
        assert_eq!(post_status(&app, &monitor, "api", "degraded", None).await.status(), 201);
        let (id, secret) = app.new_client(&platform, json!(["flags:read"])).await;
        let other = client_token(&app, &id, &secret, "flags:read").await;
        problem(post_status(&app, &other, "api", "degraded", None).await, 403, "insufficient_scope").await;
    }
}

on_each_database! {
    async fn status_changes_reach_the_hub_status_channel(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let platform = platform_admin(&app).await;
        let user = app.token_for("bob@example.com", PASSWORD, &["user"]).await;
        assert_eq!(post_status(&app, &platform, "api", "major_outage", None).await.status(), 201);
        let history: Value = app.get_bearer("/api/v1/realtime/history?channel=status", &user).await.json().await.expect("JSON");
        let events = history["events"].as_array().expect("events");
        assert_eq!(events.len(), 1, "{history}");
        assert_eq!(events[0]["type"], "status.changed");
        assert_eq!(events[0]["data"]["overall"], "major_outage");
        assert_eq!(events[0]["data"]["event"]["service"], "api");
        // Only Tessera publishes there.
        let forged = call(&app, Method::POST, "/api/v1/realtime/publish", &platform,
            Some(&json!({"channel": "status", "type": "status.changed", "data": {}})), &[]).await;
        problem(forged, 403, "reserved_channel").await;
    }
}

on_each_database! {
    async fn two_administrators_racing_with_one_etag_make_one_change(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let ada = app.token_for("ada@example.com", PASSWORD, &["admin"]).await;
        let bob = app.token_for("bob@example.com", PASSWORD, &["admin"]).await;
        let created = call(&app, Method::POST, "/api/v1/admin/roles", &ada, Some(&json!({"name": "ops", "permissions": []})), &[]).await;
        assert_eq!(created.status(), 201);
        let path = "/api/v1/admin/roles/ops";
        let tag = tag_of(&app, &ada, path).await;
        let by_ada = json!({"description": "ada's"});
        let by_bob = json!({"description": "bob's"});
        let condition = [("if-match", tag.as_str())];
        let (a, b) = tokio::join!(
            call(&app, Method::PATCH, path, &ada, Some(&by_ada), &condition),
            call(&app, Method::PATCH, path, &bob, Some(&by_bob), &condition),
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 412], "one change wins, the other is refused");

        // A writer that died holding the lock delays others only until the lock is stale.
        let now = app.clock.now();
        sqlx::query("INSERT INTO resource_locks (resource, locked_at) VALUES ($1, $2)")
            .bind(path)
            .bind(now)
            .execute(app.state.db().pool())
            .await
            .expect("lock");
        let busy = call(&app, Method::PATCH, path, &ada, Some(&by_ada), &[]).await;
        problem(busy, 409, "resource_busy").await;
        let timeout = app.state.config().http.request_timeout_secs;
        app.clock.advance(Duration::from_secs(timeout + 6));
        let after = call(&app, Method::PATCH, path, &ada, Some(&by_ada), &[]).await;
        assert_eq!(after.status(), 200);
    }
}

/// A method a route does not answer is 405 with `Allow` on every route of the document, even
/// when it carries a stale `If-Match` and an `Idempotency-Key`: a precondition checked first
/// would answer 412 on the administrative resources, so this fails if any shared route layer
/// acts before the method is refused.
#[tokio::test]
async fn an_unanswered_method_is_405_before_any_precondition_or_key() {
    let app = crate::helpers::spawn_app().await;
    let platform = platform_admin(&app).await;
    let document: Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("document");
    let paths = document["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (template, item) in paths {
        let concrete: Vec<&str> = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect();
        let path = concrete.join("/");
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if item.get(method.as_str().to_ascii_lowercase()).is_some() {
                continue;
            }
            let key = format!("unanswered-{checked}");
            let response = call(
                &app,
                method.clone(),
                &path,
                &platform,
                Some(&json!({})),
                &[("if-match", "\"stale\""), ("idempotency-key", &key)],
            )
            .await;
            let allow = header(&response, "allow");
            assert_eq!(response.status(), 405, "{method} {template}");
            let allow = allow.unwrap_or_else(|| panic!("{method} {template}: no Allow"));
            assert!(
                !allow.contains(method.as_str()),
                "{method} {template}: {allow}"
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} unanswered methods were tried");
}
