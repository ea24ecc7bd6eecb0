//! Any-language interoperability: PyJWT (`PyJWKClient`) and Node's `jose`
//! (`createRemoteJWKSet`) verify Tessera tokens from the JWKS URL alone, and Tessera's
//! verifier accepts tokens PyJWT signed.

use std::io::Write as _;
use std::process::{Command, Stdio};

use tessera_token::{Jwks, KeySet, Validation, Verifier, unix_now};

use crate::helpers::spawn_app;
use crate::keys::claims_for;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyjwt_check.py");

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

fn python(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf8")
}

#[tokio::test]
async fn pyjwt_verifies_a_tessera_token_using_only_the_jwks() {
    if !pyjwt_available() {
        return;
    }
    let app = spawn_app().await;
    let claims = claims_for(&app, unix_now());
    let token = app
        .state
        .keys()
        .current()
        .signer
        .sign(&claims)
        .expect("signs");
    let config = app.state.config().clone();
    let jwks_url = app.url("/.well-known/jwks.json");
    let output = tokio::task::spawn_blocking(move || {
        python(
            &[
                "verify",
                &jwks_url,
                &config.issuer(),
                &config.token.audience,
            ],
            &token,
        )
    })
    .await
    .expect("joined");
    let verified: serde_json::Value = serde_json::from_str(&output).expect("claims JSON");
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
    let output = tokio::task::spawn_blocking(move || python(&["sign", "py-key-1"], &claims_json))
        .await
        .expect("joined");
    let signed: serde_json::Value = serde_json::from_str(&output).expect("JSON");
    let jwks: Jwks =
        serde_json::from_value(serde_json::json!({ "keys": [signed["jwk"]] })).expect("JWKS");
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

const JOSE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// Whether Node and the `jose` package (`npm ci` in tests/interop) are there.
fn jose_available() -> bool {
    available(
        Command::new("node").current_dir(JOSE_DIR).args([
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
    let config = app.state.config().clone();
    let jwks_url = app.url("/.well-known/jwks.json");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .current_dir(JOSE_DIR)
            .args([
                "jose_check.mjs",
                &jwks_url,
                &config.issuer(),
                &config.token.audience,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(token.as_bytes())
            .expect("write");
        child.wait_with_output().expect("node finishes")
    })
    .await
    .expect("joined");
    assert!(
        output.status.success(),
        "jose refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verified: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(verified["alg"], "EdDSA");
    assert_eq!(verified["claims"]["sid"], tokens["session_id"]);
}
