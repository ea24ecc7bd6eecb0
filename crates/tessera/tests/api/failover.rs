//! Instances as separate processes of the real binary on one PostgreSQL database: one is
//! killed with SIGKILL under write load, the others keep serving, and everything any instance
//! acknowledged before (logins, refreshes, their audit events) is in the database afterwards,
//! with an audit chain that verifies.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::helpers::TestDatabase;

const ADMIN: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// The environment of every instance: one database, one data folder (the master key), limits
/// off so the load is not refused.
fn env(db: &TestDatabase) -> Vec<(&'static str, String)> {
    vec![
        ("TESSERA_DATABASE__URL", db.url.clone()),
        (
            "TESSERA_DATA_DIR",
            db.data_dir().join("data").display().to_string(),
        ),
        ("TESSERA_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("TESSERA_LOG__LEVEL", "warn".to_owned()),
        ("TESSERA_BOOTSTRAP_ADMIN_EMAIL", ADMIN.to_owned()),
        ("TESSERA_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD.to_owned()),
        ("TESSERA_RATE_LIMITS__LOGIN_PER_IP", "off".to_owned()),
        (
            "TESSERA_RATE_LIMITS__LOGIN_PER_IP_ACCOUNT",
            "off".to_owned(),
        ),
        ("TESSERA_RATE_LIMITS__REFRESH_PER_SESSION", "off".to_owned()),
        ("TESSERA_RATE_LIMITS__LOCKOUT_AFTER", "0".to_owned()),
    ]
}

fn tessera(db: &TestDatabase, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TESSERA_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env(db))
        .current_dir(db.data_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts `tessera serve`; returns the process and its base URL once it listens.
async fn serve(db: &TestDatabase) -> (Child, String) {
    let mut child = tessera(db, &["serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tessera serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout line") {
            if let Some(address) = line.trim().strip_prefix("tessera listening on ") {
                return address.to_owned();
            }
        }
        panic!("tessera serve exited before listening");
    })
    .await
    .expect("listening in time");
    // Keep draining stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

/// What the instances acknowledged: session ids of logins, and sessions refreshed.
#[derive(Default)]
struct Acknowledged {
    logins: Vec<String>,
    refreshed: Vec<String>,
    /// Acknowledgements per instance.
    by_instance: BTreeMap<usize, usize>,
}

/// A login then a refresh on `address`; records what was acknowledged.
async fn write_once(
    http: &reqwest::Client,
    address: &str,
    instance: usize,
    seen: &Mutex<Acknowledged>,
) {
    let login = http
        .post(format!("{address}/api/v1/auth/login"))
        .json(&json!({"login": ADMIN, "password": PASSWORD, "delivery": "body"}))
        .send()
        .await;
    let Ok(login) = login else { return };
    if login.status() != 200 {
        return;
    }
    let Ok(body) = login.json::<Value>().await else {
        return;
    };
    let session = body["session_id"].as_str().expect("session id").to_owned();
    seen.lock().await.logins.push(session.clone());
    *seen.lock().await.by_instance.entry(instance).or_default() += 1;
    let refreshed = http
        .post(format!("{address}/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": body["refresh_token"]}))
        .send()
        .await;
    if refreshed.is_ok_and(|r| r.status() == 200) {
        seen.lock().await.refreshed.push(session);
    }
}

#[tokio::test]
async fn killing_an_instance_under_write_load_loses_nothing_it_acknowledged() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    // The first creates the schema, the master key and the admin; the others find them.
    let mut instances = vec![serve(&db).await];
    for _ in 0..2 {
        instances.push(serve(&db).await);
    }
    let addresses: Vec<String> = instances.iter().map(|(_, a)| a.clone()).collect();
    let seen = Arc::new(Mutex::new(Acknowledged::default()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let stop = tokio_util::sync::CancellationToken::new();
    let workers: Vec<_> = addresses
        .iter()
        .enumerate()
        .map(|(instance, address)| {
            let (http, address, seen, stop) = (
                http.clone(),
                address.clone(),
                Arc::clone(&seen),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    write_once(&http, &address, instance, &seen).await;
                }
            })
        })
        .collect();

    let acknowledged = |instance: usize| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock()
                .await
                .by_instance
                .get(&instance)
                .copied()
                .unwrap_or(0)
        }
    };
    crate::helpers::eventually(
        Duration::from_secs(60),
        "the victim acknowledged writes",
        || {
            let count = acknowledged(0);
            async move { count.await >= 3 }
        },
    )
    .await;
    // SIGKILL, mid-load: no graceful anything.
    instances[0].0.start_kill().expect("SIGKILL sent");
    instances[0].0.wait().await.expect("killed");
    let before = [acknowledged(1).await, acknowledged(2).await];
    crate::helpers::eventually(
        Duration::from_secs(60),
        "the survivors keep serving",
        || {
            let (one, two) = (acknowledged(1), acknowledged(2));
            async move { one.await >= before[0] + 3 && two.await >= before[1] + 3 }
        },
    )
    .await;
    stop.cancel();
    for worker in workers {
        worker.await.expect("worker");
    }
    for address in &addresses[1..] {
        let ready = http
            .get(format!("{address}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200, "a survivor is ready");
    }

    let seen = seen.lock().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("database");
    for session in &seen.logins {
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_one(&mut conn)
            .await
            .expect("query");
        assert_eq!(found, 1, "acknowledged login {session} is stored");
    }
    for session in &seen.refreshed {
        let rotations: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1")
                .bind(session)
                .fetch_one(&mut conn)
                .await
                .expect("query");
        assert!(
            rotations >= 2,
            "acknowledged refresh of {session} is stored"
        );
    }
    let logins: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'login.succeeded'")
            .fetch_one(&mut conn)
            .await
            .expect("query");
    assert!(
        logins >= i64::try_from(seen.logins.len()).expect("count"),
        "every acknowledged login has its audit event ({logins} < {})",
        seen.logins.len()
    );
    for (mut child, _) in instances.into_iter().skip(1) {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let verified = tessera(&db, &["audit", "verify"])
        .output()
        .await
        .expect("tessera audit verify runs");
    assert!(
        verified.status.success(),
        "the audit chain verifies: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
