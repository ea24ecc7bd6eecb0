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
