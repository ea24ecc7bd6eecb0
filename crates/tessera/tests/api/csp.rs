//! `POST /api/v1/csp-report`: accepted in both browser forms, refused cleanly when malformed
//! or oversized, rate-limited, and aggregated in the audit log.

use crate::helpers::{TestApp, TestDatabase, problem, spawn_app_with};

async fn send(app: &TestApp, media: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/csp-report"))
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .expect("sent")
}

const LEGACY: &str = r#"{"csp-report": {"document-uri": "https://auth.example/",
    "violated-directive": "script-src-elem", "blocked-uri": "https://evil.example/a.js?t=1"}}"#;

#[tokio::test]
async fn reports_are_accepted_counted_and_written_once_per_minute() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        "3/min".clone_into(&mut c.rate_limits.csp_report_per_ip);
    })
    .await;
    let first = send(&app, "application/csp-report", LEGACY).await;
    assert_eq!(first.status(), 204);
    assert_eq!(first.headers()["x-ratelimit-remaining"], "2");
    let modern = r#"[{"type": "csp-violation", "age": 1, "url": "https://auth.example/",
        "body": {"effectiveDirective": "img-src", "blockedURL": "https://cdn.example/x.png"}}]"#;
    assert_eq!(
        send(&app, "application/reports+json", modern)
            .await
            .status(),
        204
    );
    assert_eq!(
        send(&app, "application/csp-report", LEGACY).await.status(),
        204
    );
    problem(
        send(&app, "application/csp-report", LEGACY).await,
        429,
        "rate_limited",
    )
    .await;

    tessera::audit::tally::flush(app.state.csp_reports(), app.state.db())
        .await
        .expect("flushed");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT reason, details FROM audit_events WHERE action = 'csp.violation' ORDER BY reason",
    )
    .fetch_all(app.state.db().pool())
    .await
    .expect("audit");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1].0, "script-src-elem");
    let details: serde_json::Value = serde_json::from_str(&rows[1].1).expect("JSON");
    assert_eq!(details["count"], 2);
    assert_eq!(
        details["samples"],
        serde_json::json!(["https://evil.example/a.js"]),
        "query strings are never kept"
    );
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(metrics.contains("tessera_csp_reports_total"), "{metrics}");
}

#[tokio::test]
async fn malformed_and_oversized_reports_are_refused_cleanly() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    problem(
        send(&app, "application/csp-report", "{not json").await,
        400,
        "invalid_report",
    )
    .await;
    problem(
        send(&app, "application/csp-report", "{}").await,
        400,
        "invalid_report",
    )
    .await;
    problem(
        send(&app, "application/reports+json", "{}").await,
        400,
        "invalid_report",
    )
    .await;
    assert_eq!(
        send(&app, "application/reports+json", "[]").await.status(),
        204,
        "a well-formed batch with nothing to count is dropped"
    );
    problem(
        send(&app, "text/plain", LEGACY).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let huge = format!(
        r#"{{"csp-report": {{"violated-directive": "img-src", "blocked-uri": "{}"}}}}"#,
        "a".repeat(20 * 1024)
    );
    problem(
        send(&app, "application/csp-report", huge).await,
        413,
        "payload_too_large",
    )
    .await;
}
