//! Every error is problem+json with a stable code and the request id.

use crate::helpers::{TestDatabase, problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn unknown_paths_are_404_problems() {
    let app = spawn_app().await;
    let body = problem(app.get("/api/v1/nope").await, 404, "not_found").await;
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let allow = response.headers().get("allow").cloned();
    problem(response, 405, "method_not_allowed").await;
    assert!(allow.is_some_and(|a| a.to_str().is_ok_and(|a| a.contains("GET"))));
}

#[tokio::test]
async fn oversized_bodies_are_413_problems_before_routing() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.http.body_limit_bytes = 1024).await;
    let response = app
        .client
        .post(app.url("/healthz"))
        .header("content-type", "application/json")
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("sent");
    problem(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_client_request_id_is_echoed_and_reported_in_problems() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/missing"))
        .header("x-request-id", "req-42.alpha")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "req-42.alpha");
    let body = problem(response, 404, "not_found").await;
    assert_eq!(body["request_id"], "req-42.alpha");
}

#[tokio::test]
async fn a_malformed_request_id_is_replaced_by_a_generated_one() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "two words\"<script>")
        .send()
        .await
        .expect("sent");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_security_headers() {
    let app = spawn_app().await;
    for path in ["/healthz", "/missing"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert!(headers.contains_key("x-request-id"), "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert!(
            !headers.contains_key("strict-transport-security"),
            "http public URL: no HSTS"
        );
    }
}

/// Reads about a caller or its tenant stay in the caller's own cache and are revalidated
/// with their ETag each time; nothing shared may keep them.
#[tokio::test]
async fn answers_to_credentialed_reads_are_private_and_revalidated() {
    let app = spawn_app().await;
    let token = app
        .token_for("ada@example.com", "correct horse battery", &["admin"])
        .await;
    // The session's own view keeps the handler's `no-store`: a route's own policy wins.
    let me = app.get_bearer("/api/v1/auth/me", &token).await;
    assert_eq!(me.headers()["cache-control"], "no-store");
    for path in [
        "/api/v1/auth/sessions",
        "/api/v1/admin/users",
        "/api/v1/admin/roles",
        "/api/v1/admin/clients",
        "/api/v1/audit",
    ] {
        let response = app.get_bearer(path, &token).await;
        assert_eq!(response.status(), 200, "{path}");
        let cache = response.headers()["cache-control"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert_eq!(cache, "private, no-cache", "{path}");
        assert!(response.headers().contains_key("etag"), "{path}");
    }
    // Public answers keep their own policy.
    let jwks = app.get_bearer("/.well-known/jwks.json", &token).await;
    assert!(
        jwks.headers()["cache-control"]
            .to_str()
            .expect("ASCII")
            .contains("max-age")
    );
}

#[tokio::test]
async fn cors_never_answers_with_a_wildcard() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.http.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let allowed = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let other = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("sent");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// Every `(method, path)` the server routes, from the operations of its OpenAPI document
/// (which the `openapi` tests prove complete), so a new route is covered without editing
/// this list.
fn routes_in_source() -> Vec<(reqwest::Method, String)> {
    let (_, openapi) = tessera::app::routes();
    let doc = serde_json::to_value(openapi).expect("the document serialises");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (name, method) in [
            ("get", reqwest::Method::GET),
            ("post", reqwest::Method::POST),
            ("patch", reqwest::Method::PATCH),
            ("put", reqwest::Method::PUT),
            ("delete", reqwest::Method::DELETE),
        ] {
            if item.get(name).is_some() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

crate::on_each_database! {
    async fn no_error_path_of_any_route_answers_5xx(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let routes = routes_in_source();
        assert!(routes.len() >= 40, "found only {} routes: {routes:?}", routes.len());
        let long = "x".repeat(300);
        let ids = [
            "00000000-0000-7000-8000-000000000000",
            "00000000-0000-7000-8000-000000000001",
            "nope'--",
            "a%00b",
            long.as_str(),
        ];
        // JSON bodies, and one form body for the OAuth endpoints.
        let bodies: [Option<&str>; 9] = [
            None,
            Some("{}"),
            Some("[]"),
            Some("{\"a\":"),
            Some("null"),
            Some("{\"page\": 1e400, \"name\": null, \"roles\": [1], \"active\": \"yes\"}"),
            Some("{\"email\": \"\\u0000@x\", \"password\": \"\", \"login\": \"\", \"scopes\": [\"*:*\"], \"code\": \"000000\", \"new_password\": \"\"}"),
            Some("{\"login\": \"a\\u0000\", \"password\": \"x\", \"tenant\": \"\\u0000\", \"name\": \"\\u0000\", \"slug\": \"\\u0000\", \"mfa_token\": \"\\u0000\", \"refresh_token\": \"\\u0000\", \"roles\": [\"\\u0000\"], \"permissions\": [\"a\\u0000:b\"]}"),
            Some("grant_type=client_credentials&client_id=%00&client_secret=%00&token=%00&scope=%00"),
        ];
        let mut served = 0;
        for (method, template) in &routes {
            // A fresh admin session per route: some routes end the caller's session.
            let admin = app
                .token_for(&format!("admin{served}@example.com"), "correct horse battery", &["admin"])
                .await;
            // Without a placeholder the path is the same whatever the id.
            let ids = if template.contains('{') { &ids[..] } else { &ids[..1] };
            for id in ids {
                let path = template
                    .split('/')
                    .map(|segment| if segment.starts_with('{') { id } else { segment })
                    .collect::<Vec<_>>()
                    .join("/");
                for query in [
                    "",
                    "?page=-1&page_size=99999999999&q=%00&after=-5&since=x",
                    "?actor=%00&target=%00&action=%00&tenant=%00&q=a%00",
                ] {
                    for body in bodies {
                        // Anonymous, the admin's Bearer, and Basic credentials holding a NUL.
                        let bearer_admin = format!("Bearer {admin}");
                        for bearer in [None, Some(bearer_admin.as_str()), Some("Basic ADp4")] {
                            let mut request = app
                                .client
                                .request(method.clone(), app.url(&format!("{path}{query}")));
                            if let Some(authorization) = bearer {
                                request = request.header("authorization", authorization);
                            }
                            if let Some(body) = body {
                                let media = if body.starts_with('{') || body.starts_with('[') || body == "null" {
                                    "application/json"
                                } else {
                                    "application/x-www-form-urlencoded"
                                };
                                request = request.header("content-type", media).body(body.to_owned());
                            }
                            let response = request.send().await.expect("request sent");
                            served += 1;
                            assert!(
                                !response.status().is_server_error(),
                                "{method} {path}{query} body {body:?} (bearer: {}) answered {}: {}",
                                bearer.is_some(),
                                response.status(),
                                response.text().await.unwrap_or_default()
                            );
                        }
                    }
                }
            }
        }
        assert!(served > 1_000);
    }
}
