//! Operator signals in `/metrics`: login outcomes, lockouts, CSRF refusals, refresh-token
//! reuse, token verification failures by reason, the revocation feed, the password-hashing
//! queue and the process. The recorder is shared by every test of this binary, so each check
//! compares a series before and after its own requests.

use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

/// The value of the series `name{labels}` (exactly as rendered), or 0 when absent.
async fn series(app: &TestApp, name_and_labels: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.expect("text");
    text.lines()
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series == name_and_labels).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn login_outcomes_csrf_refusals_and_verification_failures_are_counted() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let wrong = r#"tessera_logins_total{outcome="invalid_credentials"}"#;
    let success = r#"tessera_logins_total{outcome="success"}"#;
    let csrf = "tessera_csrf_refusals_total";
    let malformed = r#"tessera_token_verification_failures_total{reason="token_malformed"}"#;
    let (wrong_0, success_0, csrf_0, malformed_0) = (
        series(&app, wrong).await,
        series(&app, success).await,
        series(&app, csrf).await,
        series(&app, malformed).await,
    );

    let attempt =
        json!({"login": "ada@example.com", "password": "not the password", "delivery": "body"});
    assert_eq!(
        app.post_json("/api/v1/auth/login", &attempt).await.status(),
        401
    );
    app.login("ada@example.com", PASSWORD).await;
    let cookie_login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"login": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    let cookies: Vec<String> = cookie_login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let refused = app
        .client
        .post(app.url("/api/v1/auth/sessions/revoke-others"))
        .header("cookie", cookies.join("; "))
        .header("origin", &app.address)
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 403);
    assert_eq!(
        app.get_bearer("/api/v1/auth/me", "not.a.token")
            .await
            .status(),
        401
    );

    assert!(series(&app, wrong).await > wrong_0);
    assert!(series(&app, success).await >= success_0 + 2.0);
    assert!(series(&app, csrf).await > csrf_0);
    assert!(series(&app, malformed).await > malformed_0);
}

#[tokio::test]
async fn lockouts_and_refresh_reuse_are_counted() {
    let app = spawn_app_with(crate::helpers::TestDatabase::sqlite(), |c| {
        c.rate_limits.lockout_after = 2;
    })
    .await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let lockouts = r#"tessera_lockouts_total{factor="password"}"#;
    let reuse = "tessera_refresh_reuse_total";
    let (lockouts_0, reuse_0) = (series(&app, lockouts).await, series(&app, reuse).await);

    // A rotated twice, then A again: a token older than the current one is reuse.
    let tokens = app.login("ada@example.com", PASSWORD).await;
    let first = json!({"refresh_token": tokens["refresh_token"]});
    let second: serde_json::Value = app
        .post_json("/api/v1/auth/refresh", &first)
        .await
        .json()
        .await
        .expect("rotated");
    let second = json!({"refresh_token": second["refresh_token"]});
    let third = app.post_json("/api/v1/auth/refresh", &second).await;
    assert_eq!(third.status(), 200);
    let reused = app.post_json("/api/v1/auth/refresh", &first).await;
    assert_eq!(reused.status(), 401);

    for _ in 0..2 {
        let attempt = json!({"login": "ada@example.com", "password": "wrong password!"});
        app.post_json("/api/v1/auth/login", &attempt).await;
    }
    assert!(series(&app, lockouts).await > lockouts_0);
    assert!(series(&app, reuse).await > reuse_0);
}

#[tokio::test]
async fn the_hashing_queue_and_the_process_are_measured() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    app.login("ada@example.com", PASSWORD).await;
    let text = app.get("/metrics").await.text().await.expect("text");
    for name in [
        "tessera_password_hash_queue_depth ",
        "tessera_password_hash_wait_seconds_count ",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert!(series(&app, "process_open_fds").await > 0.0);
    assert!(series(&app, "process_resident_memory_bytes").await > 1_000_000.0);
}

#[tokio::test]
async fn revocation_streams_and_their_delivery_lag_are_measured() {
    let app = spawn_app().await;
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let (id, secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
    let lag = "tessera_revocation_feed_lag_seconds_count";
    let lag_0 = series(&app, lag).await;
    let mut stream = app
        .client
        .get(app.url("/api/v1/auth/revocations/stream"))
        .header("authorization", crate::helpers::basic(&id, &secret))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream opened");
    assert_eq!(stream.status(), 200);
    // Read until the stream says it caught up: from then on entries are pushed.
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        let chunk = stream.chunk().await.expect("reads").expect("open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(series(&app, "tessera_revocation_streams").await >= 1.0);

    let user = app.token_for("ada@example.com", PASSWORD, &["user"]).await;
    assert_eq!(
        app.post_bearer("/api/v1/auth/logout", &user).await.status(),
        204
    );
    while !seen.contains("event: revocation") {
        let chunk = stream.chunk().await.expect("reads").expect("open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(series(&app, lag).await > lag_0);
}
