//! The Python package `clients/python` against a real Tessera: its pytest suite runs with this
//! server's address, a service account and the shared request table, and must pass whole
//! (the shared table through FastAPI and the ASGI middleware, a revoked session refused within
//! a second, permissions, CSRF, introspection, service tokens, failing closed).

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::interop::{
    Case, Expect, PYTHON_CLIENT_DIR, available, example_cases, python, run_with_stdin,
};

const PASSWORD: &str = "correct horse battery";

/// Whether pytest, FastAPI and httpx are importable beside PyJWT.
fn pytest_available() -> bool {
    available(
        python().args(["-c", "import jwt, cryptography, fastapi, httpx, pytest"]),
        "the Python package's suite",
        "pip install 'PyJWT[crypto]' fastapi httpx pytest",
    )
}

/// The shared table as the suite reads it: each request with the status and body (or the
/// problem code, as the client packages name it) it must get.
pub(crate) fn table(app: &TestApp, cases: &[Case]) -> Value {
    let config = app.state.config();
    let requests: Vec<Value> = cases
        .iter()
        .map(|case| {
            let mut request = json!({
                "name": case.name,
                "method": case.method,
                "path": case.path,
                "headers": case.headers,
            });
            match &case.expect {
                Expect::Ok(status, body) => {
                    request["status"] = json!(status);
                    request["body"] = body.clone();
                }
                Expect::Problem(status, _, code) => {
                    request["status"] = json!(status);
                    request["code"] = json!(code);
                }
            }
            request
        })
        .collect();
    let permissions: Vec<Value> = crate::interop::PERMISSION_RULES
        .iter()
        .map(|(scope, wanted, allowed)| json!([scope, wanted, allowed]))
        .collect();
    json!({
        "issuer": config.issuer(),
        "audience": config.token.audience,
        "requests": requests,
        "permissions": permissions,
    })
}

#[tokio::test]
async fn the_python_package_passes_its_suite_against_a_live_tessera() {
    if !pytest_available() {
        return;
    }
    let app = spawn_app().await;
    // Creates ada@ (role `user`) with PASSWORD.
    let cases = example_cases(&app).await;
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    app.create_user("vic@example.com", PASSWORD, &["viewer"], None)
        .await;
    let (client_id, client_secret) = app
        .new_client(&admin, json!(["tokens:introspect", "flags:read"]))
        .await;
    crate::flags::create_beta_banner(&app).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let table_file = dir.path().join("table.json");
    std::fs::write(&table_file, table(&app, &cases).to_string()).expect("table written");

    let config = app.state.config();
    let mut pytest = python();
    pytest
        .current_dir(PYTHON_CLIENT_DIR)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "--durations=3",
            "tests",
        ])
        .env("TESSERA_TEST_ISSUER", config.issuer())
        .env("TESSERA_TEST_AUDIENCE", &config.token.audience)
        .env("TESSERA_TEST_CLIENT_ID", client_id)
        .env("TESSERA_TEST_CLIENT_SECRET", client_secret)
        .env("TESSERA_TEST_PASSWORD", PASSWORD)
        .env("TESSERA_TEST_TABLE", &table_file);
    let output = run_with_stdin(pytest, String::new()).await;
    println!("{output}");
    assert!(output.contains(" passed"), "{output}");
    assert!(
        !output.contains("skipped"),
        "every test runs against the live server: {output}"
    );
}
