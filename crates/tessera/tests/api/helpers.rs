//! Test harness: a fresh database per test (a SQLite file in a temporary folder, or a
//! PostgreSQL schema dropped afterwards) and the real application on a random port.

use std::future::Future;
use std::path::Path;

use sqlx::Connection as _;
use sqlx::Executor as _;
use tempfile::TempDir;
use tessera::clock::Clock;
use tessera::config::{Config, DatabaseUrl};
use tessera::{AppState, Application};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs a test body once against SQLite and once against PostgreSQL, as two tests named
/// `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_each_database {
    ($(#[$meta:meta])* async fn $name:ident($db:ident: TestDatabase) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($db: $crate::helpers::TestDatabase) $body

            #[tokio::test]
            async fn sqlite() {
                body($crate::helpers::TestDatabase::sqlite()).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = $crate::helpers::TestDatabase::postgres().await {
                    body(db).await
                }
            }
        }
    };
}

/// A database of a test's own, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    /// Holds the SQLite file and the data folder.
    pub dir: TempDir,
    /// PostgreSQL admin URL and the schema to drop.
    schema: Option<(String, String)>,
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}", dir.path().join("db/tessera.db").display());
        Self {
            url,
            dir,
            schema: None,
        }
    }

    /// A fresh schema in the database named by `TESSERA_TEST_POSTGRES_URL`. Without that
    /// variable the test is skipped with a note, except under `CI=true`, where it fails.
    pub async fn postgres() -> Option<Self> {
        let Some(admin_url) = std::env::var("TESSERA_TEST_POSTGRES_URL")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "TESSERA_TEST_POSTGRES_URL must be set when CI=true: PostgreSQL tests are never skipped in CI"
            );
            eprintln!("skipped: set TESSERA_TEST_POSTGRES_URL to run the PostgreSQL variant");
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at TESSERA_TEST_POSTGRES_URL unreachable: {e}"));
        // Search indexes need pg_trgm. Installed once for the whole database in `public`, the
        // way an operator would: created by a test's migration instead, it would live in that
        // test's schema and vanish, with every other test's indexes, when that schema is
        // dropped. Two tests racing here: the loser's error is harmless.
        let _ = conn
            .execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
            .await;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .expect("create test schema");
        let _ = conn.close().await;

        let mut url = url::Url::parse(&admin_url).expect("TESSERA_TEST_POSTGRES_URL is a URL");
        // The schema's name also names its connections, so the teardown can end them.
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={schema}"))
            .append_pair("application_name", &schema);
        Some(Self {
            url: url.to_string(),
            dir: tempfile::tempdir().expect("temporary folder"),
            schema: Some((admin_url, schema)),
        })
    }

    /// A configuration for this database, listening on a random local port.
    pub fn config(&self) -> Config {
        let mut config = Config {
            data_dir: self.dir.path().join("data"),
            ..Config::default()
        };
        config.database.url = DatabaseUrl::parse(&self.url).expect("test database URL");
        config.database.max_connections = 5;
        config.http.bind = "127.0.0.1:0".parse().expect("address");
        // Tests log in far more often than people; the rate-limit tests turn limits on.
        let limits = &mut config.rate_limits;
        for rate in [
            &mut limits.login_per_ip_account,
            &mut limits.login_per_ip,
            &mut limits.register_per_ip,
            &mut limits.refresh_per_session,
            &mut limits.token_per_client,
            &mut limits.csp_report_per_ip,
        ] {
            "off".clone_into(rate);
        }
        limits.lockout_after = 0;
        config
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, schema)) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime removes the schema even when the test panicked.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    // The test's runtime is blocked on this thread, so transactions its
                    // background tasks left open would hold their locks for good: end them.
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1",
                    )
                    .bind(&schema)
                    .execute(&mut conn)
                    .await;
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The application's clock: manual, so a test moves time with `clock.advance` instead of
    /// sleeping.
    pub clock: Clock,
    /// The separate `/metrics` listener, when `metrics.bind` was configured.
    pub metrics_address: Option<std::net::SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// Kept alive as long as the application uses it.
    _db: TestDatabase,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs `body` as JSON.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// GETs with `Authorization: Bearer`.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs an empty body with `Authorization: Bearer`.
    pub async fn post_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// Sends `method` to `path` with `Authorization: Bearer token` and, when given, a JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// Creates an account with `roles` in the default tenant, logs it in and returns its
    /// access token.
    pub async fn token_for(&self, email: &str, password: &str, roles: &[&str]) -> String {
        self.create_user(email, password, roles, None).await;
        self.login(email, password).await["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// Creates a service account through the admin API; returns its id and secret.
    pub async fn new_client(&self, admin: &str, scopes: serde_json::Value) -> (String, String) {
        let created: serde_json::Value = self
            .send(
                reqwest::Method::POST,
                "/api/v1/admin/clients",
                admin,
                Some(serde_json::json!({"name": "svc", "scopes": scopes})),
            )
            .await
            .json()
            .await
            .expect("JSON");
        (
            created["id"].as_str().expect("id").to_owned(),
            created["client_secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
        )
    }

    /// Creates an account in the default tenant with `password` (hashed by the server's own
    /// service) or, when `stored_hash` is given, exactly that stored hash.
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        roles: &[&str],
        stored_hash: Option<&str>,
    ) -> tessera::users::User {
        use tessera::audit::Actor;
        use tessera::http::client::RequestMeta;
        use tessera::tenants::DEFAULT_TENANT_ID;
        use tessera::users::{self, Email, NewUser};
        let hash = match stored_hash {
            Some(hash) => hash.to_owned(),
            None => self
                .state
                .passwords()
                .hash(password.to_owned())
                .await
                .expect("hash"),
        };
        let new = NewUser {
            tenant_id: DEFAULT_TENANT_ID.into(),
            email: Email::parse(email).expect("email"),
            username: None,
            first_name: "Test".into(),
            last_name: "User".into(),
            password_hash: Some(hash),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        let mut tx = self.state.db().begin_write().await.expect("tx");
        let user = users::create(&mut tx, &new, &Actor::System, &RequestMeta::default())
            .await
            .expect("user created");
        tx.commit().await.expect("commit");
        user
    }

    /// Logs in with body delivery; returns the token response.
    pub async fn login(&self, login: &str, password: &str) -> serde_json::Value {
        let response = self
            .post_json(
                "/api/v1/auth/login",
                &serde_json::json!({ "login": login, "password": password, "delivery": "body" }),
            )
            .await;
        assert_eq!(response.status(), 200, "login of {login}");
        response.json().await.expect("token JSON")
    }

    /// Action names of the audit log, oldest first.
    pub async fn audit_actions(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT action FROM audit_events ORDER BY occurred_at, id")
            .fetch_all(self.state.db().pool())
            .await
            .expect("audit rows")
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }
}

/// The application on SQLite with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestDatabase::sqlite(), |_| {}).await
}

/// The application on `db`, with `configure` applied to the test configuration (after its
/// port is bound: `http.bind` is not for tests to change).
pub async fn spawn_app_with(db: TestDatabase, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(db, Clock::manual(), configure).await
}

/// The application on `db` and `clock`: a browser or another process outside the test
/// (computing TOTP codes from its own time) needs the system clock.
pub async fn spawn_app_on(
    db: TestDatabase,
    clock: Clock,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = db.config();
    let listener = TcpListener::bind(config.http.bind)
        .await
        .expect("bind a free port");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    // What the server publishes (the issuer, `jwks_uri`) points at the server itself, so a
    // client can discover everything from the issuer as in production; a test may change it.
    config.public_url = url::Url::parse(&address).expect("server URL");
    configure(&mut config);
    let app = Application::build_with_clock(config, clock.clone())
        .await
        .expect("application builds");
    let state = app.state().clone();
    let metrics_address = app.metrics_address();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run(listener, async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        clock,
        metrics_address,
        shutdown: Some(tx),
        server: Some(server),
        _db: db,
    }
}

/// Another instance of `first`'s deployment: the same configuration (database, data folder
/// with its master key, public URL and so the token issuer) on a port of its own, as a load
/// balancer would put several behind one address. `configure` may change it further.
pub async fn spawn_peer(first: &TestApp, configure: impl FnOnce(&mut Config)) -> TestApp {
    let config: Config = first.state.config().clone();
    // The placeholder database is never opened: the configuration is replaced whole.
    spawn_app_with(TestDatabase::sqlite(), move |c| {
        let bind = c.http.bind;
        *c = config;
        c.http.bind = bind;
        configure(c);
    })
    .await
}

/// Waits until `check` holds, checking every 10 ms, for at most `within`; panics naming
/// `what` otherwise. A bound, never a measurement: benchmarks measure.
pub async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Builds the application on a fresh SQLite database with `configure` applied, expecting it to
/// refuse; returns the error with its causes.
pub async fn build_error(configure: impl FnOnce(&mut Config)) -> String {
    let db = TestDatabase::sqlite();
    let mut config = db.config();
    configure(&mut config);
    match Application::build(config).await {
        Ok(_) => panic!("the application started with a configuration it must refuse"),
        Err(e) => format!("{e:#}"),
    }
}

/// The `Authorization` value of HTTP Basic client authentication.
pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// Asserts a problem+json answer and returns its body.
pub async fn problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
    body
}
