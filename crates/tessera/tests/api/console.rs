//! The web console: its pages as HTTP answers (redirects, the strict policy, permissions in
//! the navigation, nothing reflected), the audit chain's status route it shows, and the whole
//! console in a real browser (`tests/interop/console_check.mjs`: Playwright driving Debian's
//! Chromium, axe scans, screenshots under `target/console-screenshots/`). Beside the main
//! server the browser suite uses two more: one whose password hashing is easily overloaded,
//! one whose access tokens are short-lived.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use tessera::clock::Clock;
use tessera::tenants::{DEFAULT_TENANT_ID, SYSTEM_TENANT_ID};

use crate::flags::{new_tenant, platform_admin};
use crate::helpers::{TestApp, TestDatabase, spawn_app, spawn_app_on, spawn_app_with};
use crate::interop::{INTEROP_DIR, available, run_with_stdin};
use crate::on_each_database;
use crate::realtime::service_token;
use crate::tenants::{PASSWORD, member_of};

/// Where the browser suite saves its screenshots (CI keeps them as artefacts).
const SCREENSHOTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/console-screenshots"
);

/// A GET that does not follow redirects.
async fn get_raw(app: &TestApp, path: &str, bearer: Option<&str>) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut request = client.get(app.url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_the_sign_in_page() {
    let app = spawn_app().await;
    let root = get_raw(&app, "/", None).await;
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()[LOCATION], "/login");
    let page = get_raw(&app, "/admin/users", None).await;
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()[LOCATION], "/login?next=/admin/users");
}

#[tokio::test]
async fn the_sign_in_page_carries_the_strict_policy_and_no_inline_code() {
    let app = spawn_app().await;
    let response = get_raw(
        &app,
        "/login?reason=%3Cscript%3Ealert(1)%3C/script%3E",
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let policy = response.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii")
        .to_owned();
    for directive in [
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let html = response.text().await.expect("text");
    // The one script is an external file; the query string is never written into the page.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/assets/console.js\" defer></script>"));
    assert!(!html.contains("alert(1)"));
    assert!(!html.contains("style="));
}

#[tokio::test]
async fn assets_are_compiled_in_with_their_types() {
    let app = spawn_app().await;
    for (name, kind) in [
        ("console.css", "text/css"),
        ("console.js", "text/javascript"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let response = get_raw(&app, &format!("/assets/{name}"), None).await;
        assert_eq!(response.status(), 200, "{name}");
        let content_type = response.headers()[CONTENT_TYPE].to_str().expect("ascii");
        assert!(content_type.starts_with(kind), "{name}: {content_type}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    assert_eq!(
        get_raw(&app, "/assets/../Cargo.toml", None).await.status(),
        404
    );
    assert_eq!(
        get_raw(&app, "/assets/secret.env", None).await.status(),
        404
    );
}

#[tokio::test]
async fn the_navigation_shows_only_the_pages_the_caller_may_open() {
    let app = spawn_app().await;
    let user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;

    let account = get_raw(&app, "/account", Some(&user)).await;
    assert_eq!(account.status(), 200);
    assert_eq!(account.headers()["cache-control"], "no-store");
    let html = account.text().await.expect("html");
    assert!(html.contains("ann@example.com"));
    assert!(html.contains("href=\"/account/sessions\""));
    assert!(!html.contains("href=\"/admin/users\""));
    assert!(!html.contains("href=\"/admin/audit\""));
    let refused = get_raw(&app, "/admin/users", Some(&user)).await;
    assert_eq!(refused.status(), 403);
    let html = refused.text().await.expect("html");
    assert!(html.contains("data-page=\"forbidden\""));
    assert!(!html.contains("data-form=\"user-create\""));

    let html = get_raw(&app, "/admin/users", Some(&admin))
        .await
        .text()
        .await
        .expect("html");
    assert!(html.contains("data-form=\"user-create\""));
    assert!(html.contains("href=\"/admin/audit\""));
    // Tenants are for platform administrators, whom a tenant's admin role does not make.
    assert!(!html.contains("href=\"/admin/tenants\""));
}

on_each_database! {
    async fn the_status_page_offers_posting_only_to_platform_operators(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let platform = platform_admin(&app).await;
        let user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
        // `*:*` in the default tenant: the API refuses its status events (`platform_only`).
        let tenant_admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let form = "data-form=\"status-post\"";
        for (token, may_post) in [(&platform, true), (&user, false), (&tenant_admin, false)] {
            let page = get_raw(&app, "/status", Some(token)).await;
            assert_eq!(page.status(), 200);
            let html = page.text().await.expect("html");
            assert!(html.contains("href=\"/status\" aria-current=\"page\""), "in the navigation");
            assert!(html.contains("data-list=\"services\""));
            assert_eq!(html.contains(form), may_post, "{html}");
            assert!(!html.contains("<!-- part:"), "a marker left in the page");
            let posted = app.send(Method::POST, "/api/v1/status/events", token,
                Some(json!({"service": "api", "status": "degraded", "message": "Slow"}))).await;
            assert_eq!(posted.status(), if may_post { 201 } else { 403 });
        }
        let account = get_raw(&app, "/account", Some(&user)).await.text().await.expect("html");
        assert!(account.contains("href=\"/status\""), "everyone signed in finds the status");
    }
}

#[tokio::test]
async fn names_are_escaped_where_the_console_shows_them() {
    let app = spawn_app().await;
    app.create_user("eve@example.com", PASSWORD, &["user"], None)
        .await;
    sqlx::query("UPDATE users SET first_name = '<img src=x>', last_name = '\"' WHERE email = $1")
        .bind("eve@example.com")
        .execute(app.state.db().pool())
        .await
        .expect("renamed");
    let token = app.login("eve@example.com", PASSWORD).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let html = get_raw(&app, "/account", Some(&token))
        .await
        .text()
        .await
        .expect("html");
    assert!(!html.contains("<img src=x>"), "raw markup in the page");
    assert!(html.contains("&lt;img src=x&gt;"));
}

#[tokio::test]
async fn the_audit_chain_status_is_for_platform_administrators() {
    let app = spawn_app().await;
    let platform = platform_admin(&app).await;
    let status = app
        .send(Method::GET, "/api/v1/audit/chain", &platform, None)
        .await;
    assert_eq!(status.status(), 200);
    let body: Value = status.json().await.expect("JSON");
    assert_eq!(body["intact"], true, "{body}");
    assert!(body["unsealed"].is_u64(), "{body}");

    let tenant_admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let refused = app
        .send(Method::GET, "/api/v1/audit/chain", &tenant_admin, None)
        .await;
    assert_eq!(refused.status(), 403);
    let user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
    let refused = app
        .send(Method::GET, "/api/v1/audit/chain", &user, None)
        .await;
    assert_eq!(refused.status(), 403);
}

/// Whether Node with Playwright and axe (`npm ci` in tests/interop) and Chromium are there.
fn browser_available() -> bool {
    available(
        Command::new("node").current_dir(INTEROP_DIR).args([
            "-e",
            "Promise.all([import('playwright-core'), import('@axe-core/playwright')])\
             .then(() => process.exit(0), () => process.exit(1))",
        ]),
        "Playwright",
        "run `npm ci` in crates/tessera/tests/interop",
    ) && available(
        Command::new("/usr/bin/chromium").arg("--version"),
        "Chromium",
        "apt-get install chromium",
    )
}

/// Eleven status events of three services; the latest of each leaves `billing` in
/// maintenance for two hours and the others operational.
async fn seed_status(app: &TestApp, platform: &str) {
    let ends_at = Clock::system().now() + 7_200;
    for n in 0..11 {
        let service = ["auth", "search", "billing"][n % 3];
        let event = match n {
            8 => json!({"service": service, "status": "maintenance",
                "message": "Moving the billing database; invoices wait until it is done.",
                "ends_at": ends_at}),
            _ if n % 2 == 0 && n < 8 => json!({"service": service, "status": "degraded",
                "message": format!("Slow answers ({n}).")}),
            _ => json!({"service": service, "status": "operational",
                "message": format!("Back to normal ({n}).")}),
        };
        let posted = app
            .send(Method::POST, "/api/v1/status/events", platform, Some(event))
            .await;
        assert_eq!(posted.status(), 201);
    }
}

/// A server that cannot keep up with password checks: no queue beside its hashing threads,
/// and each hash takes seconds, so a few concurrent sign-ins fill it and the next is shed.
async fn busy_server() -> TestApp {
    spawn_app_on(TestDatabase::sqlite(), Clock::system(), |c| {
        c.passwords.max_queued_hashes = 0;
        c.passwords.argon2_memory_kib = 65_536;
        c.passwords.argon2_iterations = 40;
        c.rate_limits.login_per_ip = "off".to_owned();
        c.rate_limits.login_per_ip_account = "off".to_owned();
    })
    .await
}

/// The provisioning example's service, publishing as a service account of the default tenant;
/// returns its base URL.
async fn provisioning_service(app: &TestApp, admin: &str) -> String {
    use tessera_example_provisioning::{Publisher, router};
    let (id, secret) = app.new_client(admin, json!(["events:publish"])).await;
    let publisher = Publisher {
        tessera: app.address.clone(),
        token: service_token(app, &id, &secret).await,
        tenant_id: DEFAULT_TENANT_ID.to_owned(),
        http: reqwest::Client::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let address = listener.local_addr().expect("address");
    let service = router(publisher, Duration::from_millis(200));
    tokio::spawn(async move { axum::serve(listener, service).await });
    format!("http://{address}")
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    // The browser and the TOTP codes the suite computes live in real time.
    let app = spawn_app_on(TestDatabase::sqlite(), Clock::system(), |c| {
        c.rate_limits.lockout_after = 3;
    })
    .await;
    let platform = platform_admin(&app).await;
    let root = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;

    // ann follows provisioning workflows; bob turns on a second factor; dora's tenant
    // requires one.
    let role = app
        .send(
            Method::POST,
            "/api/v1/admin/roles",
            &root,
            Some(
                json!({"name": "operator", "permissions": ["events.service-lifecycle:subscribe"]}),
            ),
        )
        .await;
    assert_eq!(role.status(), 201);
    app.create_user("ann@example.com", PASSWORD, &["user", "operator"], None)
        .await;
    app.create_user("bob@example.com", PASSWORD, &["user"], None)
        .await;
    app.create_user("mallory@example.com", PASSWORD, &["user"], None)
        .await;
    let secure = new_tenant(&app, &platform, "secure").await;
    member_of(&app, &secure, "secure", "dora@secure.example", &["user"]).await;
    sqlx::query("UPDATE tenants SET mfa_required_roles = '[\"user\"]' WHERE id = $1")
        .bind(&secure)
        .execute(app.state.db().pool())
        .await
        .expect("requires a second factor");

    // A flag everyone gets on while it is enabled.
    let flag = app
        .send(
            Method::POST,
            "/api/v1/admin/flags",
            &platform,
            Some(json!({
                "key": "new_banner", "type": "bool", "default": false,
                "description": "The new banner", "rollout": [{"variant": "on", "percent": 100}],
            })),
        )
        .await;
    assert_eq!(flag.status(), 201, "{:?}", flag.text().await);

    // Eleven earlier events: the status page's list of recent events has two pages.
    seed_status(&app, &platform).await;
    let busy = busy_server().await;
    // Access tokens live 30 seconds (the shortest the configuration allows) with no leeway:
    // a page kept open longer must renew its cookie by itself.
    let short = spawn_app_on(TestDatabase::sqlite(), Clock::system(), |c| {
        c.token.access_ttl_secs = 30;
        c.token.leeway_secs = 0;
    })
    .await;
    platform_admin(&short).await;

    let provisioning_url = provisioning_service(&app, &root).await;
    let screenshots = Path::new(SCREENSHOTS);
    let input = json!({
        "base_url": app.address,
        "screenshots": screenshots,
        "admin": {"login": "ops@example.com", "password": PASSWORD, "tenant": "system"},
        "ann": {"login": "ann@example.com", "password": PASSWORD},
        "bob": {"login": "bob@example.com", "password": PASSWORD},
        "mallory": {"login": "mallory@example.com", "password": PASSWORD},
        "dora": {"login": "dora@secure.example", "password": PASSWORD, "tenant": "secure"},
        "flag": "new_banner",
        "default_tenant_id": DEFAULT_TENANT_ID,
        "provisioning_url": provisioning_url,
        "busy_url": busy.address,
        "hashing_places": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "short_url": short.address,
        "access_ttl_secs": 30,
    });
    let mut command = Command::new("node");
    command.current_dir(INTEROP_DIR).arg("console_check.mjs");
    let output = run_with_stdin(command, input.to_string()).await;
    let result: Value = serde_json::from_str(&output).expect("JSON");
    let problems = result["problems"].as_array().expect("problems");
    assert!(
        problems.is_empty(),
        "the browser suite found problems:\n{}\nsteps done: {}",
        problems
            .iter()
            .map(|p| p.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
        result["report"]["steps"]
    );
    let report = &result["report"];
    assert!(
        report["axe_pages"].as_u64().expect("count") >= 15,
        "{report}"
    );
    let shots = report["screenshots"].as_array().expect("screenshots");
    assert!(shots.len() >= 30, "{report}");
    for shot in shots {
        let path = shot.as_str().expect("path");
        assert!(std::fs::metadata(path).is_ok_and(|m| m.len() > 0), "{path}");
    }
    for page in ["status", "status-reader", "login-overloaded"] {
        for width in ["desktop", "phone"] {
            let file = format!("/{page}-{width}.png");
            assert!(
                shots
                    .iter()
                    .any(|s| s.as_str().is_some_and(|s| s.ends_with(&file))),
                "{file} in {report}"
            );
        }
    }

    // The events the browser posted are the servers' status: the administrator's, and the
    // one sent from a page whose access token had expired.
    let status: Value = app.get("/api/v1/status").await.json().await.expect("JSON");
    assert_eq!(status["overall"], "degraded", "{status}");
    let renewed: Value = short
        .get("/api/v1/status")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(renewed["services"][0]["service"], "renewal", "{renewed}");

    // What the browser did is in the log, as the actions the API records.
    let actions = app.audit_actions().await;
    for action in [
        "role.created",
        "user.created",
        "user.roles_changed",
        "flag.updated",
        "mfa.enabled",
        "client.created",
        "user.disabled",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    let system_users: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND email = $2")
            .bind(SYSTEM_TENANT_ID)
            .bind("carol@example.com")
            .fetch_one(app.state.db().pool())
            .await
            .expect("count");
    assert_eq!(system_users, 1);
}
