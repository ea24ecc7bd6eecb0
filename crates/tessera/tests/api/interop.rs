//! Any-language interoperability: PyJWT (`PyJWKClient`) and Node's `jose`
//! (`createRemoteJWKSet`) verify Tessera tokens from the JWKS URL alone, Tessera's verifier
//! accepts tokens PyJWT signed, and the FastAPI and TypeScript examples in `examples/` admit
//! and refuse requests the way Tessera does. Python's `websockets` and `httpx-sse` use the
//! real-time hub.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera_token::{AccessClaims, Audience, Jwks, KeySet, Validation, Verifier, unix_now};

use crate::helpers::{TestApp, spawn_app};
use crate::keys::claims_for;

const PYJWT_CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyjwt_check.py");
const REALTIME_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/realtime_check.py"
);
/// The npm packages (`npm ci` here) and the scripts these tests run.
pub(crate) const INTEROP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
pub(crate) const EXAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
/// The Python package's sources, put first on `PYTHONPATH` so the tests run this tree's copy.
pub(crate) const PYTHON_CLIENT_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/python");

/// `python3` with the Python package of this tree importable.
pub(crate) fn python() -> Command {
    let mut command = Command::new("python3");
    command.env("PYTHONPATH", format!("{PYTHON_CLIENT_DIR}/src"));
    command.env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// Whether `probe` succeeds, i.e. a third-party tool is installed. Under `CI=true` it must
/// be: interoperability checks are never skipped there.
pub(crate) fn available(probe: &mut Command, what: &str, install: &str) -> bool {
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
pub(crate) async fn run_with_stdin(mut command: Command, stdin: String) -> String {
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

/// Whether FastAPI and httpx (for its `TestClient`) are importable beside PyJWT.
pub(crate) fn fastapi_available() -> bool {
    available(
        python().args(["-c", "import jwt, cryptography, fastapi, httpx"]),
        "FastAPI",
        "pip install 'PyJWT[crypto]' fastapi httpx",
    )
}

/// Whether the TypeScript compiler, Node's type declarations and `jose` are installed in
/// tests/interop.
pub(crate) fn typescript_available() -> bool {
    available(
        Command::new("node").current_dir(INTEROP_DIR).args([
            "-e",
            "for (const p of ['typescript', '@types/node/package.json', 'jose']) require.resolve(p)",
        ]),
        "TypeScript",
        "run `npm ci` in crates/tessera/tests/interop",
    )
}

/// Permission rules every example must apply: the token's scope, the permission asked for,
/// and whether it is allowed.
pub(crate) const PERMISSION_RULES: &[(&str, &str, bool)] = &[
    ("reports:write", "reports:write", true),
    ("openid reports:write", "reports:write", true),
    ("reports:read", "reports:write", false),
    ("", "reports:write", false),
    ("reports:*", "reports:write", true),
    ("*:read", "users:read", true),
    ("*:read", "users:write", false),
    ("*:*", "users:delete", true),
    ("users:read", "users:*", false),
    ("users:*", "users:*", true),
    ("*:read", "*:*", false),
    ("*:*", "*:*", true),
];

/// What an example service must answer.
pub(crate) enum Expect {
    /// Success with exactly this JSON body.
    Ok(u16, Value),
    /// A problem+json refusal with this status, the examples' code, and the code the client
    /// packages answer with (Tessera's verification codes, as `tessera-client` names them).
    Problem(u16, &'static str, &'static str),
}

/// Which codes a service answers with: the copy-and-paste examples' coarse `invalid_token`,
/// or the client packages' precise ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codes {
    Example,
    Package,
}

/// One request to an example service, and what it must answer.
pub(crate) struct Case {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub expect: Expect,
}

impl Case {
    /// `GET /whoami`: any valid token.
    fn whoami(name: &'static str, headers: Vec<(&'static str, String)>, expect: Expect) -> Self {
        Self {
            name,
            method: "GET",
            path: "/whoami".into(),
            headers,
            expect,
        }
    }

    /// `POST /reports`: needs `reports:write`.
    fn report(name: &'static str, headers: Vec<(&'static str, String)>, expect: Expect) -> Self {
        Self {
            method: "POST",
            path: "/reports".into(),
            ..Self::whoami(name, headers, expect)
        }
    }
}

/// Claims the server would put in a token now, changed by `edit`.
fn claims_with(app: &TestApp, edit: impl FnOnce(&mut AccessClaims)) -> AccessClaims {
    let mut claims = claims_for(app, unix_now());
    edit(&mut claims);
    claims
}

/// `token` with its claims swapped for `claims` and its signature kept: a forgery.
fn forged(token: &str, claims: &AccessClaims) -> String {
    let (header, rest) = token.split_once('.').expect("a compact JWS");
    let (_, signature) = rest.split_once('.').expect("a compact JWS");
    let payload = serde_json::to_vec(claims).expect("JSON");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    format!("{header}.{payload}.{signature}")
}

/// The requests every example must answer alike, against a running Tessera: a real login's
/// token, and tokens signed by Tessera's key with one thing changed each.
pub(crate) async fn example_cases(app: &TestApp) -> Vec<Case> {
    let user = app
        .create_user("ada@example.com", "correct horse battery", &["user"], None)
        .await;
    let login = app.login("ada@example.com", "correct horse battery").await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let scoped = |scope: &str| sign(app, &claims_with(app, |c| c.scope = scope.into()));
    let expired = sign(
        app,
        &claims_with(app, |c| {
            c.iat -= 7200;
            c.nbf = Some(c.iat);
            c.exp = c.iat + 3600;
        }),
    );
    let elsewhere = sign(
        app,
        &claims_with(app, |c| c.aud = Audience::one("another-service")),
    );
    let raised = forged(
        &scoped("reports:read"),
        &claims_with(app, |c| c.scope = "*:*".into()),
    );

    let bearer = |token: &str| ("authorization", format!("Bearer {token}"));
    let cookie = |token: &str| ("cookie", format!("theme=dark; access_token={token}"));
    let me = json!({ "sub": user.id, "tid": user.tenant_id, "roles": ["user"] });
    let created = json!({ "created_by": "user-1", "tid": "tenant-1" });
    let invalid = |code| Expect::Problem(401, "invalid_token", code);
    let forbidden = || Expect::Problem(403, "forbidden", "forbidden");
    vec![
        Case::whoami(
            "a Bearer token from a real login",
            vec![bearer(&login)],
            Expect::Ok(200, me.clone()),
        ),
        Case::whoami(
            "the access cookie",
            vec![cookie(&login)],
            Expect::Ok(200, me.clone()),
        ),
        Case::whoami(
            "Bearer, which comes before the cookie",
            vec![bearer(&login), cookie("not-a-token")],
            Expect::Ok(200, me),
        ),
        Case::whoami(
            "no token",
            vec![],
            Expect::Problem(401, "unauthenticated", "unauthenticated"),
        ),
        Case {
            path: format!("/whoami?access_token={login}"),
            ..Case::whoami(
                "a token in the query string only",
                vec![],
                Expect::Problem(401, "unauthenticated", "unauthenticated"),
            )
        },
        Case::whoami(
            "an expired token",
            vec![bearer(&expired)],
            invalid("token_expired"),
        ),
        Case::whoami(
            "a token for another audience",
            vec![bearer(&elsewhere)],
            invalid("wrong_audience"),
        ),
        Case::whoami(
            "a malformed Authorization header beside a valid cookie",
            vec![
                ("authorization", "Basic dXNlcjpwdw==".into()),
                cookie(&login),
            ],
            invalid("invalid_credential"),
        ),
        Case::whoami(
            "the access cookie sent twice",
            vec![(
                "cookie",
                format!("access_token=stale; access_token={login}"),
            )],
            invalid("invalid_credential"),
        ),
        Case::report(
            "a token whose scope was raised after signing",
            vec![bearer(&raised)],
            invalid("bad_signature"),
        ),
        Case::report(
            "a login token, which holds no permission",
            vec![bearer(&login)],
            forbidden(),
        ),
        Case::report(
            "a token holding reports:read and users:*",
            vec![bearer(&scoped("reports:read users:*"))],
            forbidden(),
        ),
        Case::report(
            "a token holding reports:write",
            vec![bearer(&scoped("reports:write"))],
            Expect::Ok(201, created.clone()),
        ),
        Case::report(
            "a token holding *:*",
            vec![bearer(&scoped("*:*"))],
            Expect::Ok(201, created),
        ),
    ]
}

/// What a driver script reads: where Tessera is, the requests and the permission rules.
pub(crate) fn driver_input(app: &TestApp, cases: &[Case]) -> String {
    let config = app.state.config();
    let requests: Vec<Value> = cases
        .iter()
        .map(|c| json!({ "method": c.method, "path": c.path, "headers": c.headers }))
        .collect();
    let permissions: Vec<[&str; 2]> = PERMISSION_RULES
        .iter()
        .map(|(scope, wanted, _)| [*scope, *wanted])
        .collect();
    json!({
        "issuer": config.issuer(),
        "audience": config.token.audience,
        "requests": requests,
        "permissions": permissions,
    })
    .to_string()
}

/// Checks a driver's answers (`{"responses": [...], "permissions": [...]}`) against `cases`
/// and [`PERMISSION_RULES`].
pub(crate) fn assert_answers(example: &str, codes: Codes, cases: &[Case], output: &str) {
    let output: Value = serde_json::from_str(output).expect("driver output JSON");
    let responses = output["responses"].as_array().expect("responses");
    assert_eq!(
        responses.len(),
        cases.len(),
        "{example}: one answer per request"
    );
    for (case, response) in cases.iter().zip(responses) {
        let context = format!("{example}, {}: {response}", case.name);
        match &case.expect {
            Expect::Ok(status, body) => {
                assert_eq!(response["status"], *status, "{context}");
                assert_eq!(response["body"], *body, "{context}");
            }
            Expect::Problem(status, example_code, package_code) => {
                let code = match codes {
                    Codes::Example => example_code,
                    Codes::Package => package_code,
                };
                let headers = &response["headers"];
                let body = &response["body"];
                assert_eq!(response["status"], *status, "{context}");
                assert_eq!(
                    headers["content-type"], "application/problem+json",
                    "{context}"
                );
                assert_eq!(headers["cache-control"], "no-store", "{context}");
                let challenge = match (*status, *code) {
                    (_, "unauthenticated") => "Bearer",
                    (401, _) => "Bearer error=\"invalid_token\"",
                    _ => "Bearer error=\"insufficient_scope\"",
                };
                assert_eq!(headers["www-authenticate"], challenge, "{context}");
                let title = reqwest::StatusCode::from_u16(*status)
                    .expect("status")
                    .canonical_reason();
                assert_eq!(
                    body["type"],
                    format!("urn:tessera:problem:{code}"),
                    "{context}"
                );
                assert_eq!(body["title"].as_str(), title, "{context}");
                assert_eq!(body["status"], *status, "{context}");
                assert_eq!(body["code"], *code, "{context}");
            }
        }
    }
    let permissions = output["permissions"].as_array().expect("permissions");
    assert_eq!(permissions.len(), PERMISSION_RULES.len(), "{example}");
    for ((scope, wanted, allowed), answer) in PERMISSION_RULES.iter().zip(permissions) {
        assert_eq!(
            answer, allowed,
            "{example}: does `{scope}` allow `{wanted}`?"
        );
    }
}

#[tokio::test]
async fn the_fastapi_example_on_the_python_package_admits_and_refuses_requests_as_tessera_does() {
    if !fastapi_available() {
        return;
    }
    let app = spawn_app().await;
    let cases = example_cases(&app).await;
    let mut driver = python();
    driver
        .current_dir(INTEROP_DIR)
        .args(["fastapi_driver.py", &format!("{EXAMPLES_DIR}/fastapi")]);
    let output = run_with_stdin(driver, driver_input(&app, &cases)).await;
    assert_answers("FastAPI", Codes::Package, &cases, &output);
}

/// The TypeScript example copied into a fresh folder the way a user would take it, with the
/// interop packages as its `node_modules`, and compiled by its own strict `tsconfig.json`.
pub(crate) async fn compiled_typescript_example() -> TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    let example = Path::new(EXAMPLES_DIR).join("typescript");
    for entry in std::fs::read_dir(&example).expect("examples/typescript") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copied");
        }
    }
    let node_modules = Path::new(INTEROP_DIR).join("node_modules");
    std::os::unix::fs::symlink(&node_modules, dir.path().join("node_modules")).expect("linked");
    let mut tsc = Command::new("node");
    tsc.current_dir(dir.path())
        .arg(node_modules.join("typescript/bin/tsc"))
        .args(["-p", "."]);
    run_with_stdin(tsc, String::new()).await;
    dir
}

#[tokio::test]
async fn the_typescript_example_compiles_strictly_and_answers_as_tessera_does() {
    if !typescript_available() {
        return;
    }
    let compiled = compiled_typescript_example().await;
    let app = spawn_app().await;
    let cases = example_cases(&app).await;
    let mut driver = Command::new("node");
    driver
        .current_dir(INTEROP_DIR)
        .arg("typescript_driver.mjs")
        .arg(compiled.path().join("dist"));
    let output = run_with_stdin(driver, driver_input(&app, &cases)).await;
    assert_answers("TypeScript", Codes::Example, &cases, &output);
}

#[tokio::test]
async fn python_websockets_and_sse_clients_use_the_hub() {
    if !available(
        Command::new("python3").args(["-c", "import websockets, httpx_sse"]),
        "Python websockets and httpx-sse",
        "pip install websockets httpx-sse",
    ) {
        return;
    }
    let app = spawn_app().await;
    let user = app
        .create_user("py@example.com", "correct horse battery", &["admin"], None)
        .await;
    let token = app.login("py@example.com", "correct horse battery").await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let input = json!({"base": app.address, "token": token, "user_id": user.id}).to_string();
    let mut command = Command::new("python3");
    command.arg(REALTIME_CHECK);
    let report: Value = serde_json::from_str(&run_with_stdin(command, input).await).expect("JSON");
    assert_eq!(report["unauthenticated"], 401, "{report}");
    assert_eq!(report["subscribed"]["type"], "subscribed", "{report}");
    assert_eq!(report["ws_event_matches"], true, "{report}");
    assert_eq!(report["ws_event"], json!({"via": "websockets"}));
    assert_eq!(report["reused_ticket"], 401, "{report}");
    assert_eq!(report["sse_first"], "subscribed");
    assert_eq!(report["sse_event_name"], "interop.note", "{report}");
    assert_eq!(report["sse_id_matches"], true, "{report}");
    assert_eq!(report["sse_event"], json!({"via": "httpx-sse"}));
}
