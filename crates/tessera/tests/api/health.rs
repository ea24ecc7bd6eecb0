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

/// A fixed master key: production refuses to generate one.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Series of `http_requests_total` whose method label is `other`.
fn other_method_series(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("method=\"other\""))
        .count()
}

#[tokio::test]
async fn invented_methods_never_become_metric_series() {
    let app = spawn_app().await;
    let send = |from: usize, to: usize| {
        let app = &app;
        async move {
            for i in from..to {
                let method = reqwest::Method::from_bytes(format!("XMETHOD{i}").as_bytes())
                    .expect("a valid extension method");
                app.client
                    .request(method, app.url("/healthz"))
                    .send()
                    .await
                    .expect("request sent");
            }
        }
    };
    send(0, 50).await;
    let before = app.get("/metrics").await.text().await.expect("text");
    send(50, 350).await;
    let after = app.get("/metrics").await.text().await.expect("text");
    assert!(other_method_series(&before) >= 1, "{before}");
    assert_eq!(
        other_method_series(&before),
        other_method_series(&after),
        "300 more invented methods created series"
    );
    assert!(!after.contains("XMETHOD"), "a method name became a label");
}

#[tokio::test]
async fn production_does_not_serve_metrics_publicly_without_a_token() {
    let app = spawn_app_with(crate::helpers::TestDatabase::sqlite(), |c| {
        c.environment = tessera::config::Environment::Production;
        c.master_key = Some(tessera::config::Secret::new(MASTER_KEY));
    })
    .await;
    problem(app.get("/metrics").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_metrics_token_is_required_wherever_it_is_configured() {
    let token = "scraper-token-0123456789";
    let app = spawn_app_with(crate::helpers::TestDatabase::sqlite(), |c| {
        c.environment = tessera::config::Environment::Production;
        c.master_key = Some(tessera::config::Secret::new(MASTER_KEY));
        c.metrics.token = Some(tessera::config::Secret::new(token));
    })
    .await;
    problem(app.get("/metrics").await, 401, "unauthenticated").await;
    problem(
        app.get_bearer("/metrics", "scraper-token-0123456780").await,
        401,
        "unauthenticated",
    )
    .await;
    let scraped = app.get_bearer("/metrics", token).await;
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .expect("text")
            .contains("tessera_build_info")
    );
}

#[tokio::test]
async fn a_metrics_listener_takes_metrics_off_the_public_one() {
    let app = spawn_app_with(crate::helpers::TestDatabase::sqlite(), |c| {
        c.metrics.bind = Some("127.0.0.1:0".parse().expect("address"));
    })
    .await;
    problem(app.get("/metrics").await, 404, "not_found").await;
    let address = app.metrics_address.expect("the metrics listener is bound");
    let scraped = app
        .client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .expect("text")
            .contains("http_requests_total")
    );
    app.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_releases_the_database() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let state = app.state.clone();
    app.stop().await;
    assert!(state.db().pool().is_closed());
}
