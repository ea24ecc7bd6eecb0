//! Rate limits and lockout: headers on every limited answer, 429 problems, client addresses
//! taken from forwarded headers only behind trusted proxies, counters shared through Redis
//! (and a local fallback when it goes away), and a lockout parallel guesses cannot outrun.

use std::time::Duration;

use serde_json::json;
use tessera::config::{Config, Secret};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::helpers::{TestApp, TestDatabase, basic, build_error, problem, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

fn header(response: &reqwest::Response, name: &str) -> i64 {
    response.headers()[name]
        .to_str()
        .expect("text")
        .parse()
        .expect("number")
}

async fn login(
    app: &TestApp,
    login: &str,
    password: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "login": login, "password": password, "delivery": "body" }));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.expect("sent")
}

async fn limited_app(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(TestDatabase::sqlite(), configure).await
}

#[tokio::test]
async fn headers_count_down_on_every_answer_and_a_429_carries_them_all() {
    let app = limited_app(|c| "3/min".clone_into(&mut c.rate_limits.login_per_ip)).await;
    let now = app.clock.now();
    for remaining in [2, 1, 0] {
        let response = login(&app, "nobody@example.com", "wrong password!", None).await;
        assert_eq!(response.status(), 401, "the answer itself is unchanged");
        assert_eq!(header(&response, "x-ratelimit-limit"), 3);
        assert_eq!(header(&response, "x-ratelimit-remaining"), remaining);
        let reset = header(&response, "x-ratelimit-reset");
        assert!(
            reset > now && reset <= now + 61,
            "reset {reset} is epoch seconds"
        );
    }
    let refused = login(&app, "nobody@example.com", "wrong password!", None).await;
    for _ in 0..5 {
        login(&app, "nobody@example.com", "wrong password!", None).await;
    }
    // Under attack the audit log gets one aggregated event, not one per refusal.
    tessera::audit::tally::flush(app.state.limiter().refusals(), app.state.db())
        .await
        .expect("flushed");
    let details: Vec<String> =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'rate_limit.exceeded'")
            .fetch_all(app.state.db().pool())
            .await
            .expect("audit");
    assert_eq!(details.len(), 1, "{details:?}");
    let details: serde_json::Value = serde_json::from_str(&details[0]).expect("JSON");
    assert_eq!(details["count"], 6);
    assert_eq!(details["samples"], json!(["127.0.0.1"]));
    assert_eq!(header(&refused, "x-ratelimit-limit"), 3);
    assert_eq!(header(&refused, "x-ratelimit-remaining"), 0);
    let retry = header(&refused, "retry-after");
    assert!(
        (1..=20).contains(&retry),
        "one interval (20 s) at most: {retry}"
    );
    assert!(refused.headers().contains_key("x-ratelimit-reset"));
    problem(refused, 429, "rate_limited").await;
}

#[tokio::test]
async fn the_allowance_comes_back_as_time_passes() {
    let app = limited_app(|c| "2/2s".clone_into(&mut c.rate_limits.login_per_ip)).await;
    for _ in 0..2 {
        assert_eq!(
            login(&app, "a@example.com", "wrong password!", None)
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login(&app, "a@example.com", "wrong password!", None)
            .await
            .status(),
        429
    );
    app.clock.advance(Duration::from_secs(2));
    let back = login(&app, "a@example.com", "wrong password!", None).await;
    assert_eq!(back.status(), 401);
    assert_eq!(
        header(&back, "x-ratelimit-remaining"),
        1,
        "the whole allowance is back"
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // From an untrusted peer, a different X-Forwarded-For per request changes nothing.
    let app = limited_app(|c| "2/min".clone_into(&mut c.rate_limits.login_per_ip)).await;
    for (n, spoofed) in ["1.1.1.1", "2.2.2.2", "3.3.3.3"].into_iter().enumerate() {
        let status = login(&app, "a@example.com", "wrong password!", Some(spoofed))
            .await
            .status();
        assert_eq!(status, if n < 2 { 401 } else { 429 }, "{spoofed}");
    }

    // Behind a trusted proxy, each forwarded client is counted on its own and recorded.
    let app = limited_app(|c| {
        "2/min".clone_into(&mut c.rate_limits.login_per_ip);
        c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        for _ in 0..2 {
            let forwarded = format!("{client}, 127.0.0.1");
            let status = login(&app, "a@example.com", "wrong password!", Some(&forwarded))
                .await
                .status();
            assert_eq!(status, 401, "{client}");
        }
    }
    let ips: Vec<Option<String>> =
        sqlx::query_scalar("SELECT ip FROM audit_events WHERE action = 'login.failed'")
            .fetch_all(app.state.db().pool())
            .await
            .expect("audit");
    assert!(
        ips.iter().all(|ip| ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("198.51.100."))),
        "{ips:?}"
    );
}

#[tokio::test]
async fn refresh_and_token_requests_are_limited_per_session_and_client() {
    let app = limited_app(|c| {
        "1/min".clone_into(&mut c.rate_limits.refresh_per_session);
        "2/min".clone_into(&mut c.rate_limits.token_per_client);
    })
    .await;
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let session = app.login("root@example.com", PASSWORD).await;
    let refresh = |token: String| {
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({ "refresh_token": token, "delivery": "body" }))
            .send()
    };
    let first = refresh(session["refresh_token"].as_str().expect("rt").to_owned())
        .await
        .expect("sent");
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-remaining"), 0);
    let rotated: serde_json::Value = first.json().await.expect("JSON");
    let second = refresh(rotated["refresh_token"].as_str().expect("rt").to_owned())
        .await
        .expect("sent");
    problem(second, 429, "rate_limited").await;
    // Another session has its own allowance.
    let other = app.login("root@example.com", PASSWORD).await;
    assert_eq!(
        refresh(other["refresh_token"].as_str().expect("rt").to_owned())
            .await
            .expect("sent")
            .status(),
        200
    );

    let (id, secret) = app.new_client(&admin, json!(["reports:read"])).await;
    let token = || {
        app.client
            .post(app.url("/oauth2/token"))
            .header("authorization", basic(&id, &secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
    };
    for remaining in [1, 0] {
        let answer = token().await.expect("sent");
        assert_eq!(answer.status(), 200);
        assert_eq!(header(&answer, "x-ratelimit-remaining"), remaining);
    }
    let refused = token().await.expect("sent");
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 429, "rate_limited").await;
}

#[tokio::test]
async fn parallel_guesses_get_no_more_tries_than_the_lockout_allows_known_or_not() {
    let app = limited_app(|c| c.rate_limits.lockout_after = 5).await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;

    let mut outcomes = Vec::new();
    for name in ["ada@example.com", "ghost@example.com"] {
        let attempts = (0..20).map(|_| login(&app, name, "wrong password!", None));
        let answers = futures_util::future::join_all(attempts).await;
        let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        statuses.sort_unstable();
        assert_eq!(
            statuses.iter().filter(|s| **s == 401).count(),
            5,
            "{name}: {statuses:?}"
        );
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15, "{name}");
        let delayed = answers
            .into_iter()
            .find(|r| r.status() == 429)
            .expect("a delayed answer");
        let retry = header(&delayed, "retry-after");
        let body = problem(delayed, 429, "login_delayed").await;
        outcomes.push((statuses, retry, body["detail"].clone()));
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "a real and an unknown account look the same"
    );

    // Each try allowed past the threshold doubles the wait (1 s, 2 s, then 4 s): locked until
    // the last millisecond of it, one more try once it is over.
    for wait in [1_000, 2_000] {
        app.clock.advance(Duration::from_millis(wait - 1));
        let waiting = login(&app, "ada@example.com", "wrong password!", None).await;
        assert_eq!(waiting.status(), 429, "still locked {wait} ms in, less one");
        app.clock.advance(Duration::from_millis(1));
        let allowed = login(&app, "ada@example.com", "wrong password!", None).await;
        assert_eq!(allowed.status(), 401, "one more try once the wait is over");
    }
    // Even the right password waits while locked; an administrator's unlock lifts it.
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD, None)
            .await
            .status(),
        429
    );
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let ada: serde_json::Value = app
        .get_bearer("/api/v1/admin/users?q=ada", &admin)
        .await
        .json()
        .await
        .expect("JSON");
    let id = ada["items"][0]["id"].as_str().expect("id");
    assert_eq!(
        app.post_bearer(&format!("/api/v1/admin/users/{id}/unlock"), &admin)
            .await
            .status(),
        204
    );
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD, None)
            .await
            .status(),
        200
    );
    let actions = app.audit_actions().await;
    assert!(actions.iter().any(|a| a == "login.lockout_started"));
    assert!(actions.iter().any(|a| a == "user.unlocked"));
}

#[tokio::test]
async fn the_per_account_limit_counts_the_account_whatever_its_name() {
    let app = limited_app(|c| "2/min".clone_into(&mut c.rate_limits.login_per_ip_account)).await;
    crate::attempts::create_ada(&app).await;
    for name in ["ada@example.com", "ada"] {
        assert_eq!(
            login(&app, name, "wrong password!", None).await.status(),
            401
        );
    }
    problem(
        login(&app, "ADA@example.com", PASSWORD, None).await,
        429,
        "rate_limited",
    )
    .await;
    assert_eq!(
        login(&app, "nobody@example.com", "wrong password!", None)
            .await
            .status(),
        401,
        "another name has its own allowance"
    );
}

#[tokio::test]
async fn bad_rates_are_refused_naming_the_key() {
    let error = build_error(|c| "ten per minute".clone_into(&mut c.rate_limits.login_per_ip)).await;
    assert!(
        error.contains("rate_limits.login_per_ip") && error.contains("COUNT/PERIOD"),
        "{error}"
    );
}

/// The Redis to test against: `TESSERA_TEST_REDIS_URL`, required under `CI=true`.
fn redis_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "TESSERA_TEST_REDIS_URL must be set in CI (.ci/run sets it)"
            );
            eprintln!("skipped: set TESSERA_TEST_REDIS_URL to run the Redis tests");
            None
        }
    }
}

fn with_redis(url: &str, prefix: &str) -> impl FnOnce(&mut Config) {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    move |c: &mut Config| {
        "3/min".clone_into(&mut c.rate_limits.login_per_ip);
        c.redis.url = Some(Secret::new(url));
        c.redis.key_prefix = prefix;
    }
}

fn unique_prefix() -> String {
    format!("tessera-test:{}:", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn two_instances_share_their_counters_through_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let first = limited_app(with_redis(&url, &prefix)).await;
    let second = limited_app(with_redis(&url, &prefix)).await;
    let remaining = |r: &reqwest::Response| header(r, "x-ratelimit-remaining");
    assert_eq!(
        remaining(&login(&first, "a@example.com", "wrong password!", None).await),
        2
    );
    assert_eq!(
        remaining(&login(&second, "a@example.com", "wrong password!", None).await),
        1
    );
    assert_eq!(
        remaining(&login(&first, "a@example.com", "wrong password!", None).await),
        0
    );
    problem(
        login(&second, "a@example.com", "wrong password!", None).await,
        429,
        "rate_limited",
    )
    .await;
    let ready: serde_json::Value = first.get("/readyz").await.json().await.expect("JSON");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["redis"], "ok");
}

#[tokio::test]
async fn a_lockout_counted_on_one_instance_holds_on_another_through_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let locking = |c: &mut Config| {
        c.redis.url = Some(Secret::new(url.clone()));
        c.redis.key_prefix.clone_from(&prefix);
        c.rate_limits.lockout_after = 3;
    };
    let first = limited_app(locking).await;
    let second = limited_app(locking).await;
    for app in [&first, &second, &first] {
        let answer = login(app, "ghost@example.com", "wrong password!", None).await;
        assert_eq!(answer.status(), 401);
    }
    let delayed = login(&second, "Ghost@example.com", "wrong password!", None).await;
    assert!(delayed.headers().contains_key("retry-after"));
    problem(delayed, 429, "login_delayed").await;
}

/// A TCP relay to `target` that can be cut, standing in for a Redis that goes away.
struct Relay {
    address: String,
    accept: JoinHandle<()>,
    links: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = std::sync::Arc::clone(&links);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().expect("links").push(link);
            }
        });
        Self {
            address,
            accept,
            links,
        }
    }

    fn cut(&self) {
        self.accept.abort();
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }
}

#[tokio::test]
async fn without_redis_logins_keep_working_counted_locally_and_readiness_says_degraded() {
    let Some(url) = redis_url() else { return };
    let target = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let relay = Relay::start(target).await;
    let app = limited_app(with_redis(
        &format!("redis://{}/0", relay.address),
        &unique_prefix(),
    ))
    .await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD, None)
            .await
            .status(),
        200
    );
    let ready: serde_json::Value = app.get("/readyz").await.json().await.expect("JSON");
    assert_eq!(ready["checks"]["redis"], "ok");

    relay.cut();
    let answer = login(&app, "ada@example.com", PASSWORD, None).await;
    assert_eq!(answer.status(), 200, "logins keep working");
    assert_eq!(
        header(&answer, "x-ratelimit-limit"),
        3,
        "still limited, locally"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.expect("JSON");
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["redis"], "degraded");
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(metrics.contains("tessera_redis_up 0"), "{metrics}");
}
