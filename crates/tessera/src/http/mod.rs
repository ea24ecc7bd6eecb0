//! Shared HTTP machinery: the middleware stack every route runs behind, errors, JSON, request
//! ids, security headers and metrics. Capabilities add routes; they never rebuild any of this.

pub mod client;
pub mod conditional;
pub mod csp;
pub mod csrf;
pub mod cursor;
pub mod error;
pub mod etag;
pub mod json;
pub mod methods;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod ratelimit;
pub mod request_id;
pub mod tally;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::Config;
use crate::jobs::Jobs;
pub use error::{ApiError, PROBLEM_JSON};
pub use json::Json;
use request_id::RequestId;

/// Wraps `router` in the full stack, outermost first: request id, sensitive-header marking,
/// tracing, metrics, problem+json for framework errors, security headers, CORS, panic
/// catching, timeout, body limit. The trace exporter, when configured, runs on `jobs`.
pub fn apply_stack<S>(router: Router<S>, config: &Config, jobs: &Jobs) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let security = Arc::new(security_headers(config));
    // Validated with the configuration; nothing unparsable gets this far.
    let proxies = Arc::new(client::Proxies {
        trusted: config
            .http
            .trusted_proxies
            .iter()
            .filter_map(|text| crate::config::Cidr::parse(text).ok())
            .collect(),
        header: config.http.forwarded_header,
    });
    let stack = ServiceBuilder::new()
        .layer(middleware::from_fn(request_id::layer))
        .layer(middleware::from_fn_with_state(proxies, client::layer))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::SET_COOKIE,
            // Half of what opens a stored answer (see `idempotency`): never logged.
            HeaderName::from_static("idempotency-key"),
        ]))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn(metrics::track))
        .option_layer(
            crate::telemetry::traces::Tracer::start(&config.telemetry, jobs).map(|tracer| {
                middleware::from_fn_with_state(tracer, crate::telemetry::traces::layer)
            }),
        )
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(middleware::from_fn_with_state(
            security,
            add_security_headers,
        ))
        .layer(cors(config))
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(config.http.request_timeout_secs),
        ))
        .layer(RequestBodyLimitLayer::new(
            usize::try_from(config.http.body_limit_bytes).unwrap_or(usize::MAX),
        ))
        // The limit above is the one in force; axum's own default would silently cap it at 2 MiB.
        .layer(DefaultBodyLimit::disable());
    router.fallback(error::not_found).layer(stack)
}

/// The span every log line of a request is recorded in. Only the path is logged: query
/// strings may carry single-use tickets.
fn make_span(request: &Request) -> tracing::Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .map(RequestId::as_str)
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Routing misses, body limits, timeouts and the like answer with empty or plain-text bodies;
/// this gives them the same problem+json shape as handler errors, keeping their headers
/// (`Allow`, `Retry-After`, …).
async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let bare = match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    };
    if !bare {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut problem = ApiError::bare(status, error::code_for_status(status)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    problem
}

fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(format_args!("handler panicked: {message}")).into_response()
}

/// Headers every answer gets, and those HTML pages get instead.
struct SecurityHeaders {
    all: Vec<(HeaderName, HeaderValue)>,
    html: Vec<(HeaderName, HeaderValue)>,
}

fn security_headers(config: &Config) -> SecurityHeaders {
    // Validated with the configuration; an unusable policy is left out, never sent broken.
    let policy = |text: &str| HeaderValue::from_str(text).ok();
    let mut html = Vec::new();
    if let Some(value) = policy(&config.http.html_csp) {
        html.push((header::CONTENT_SECURITY_POLICY, value));
    }
    if let Some(value) = config.http.html_csp_report_only.as_deref().and_then(policy) {
        html.push((header::CONTENT_SECURITY_POLICY_REPORT_ONLY, value));
    }
    html.push((
        HeaderName::from_static("reporting-endpoints"),
        HeaderValue::from_static("csp=\"/api/v1/csp-report\""),
    ));
    // The same group in the older Reporting API header, for browsers that read only that
    // one. It wants an absolute URL, so the public URL names it.
    if let Some(value) = report_to(config) {
        html.push((HeaderName::from_static("report-to"), value));
    }
    SecurityHeaders {
        all: api_security_headers(config),
        html,
    }
}

/// `Report-To` naming the `csp` group (the one `report-to csp` directives name) at this
/// server's report endpoint, kept for 126 days as browsers commonly do.
fn report_to(config: &Config) -> Option<HeaderValue> {
    let url = config.public_url.join("/api/v1/csp-report").ok()?;
    let group = serde_json::json!({
        "group": "csp",
        "max_age": 10_886_400,
        "endpoints": [{ "url": url.as_str() }],
    });
    HeaderValue::from_str(&group.to_string()).ok()
}

fn api_security_headers(config: &Config) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // API responses are data, never documents: nothing may load or frame them. Pages that
        // need more (the console) set their own policy, which this does not overwrite.
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
    ];
    if config.public_url.scheme() == "https" {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ));
    }
    headers
}

async fn add_security_headers(
    State(headers): State<Arc<SecurityHeaders>>,
    request: Request,
    next: Next,
) -> Response {
    // An answer to a request that carried credentials is about that caller: no shared cache
    // may keep it, whichever route forgot to say so. Routes that decide (`no-store` on
    // secrets, `max-age` on public keys) keep their own.
    let credentialed = request.headers().contains_key(header::AUTHORIZATION)
        || request.headers().contains_key(header::COOKIE);
    let mut response = next.run(request).await;
    let target = response.headers_mut();
    if credentialed && !target.contains_key(header::CACHE_CONTROL) {
        target.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    let html = target
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
    let page = if html { headers.html.iter() } else { [].iter() };
    // A page's own policy wins over the configured one; the configured one over the API's.
    for (name, value) in page.chain(headers.all.iter()) {
        if !target.contains_key(name) {
            target.insert(name.clone(), value.clone());
        }
    }
    response
}

/// CORS for the configured origins only, always with credentials, never `*`.
fn cors(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .http
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let name = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            header::IF_MATCH,
            name("x-csrf-token"),
            name("x-request-id"),
            name("idempotency-key"),
            name("last-event-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            name("x-request-id"),
            name("x-ratelimit-limit"),
            name("x-ratelimit-remaining"),
            name("x-ratelimit-reset"),
            name("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600))
}

/// A display name of a client or tenant: 1 to 200 characters, none of them hidden (control,
/// format or bidi characters: see [`crate::text`]).
pub fn check_display_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 200 || crate::text::has_hidden(name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "`name` has 1 to 200 characters and no control, format or bidi characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::routing::get;
    use tower::ServiceExt;

    fn app(config: &Config) -> Router {
        let router = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/page",
                get(|| async { axum::response::Html("<p>page</p>") }),
            )
            .route(
                "/panic",
                get(|| async {
                    if true {
                        panic!("boom");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "late"
                }),
            );
        apply_stack(router, config, &Jobs::new())
    }

    async fn call(app: Router, request: Request) -> (Response, serde_json::Value) {
        let response = app.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, 1 << 20).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or_default();
        (Response::from_parts(parts, Body::empty()), json)
    }

    fn get_request(path: &str) -> Request {
        Request::get(path).body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn panics_become_500_problems_with_the_request_id() {
        let (response, body) = call(app(&Config::default()), get_request("/panic")).await;
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(body["code"], "internal_error");
        assert!(
            !body.to_string().contains("boom"),
            "panic text is not shown"
        );
        assert_eq!(
            body["request_id"].as_str(),
            response.headers()["x-request-id"].to_str().ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_time_out_with_a_503_problem() {
        let mut config = Config::default();
        config.http.request_timeout_secs = 2;
        let (response, body) = call(app(&config), get_request("/slow")).await;
        assert_eq!(response.status(), 503);
        assert_eq!(body["code"], "unavailable");
    }

    #[tokio::test]
    async fn method_not_allowed_keeps_the_allow_header() {
        let request = Request::delete("/ok").body(Body::empty()).expect("request");
        let (response, body) = call(app(&Config::default()), request).await;
        assert_eq!(response.status(), 405);
        assert_eq!(body["code"], "method_not_allowed");
        assert!(response.headers().contains_key(header::ALLOW));
    }

    #[tokio::test]
    async fn security_headers_are_set_and_hsts_only_for_https() {
        let (response, _) = call(app(&Config::default()), get_request("/ok")).await;
        let headers = response.headers();
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok_and(|v| v.contains("frame-ancestors 'none'"))
        );
        assert!(!headers.contains_key(header::STRICT_TRANSPORT_SECURITY));

        let config = Config {
            public_url: url::Url::parse("https://auth.example.com").expect("url"),
            ..Config::default()
        };
        let (response, _) = call(app(&config), get_request("/ok")).await;
        assert!(
            response
                .headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY)
        );
    }

    #[tokio::test]
    async fn html_pages_get_the_page_policy_and_api_answers_the_strict_one() {
        let config = Config {
            http: crate::config::HttpConfig {
                html_csp_report_only: Some("default-src 'none'; report-to csp".into()),
                ..Default::default()
            },
            ..Config::default()
        };
        let (page, _) = call(app(&config), get_request("/page")).await;
        let headers = page.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            config.http.html_csp.as_str()
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok_and(|v| v.contains("report-uri /api/v1/csp-report"))
        );
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY_REPORT_ONLY],
            "default-src 'none'; report-to csp"
        );
        assert_eq!(headers["reporting-endpoints"], "csp=\"/api/v1/csp-report\"");
        let report_to: serde_json::Value =
            serde_json::from_slice(headers["report-to"].as_bytes()).expect("Report-To is JSON");
        assert_eq!(report_to["group"], "csp");
        assert_eq!(
            report_to["endpoints"][0]["url"],
            "http://127.0.0.1:8080/api/v1/csp-report"
        );
        let (api, _) = call(app(&config), get_request("/ok")).await;
        assert_eq!(
            api.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert!(
            !api.headers()
                .contains_key(header::CONTENT_SECURITY_POLICY_REPORT_ONLY)
        );
    }

    /// Captures log output for one test (the current-thread runtime keeps the subscriber).
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_log_line_of_a_request_carries_its_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let router = Router::new().route(
            "/work",
            get(|| async {
                tracing::info!("inside the handler");
                ApiError::internal("database exploded")
            }),
        );
        let request = Request::get("/work?ticket=secret-ticket")
            .header("x-request-id", "trace-me-7")
            .body(Body::empty())
            .expect("request");
        let (response, _) = call(
            apply_stack(router, &Config::default(), &Jobs::new()),
            request,
        )
        .await;
        assert_eq!(response.status(), 500);

        let output = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<&str> = output.lines().collect();
        assert!(
            lines.len() >= 3,
            "handler, error and response lines: {output}"
        );
        for line in &lines {
            assert!(
                line.contains("trace-me-7"),
                "line without request id: {line}"
            );
            assert!(
                !line.contains("secret-ticket"),
                "query strings are never logged: {line}"
            );
        }
        assert!(
            output.contains("database exploded"),
            "500 causes are logged"
        );
    }

    #[tokio::test]
    async fn cors_allows_listed_origins_with_credentials_and_no_others() {
        let mut config = Config::default();
        config.http.cors_allowed_origins = vec!["https://app.example.com".into()];
        let preflight = |origin: &str| {
            Request::options("/ok")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .body(Body::empty())
                .expect("request")
        };
        let (ok, _) = call(app(&config), preflight("https://app.example.com")).await;
        let headers = ok.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");

        let (other, _) = call(app(&config), preflight("https://evil.example")).await;
        assert!(
            !other
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
    }
}
