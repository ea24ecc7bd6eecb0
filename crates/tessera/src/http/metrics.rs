//! Prometheus metrics: request count and latency by route template and status, build info,
//! rendered at `GET /metrics`.
//!
//! Every label comes from a closed set: the route template (never the raw path), one of the
//! standard methods (anything else is `other`), the status the server chose. A client can
//! therefore never create series, whatever it sends.
//!
//! Where `/metrics` is served is configured (`[metrics]`): on a separate listener, on the
//! public one behind a bearer token, or, outside production, on the public one for anyone.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq as _;

use super::ApiError;
use crate::config::{Config, Environment};
use crate::state::AppState;

/// Latency buckets in seconds: token checks take microseconds, password hashing tens of
/// milliseconds, so the low end is dense.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder. Installed once, even when several applications run in one
/// process (as in tests); each renders the same registry.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .and_then(crate::telemetry::signals::with_buckets)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        metrics::gauge!(
            "tessera_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
        )
        .set(1.0);
        handle
    })
}

/// Middleware recording each request under its route template (never the raw path, which
/// would let clients create unbounded series).
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    crate::telemetry::signals::observe_answer(route, &response);
    let (count, latency) = series(route, method, response.status());
    count.increment(1);
    latency.record(start.elapsed().as_secs_f64());
    response
}

/// The request counter and latency histogram of one route, method and status.
type Series = (metrics::Counter, metrics::Histogram);

/// Handles already registered, by route template, then method and status. Every key comes
/// from a closed set (see the module documentation), so this stays small; a hit costs no
/// allocation, where registering looks the labels up (and copies them) in the recorder.
fn series(route: &str, method: &'static str, status: StatusCode) -> Series {
    static ROUTES: OnceLock<RwLock<HashMap<Box<str>, Arc<RouteSeries>>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(RwLock::default);
    let known = routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(route)
        .cloned();
    let per_route = known.unwrap_or_else(|| {
        Arc::clone(
            routes
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(route.into())
                .or_default(),
        )
    });
    let key = (method, status.as_u16());
    if let Some((_, found)) = per_route
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
    {
        return found.clone();
    }
    let labels = vec![
        metrics::Label::from_static_parts("method", method),
        metrics::Label::new("route", route.to_owned()),
        metrics::Label::new("status", status.as_str().to_owned()),
    ];
    let made = (
        metrics::counter!("http_requests_total", labels.clone()),
        metrics::histogram!("http_request_duration_seconds", labels),
    );
    let mut entries = per_route.write().unwrap_or_else(|p| p.into_inner());
    // Another request may have registered it meanwhile: the recorder returned the same
    // series, so keep one entry.
    if !entries.iter().any(|(k, _)| *k == key) {
        entries.push((key, made.clone()));
    }
    made
}

/// The series of one route template: (method, status) → handles.
type RouteSeries = RwLock<Vec<((&'static str, u16), Series)>>;

/// The label for `method`: one of the nine standard methods, or `other` for any extension
/// method a client invents.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Whether the public listener serves `/metrics` under `config`: not when a separate
/// listener does, and in production only behind a token.
pub fn served_publicly(config: &Config) -> bool {
    config.metrics.bind.is_none()
        && (config.metrics.token.is_some() || config.environment != Environment::Production)
}

/// `GET /metrics` on the public listener: 404 where it is not served there, 401 without the
/// configured token.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    security((), ("metrics_token" = [])),
    responses((status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain"))
)]
pub async fn public(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !served_publicly(state.config()) {
        return ApiError::not_found().into_response();
    }
    protected(state.config(), &headers)
}

/// `GET /metrics` on the separate metrics listener.
pub async fn private(State(state): State<AppState>, headers: HeaderMap) -> Response {
    protected(state.config(), &headers)
}

/// The metrics, for a caller presenting the configured token (when one is).
fn protected(config: &Config, headers: &HeaderMap) -> Response {
    if let Some(token) = &config.metrics.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
            return ApiError::unauthorized(
                "unauthenticated",
                "the metrics need the scraper's bearer token",
            )
            .into_response();
        }
    }
    render()
}

/// The Prometheus text format.
fn render() -> Response {
    let handle = handle();
    handle.run_upkeep();
    crate::telemetry::process::record();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
