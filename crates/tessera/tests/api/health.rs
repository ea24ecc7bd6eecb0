//! `/healthz`, `/readyz`, `/metrics`.

use crate::helpers::{problem, spawn_app, spawn_app_with};
use crate::on_each_database;

#[tokio::test]
async fn healthz_answers_while_the_process_is_alive() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
}

on_each_database! {
    async fn readyz_is_ready_on_a_migrated_database(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let response = app.get("/readyz").await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["checks"]["database"], "ok");
        assert_eq!(body["checks"]["migrations"], "ok");
    }
}

on_each_database! {
    async fn readyz_turns_503_when_the_database_goes_away(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        assert_eq!(app.get("/readyz").await.status(), 200);
        app.state.db().close().await;
        let body = problem(app.get("/readyz").await, 503, "not_ready").await;
        assert_eq!(body["checks"]["database"], "failed");
        assert!(!body.to_string().contains("sqlite") && !body.to_string().contains("postgres"),
            "no internals on a public endpoint: {body}");
        assert_eq!(app.get("/healthz").await.status(), 200, "liveness is unaffected");
    }
}

on_each_database! {
    async fn readyz_turns_503_when_the_schema_is_behind(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.state.db().migrate_down(1).await.expect("roll back one migration");
        let response = app.get("/readyz").await;
        assert!(response.headers().contains_key("retry-after"));
        let body = problem(response, 503, "not_ready").await;
        assert_eq!(body["checks"]["database"], "ok");
        assert_eq!(body["checks"]["migrations"], "failed");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    app.get("/no/such/path/7f3a").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/plain"))
    );
    let text = response.text().await.expect("text");
    assert!(text.contains("tessera_build_info{version=\""), "{text}");
    let healthz = text.lines().find(|l| {
        l.starts_with("http_requests_total{")
            && l.contains("route=\"/healthz\"")
            && l.contains("status=\"200\"")
    });
    assert!(healthz.is_some(), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "latency is a histogram"
    );
    assert!(text.contains("route=\"unmatched\""));
    assert!(!text.contains("7f3a"), "raw paths never become labels");
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_releases_the_database() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let state = app.state.clone();
    app.stop().await;
    assert!(state.db().pool().is_closed());
}
