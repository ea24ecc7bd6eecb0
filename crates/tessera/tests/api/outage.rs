//! Dependencies going away and coming back, without restarting Tessera. Each outage is made
//! by a TCP proxy of the test's own between Tessera and PostgreSQL or Redis: taking it down
//! cuts every open connection and refuses new ones, exactly what a restart looks like from
//! Tessera, without disturbing anything else using those servers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tessera::config::{BusKind, DatabaseUrl, Secret};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::helpers::{TestDatabase, eventually, problem, spawn_app_with, spawn_peer};

const PASSWORD: &str = "correct horse battery";

/// Longer than any answer may take while a dependency is down: past it, a request hung.
const NO_HANG: Duration = Duration::from_secs(15);

/// Recovery and resubscription: well under the bus's reconciliation period.
const RECOVERY: Duration = Duration::from_secs(10);

/// A TCP forwarder that can be taken down and brought back.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (is_up, tracked) = (Arc::clone(&up), Arc::clone(&open));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !is_up.load(Ordering::SeqCst) {
                    // Down: the connection is closed at once, as by a server that is not there.
                    continue;
                }
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().expect("lock").push(forward.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            up,
            open,
            accept,
        }
    }

    /// Cuts every open connection and refuses new ones.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.open.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    fn bring_up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, proxy: &Proxy) -> String {
    let mut url = url::Url::parse(url).expect("URL");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.addr.port())).expect("port");
    url.to_string()
}

fn target_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("URL");
    let host = url.host_str().expect("host");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", url.port_or_known_default().unwrap_or(5432))
        .parse()
        .expect("a numeric address")
}

async fn ready(app: &crate::helpers::TestApp) -> (u16, Value) {
    let response = tokio::time::timeout(NO_HANG, app.get("/readyz"))
        .await
        .expect("/readyz answers while a dependency is down");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_database_outage_answers_503_problems_and_recovers_without_a_restart() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let proxy = Proxy::start(target_of(&db.url)).await;
    let proxied = through(&db.url, &proxy);
    let app = spawn_app_with(db, |c| {
        c.database.url = DatabaseUrl::parse(&proxied).expect("URL");
        c.database.acquire_timeout_secs = 2;
    })
    .await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    app.login("ada@example.com", PASSWORD).await;
    assert_eq!(ready(&app).await.1["checks"]["bus"], "ok");

    proxy.down();
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["database"], "failed");
    let login = tokio::time::timeout(
        NO_HANG,
        app.post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"login": "ada@example.com", "password": PASSWORD, "delivery": "body"}),
        ),
    )
    .await
    .expect("a login answers while the database is down");
    let answered = problem(login, 503, "database_unavailable").await;
    assert!(answered["detail"].is_string());

    proxy.bring_up();
    eventually(RECOVERY, "ready again, the bus listening again", || async {
        let (status, body) = ready(&app).await;
        status == 200 && body["checks"]["bus"] == "ok"
    })
    .await;
    app.login("ada@example.com", PASSWORD).await;
    app.stop().await;
}

#[tokio::test]
async fn a_redis_outage_degrades_limits_and_the_bus_which_resubscribe_when_it_returns() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let redis = std::env::var("TESSERA_TEST_REDIS_URL").unwrap_or_default();
    assert!(
        !redis.is_empty() || std::env::var("CI").as_deref() != Ok("true"),
        "TESSERA_TEST_REDIS_URL must be set in CI"
    );
    if redis.is_empty() {
        return;
    }
    let proxy = Proxy::start(target_of(&redis)).await;
    let proxied = through(&redis, &proxy);
    let prefix = format!("tessera-test:{}:", uuid::Uuid::new_v4().simple());
    let a = spawn_app_with(db, |c| {
        c.redis.url = Some(Secret::new(proxied));
        c.redis.key_prefix = prefix;
        c.cluster.bus = BusKind::Redis;
    })
    .await;
    let b = spawn_peer(&a, |_| {}).await;
    for app in [&a, &b] {
        eventually(RECOVERY, "the bus subscribed", || async {
            ready(app).await.1["checks"]["bus"] == "ok"
        })
        .await;
    }

    proxy.down();
    for app in [&a, &b] {
        eventually(
            RECOVERY,
            "readiness reports Redis and the bus degraded",
            || async {
                let (status, body) = ready(app).await;
                status == 200
                    && body["status"] == "degraded"
                    && body["checks"]["redis"] == "degraded"
                    && body["checks"]["bus"] == "degraded"
            },
        )
        .await;
    }
    // Limits fall back to this instance's own counts: logins are still served.
    a.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let login = a.login("ada@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().expect("token").to_owned();
    assert_eq!(b.get_bearer("/api/v1/auth/me", &token).await.status(), 200);

    proxy.bring_up();
    for app in [&a, &b] {
        eventually(RECOVERY, "Redis and the bus are back", || async {
            let (status, body) = ready(app).await;
            status == 200 && body["status"] == "ready" && body["checks"]["bus"] == "ok"
        })
        .await;
    }
    // Resubscribed: a revocation on A reaches B over Redis again.
    assert_eq!(
        a.post_bearer("/api/v1/auth/logout", &token).await.status(),
        204
    );
    eventually(
        Duration::from_secs(3),
        "B refuses the session revoked on A",
        || async { b.get_bearer("/api/v1/auth/me", &token).await.status() == 401 },
    )
    .await;
    a.stop().await;
    b.stop().await;
}
