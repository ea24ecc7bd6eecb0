//! The OpenAPI document: served, complete (every route the real router registers, every
//! problem code the source uses) and carrying the conventions and security schemes.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use tessera::http::openapi::{OAUTH_ERROR_CODES, PROBLEM_CODES};

use crate::helpers::spawn_app;

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "patch", "trace"];

async fn served_document() -> Value {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("the document is JSON")
}

/// Every `(METHOD, path)` the router answers: its paths read from the router itself (its
/// `Debug` form names every registered path), each asked with every method; anything but 405
/// is a route. So a route added by any means is seen.
async fn routed(
    router: axum::Router<tessera::AppState>,
    state: tessera::AppState,
) -> BTreeSet<(String, String)> {
    use tower::ServiceExt as _;
    let text = format!("{router:?}");
    let paths: BTreeSet<String> = text
        .split("RouteId(")
        .skip(1)
        .filter_map(|chunk| chunk.split_once("): \"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split('"').next())
        .filter(|path| !path.contains("__private__axum"))
        .map(str::to_owned)
        .collect();
    let router = router.with_state(state);
    let mut routes = BTreeSet::new();
    for path in paths {
        let concrete: Vec<&str> = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let request = http::Request::builder()
                .method(method)
                .uri(concrete.join("/"))
                .body(axum::body::Body::empty())
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("infallible");
            if response.status() != http::StatusCode::METHOD_NOT_ALLOWED {
                routes.insert((method.to_ascii_lowercase(), path.clone()));
            }
        }
    }
    routes
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| ((*m).to_owned(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_document_and_nothing_else() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("JSON");
    let (router, _) = tessera::app::routes();
    let routed = routed(router, app.state.clone()).await;
    assert!(
        routed.len() > 60,
        "the router reads as {} routes",
        routed.len()
    );
    let documented = documented(&doc);
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(extra.is_empty(), "operations no route serves: {extra:?}");
}

#[tokio::test]
async fn a_route_added_beside_the_document_is_seen() {
    let app = spawn_app().await;
    let (router, _) = tessera::app::routes();
    let router = router.route("/undocumented/{id}", axum::routing::patch(|| async {}));
    let routed = routed(router, app.state.clone()).await;
    assert!(routed.contains(&("patch".to_owned(), "/undocumented/{id}".to_owned())));
    assert!(!routed.contains(&("get".to_owned(), "/undocumented/{id}".to_owned())));
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_every_security_scheme_and_convention() {
    let doc = served_document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("schemes");
    for scheme in ["bearer", "session", "csrf", "client_basic"] {
        assert!(schemes.contains_key(scheme), "{scheme}");
    }
    let create = &doc["paths"]["/api/v1/admin/users"]["post"];
    let names: Vec<&str> = create["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["$ref"].as_str())
        .collect();
    assert!(names.contains(&"#/components/parameters/Idempotency-Key"));
    assert!(create["responses"]["201"]["headers"]["Idempotent-Replayed"].is_object());
    let update = &doc["paths"]["/api/v1/admin/users/{id}"]["patch"];
    assert_eq!(
        update["responses"]["412"]["$ref"],
        "#/components/responses/PreconditionFailed"
    );
    let list = &doc["paths"]["/api/v1/admin/users"]["get"];
    assert!(list["responses"]["200"]["headers"]["Link"].is_object());
    assert!(list["responses"]["200"]["headers"]["ETag"].is_object());
    assert!(list["responses"]["304"].is_object());
    assert!(
        doc["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"].is_object()
    );
    // A channel has one pattern wherever it is named: the publish body and every query.
    let pattern = tessera::realtime::channel::PATTERN;
    assert_eq!(
        doc["components"]["schemas"]["PublishRequest"]["properties"]["channel"]["pattern"],
        pattern
    );
    for path in ["/api/v1/realtime/sse", "/api/v1/realtime/history"] {
        let channel = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "channel")
            .unwrap_or_else(|| panic!("{path}: no channel parameter"));
        assert_eq!(channel["schema"]["pattern"], pattern, "{path}");
    }
}

/// The problem codes in `source`: the code argument of every `ApiError` and `OAuthError`
/// constructor, and of every helper that takes a `code: &'static str` (which then passes it
/// on). A code given as anything but a literal fails, naming the place, so no code escapes.
fn codes_in(file: &Path, source: &str, found: &mut BTreeSet<String>, helpers: &[(String, usize)]) {
    let mut callers: Vec<(String, usize)> = [
        ("ApiError::new", 1),
        ("ApiError::bare", 1),
        ("ApiError::forbidden", 0),
        ("ApiError::unauthorized", 0),
        ("ApiError::unavailable", 0),
        ("OAuthError::new", 1),
    ]
    .iter()
    .map(|(name, at)| ((*name).to_owned(), *at))
    .collect();
    callers.extend(helpers.iter().cloned());
    // The two error types build their own codes with `Self::…`.
    if file.ends_with("http/error.rs") || file.ends_with("oauth/client_auth.rs") {
        callers.extend([("Self::new".to_owned(), 1), ("Self::bare".to_owned(), 1)]);
    }
    for (name, at) in &callers {
        let call = format!("{name}(");
        for (start, _) in source.match_indices(&call) {
            let before = source[..start].chars().last().unwrap_or(' ');
            let method_call = !name.contains("::") && (before == ':' || before == '.');
            if before.is_alphanumeric()
                || before == '_'
                || method_call
                || source[..start].ends_with("fn ")
            {
                continue;
            }
            let args = arguments(&source[start + call.len()..]);
            let arg = args.get(*at).map(|a| a.trim()).unwrap_or_default();
            let literal = |a: &str| {
                let a = a.trim();
                a.strip_prefix('"')
                    .and_then(|a| a.strip_suffix('"'))
                    .map(str::to_owned)
            };
            if let Some(code) = literal(arg) {
                found.insert(code);
            } else if arg.starts_with("if ") {
                // `if … { "a" } else { "b" }`: every branch must be a literal.
                for branch in arg.split('{').skip(1) {
                    let body = branch.split('}').next().unwrap_or_default();
                    let code = literal(body)
                        .unwrap_or_else(|| panic!("{}: branch `{body}`", file.display()));
                    found.insert(code);
                }
            } else if !["code", "error.error", "status"].contains(&arg)
                && !arg.contains("code_for_status(")
            {
                let line = source[..start].lines().count();
                panic!(
                    "{}:{line}: the problem code of `{name}` is `{arg}`, not a literal",
                    file.display()
                );
            }
        }
    }
}

/// The top-level arguments of a call, from just after its `(`.
fn arguments(text: &str) -> Vec<String> {
    let (mut depth, mut args, mut current, mut quoted) = (0, Vec::new(), String::new(), false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted && depth == 0 => break,
            ')' | ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                args.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    args.push(current);
    args
}

/// Helpers that take a code: `fn name(… code: &'static str …)` and the code's position.
fn code_helpers(source: &str) -> Vec<(String, usize)> {
    let mut helpers = Vec::new();
    for (start, _) in source.match_indices("fn ") {
        let rest = &source[start + 3..];
        let Some((name, tail)) = rest.split_once('(') else {
            continue;
        };
        if !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let params = arguments(tail);
        if let Some(at) = params.iter().position(|p| p.trim() == "code: &'static str") {
            helpers.push((name.to_owned(), at));
        }
    }
    helpers
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_problem_code_used_in_the_source_is_in_the_document() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut found = BTreeSet::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("source");
        let helpers = code_helpers(&source);
        codes_in(file, &source, &mut found, &helpers);
    }
    // Framework errors get their code from the status.
    let status_codes =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/error.rs"))
            .expect("error.rs");
    let table = status_codes
        .split("pub fn code_for_status")
        .nth(1)
        .and_then(|t| t.split("\n}\n").next())
        .expect("code_for_status");
    for arm in table.split("=> \"").skip(1) {
        found.insert(arm.split('"').next().expect("code").to_owned());
    }
    assert!(found.len() > 60, "found only {found:?}");
    let listed: BTreeSet<String> = PROBLEM_CODES
        .iter()
        .chain(OAUTH_ERROR_CODES)
        .map(|c| (*c).to_owned())
        .collect();
    let missing: Vec<_> = found.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "codes missing from PROBLEM_CODES: {missing:?}"
    );
}

#[tokio::test]
async fn the_problem_schema_lists_every_code() {
    let doc = served_document().await;
    let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .expect("enum");
    for code in PROBLEM_CODES.iter().chain(OAUTH_ERROR_CODES) {
        assert!(codes.iter().any(|c| c == code), "{code}");
    }
}
