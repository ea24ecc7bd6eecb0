//! Any-language interoperability: PyJWT (`PyJWKClient`) and Node's `jose`
//! (`createRemoteJWKSet`) verify Tessera tokens from the JWKS URL alone, and Tessera's
//! verifier accepts tokens PyJWT signed.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tessera_token::{AccessClaims, Jwks, KeySet, Validation, Verifier, unix_now};

use crate::helpers::{TestApp, spawn_app};
use crate::keys::claims_for;

const PYJWT_CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyjwt_check.py");
/// The npm packages (`npm ci` here) and the Node script.
const INTEROP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// Whether `probe` succeeds, i.e. a third-party tool is installed. Under `CI=true` it must
/// be: interoperability checks are never skipped there.
fn available(probe: &mut Command, what: &str, install: &str) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipped: {install} to run the {what} interoperability tests");
    }
    ok
}

/// Whether PyJWT with its crypto extra is importable.
fn pyjwt_available() -> bool {
    available(
        Command::new("python3").args(["-c", "import jwt, cryptography"]),
        "PyJWT",
        "pip install 'PyJWT[crypto]'",
    )
}

/// Runs `command` with `stdin` as its input, on a blocking thread so the server under test
/// keeps answering; returns its standard output, failing the test with its output when it
/// fails.
async fn run_with_stdin(mut command: Command, stdin: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} starts: {e}"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let output = child.wait_with_output().expect("finishes");
        assert!(
            output.status.success(),
            "{command:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf8")
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// `pyjwt_check.py` with `args`.
fn pyjwt_check(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg(PYJWT_CHECK).args(args);
    command
}

/// `claims` signed with the server's current key.
fn sign(app: &TestApp, claims: &AccessClaims) -> String {
    app.state
        .keys()
        .current()
        .signer
        .sign(claims)
        .expect("signs")
}

#[tokio::test]
async fn pyjwt_verifies_a_tessera_token_using_only_the_jwks() {
    if !pyjwt_available() {
        return;
    }
    let app = spawn_app().await;
    let claims = claims_for(&app, unix_now());
    let token = sign(&app, &claims);
    let config = app.state.config();
    let jwks_url = app.url("/.well-known/jwks.json");
    let verify = pyjwt_check(&[
        "verify",
        &jwks_url,
        &config.issuer(),
        &config.token.audience,
    ]);
    let output = run_with_stdin(verify, token).await;
    let verified: Value = serde_json::from_str(&output).expect("claims JSON");
    assert_eq!(verified["sub"], "user-1");
    assert_eq!(verified["jti"], claims.jti);
    assert_eq!(verified["sid"], "session-1");
}

#[tokio::test]
async fn tessera_accepts_an_eddsa_token_signed_by_pyjwt() {
    if !pyjwt_available() {
        return;
    }
    let app = spawn_app().await;
    let claims = claims_for(&app, unix_now());
    let claims_json = serde_json::to_string(&claims).expect("json");
    let output = run_with_stdin(pyjwt_check(&["sign", "py-key-1"]), claims_json).await;
    let signed: Value = serde_json::from_str(&output).expect("JSON");
    let jwks: Jwks = serde_json::from_value(json!({ "keys": [signed["jwk"]] })).expect("JWKS");
    let config = app.state.config();
    let verifier = Verifier::new(
        KeySet::from_jwks(&jwks),
        Validation::new(config.issuer(), config.token.audience.clone()),
    );
    let token = signed["token"].as_str().expect("token");
    let verified = verifier.verify(token).expect("PyJWT token accepted");
    assert_eq!(verified, claims);

    // The key was in the set because it was given; Tessera's own verifier does not trust it.
    assert!(app.state.keys().current().verifier().verify(token).is_err());
}

/// Whether Node and the `jose` package (`npm ci` in tests/interop) are there.
fn jose_available() -> bool {
    available(
        Command::new("node").current_dir(INTEROP_DIR).args([
            "-e",
            "import('jose').then(() => process.exit(0), () => process.exit(1))",
        ]),
        "jose",
        "run `npm ci` in crates/tessera/tests/interop",
    )
}

#[tokio::test]
async fn jose_verifies_a_token_from_a_real_login_using_the_remote_jwks() {
    if !jose_available() {
        return;
    }
    let app = spawn_app().await;
    app.create_user("ada@example.com", "correct horse battery", &["user"], None)
        .await;
    let tokens = app.login("ada@example.com", "correct horse battery").await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let config = app.state.config();
    let mut check = Command::new("node");
    check.current_dir(INTEROP_DIR).args([
        "jose_check.mjs",
        &app.url("/.well-known/jwks.json"),
        &config.issuer(),
        &config.token.audience,
    ]);
    let output = run_with_stdin(check, token).await;
    let verified: Value = serde_json::from_str(&output).expect("JSON");
    assert_eq!(verified["alg"], "EdDSA");
    assert_eq!(verified["claims"]["sid"], tokens["session_id"]);
}
