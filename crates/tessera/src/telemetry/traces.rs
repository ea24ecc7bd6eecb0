//! Distributed tracing: with `telemetry.otlp_endpoint` set, every request becomes a server span
//! exported over OTLP/HTTP (JSON encoding) to `{otlp_endpoint}/v1/traces`. A request carrying a
//! W3C `traceparent` continues that trace (its span's parent is the caller's); one whose caller
//! did not sample the trace is not exported.
//!
//! Spans are handed to a background task through a bounded queue and posted in batches; when
//! the collector is slow or down, spans are dropped (and counted in
//! `tessera_trace_spans_dropped_total`), never queued without bound and never in a request's
//! way. The exporter is small on purpose: request spans are what operators correlate across
//! services, and the full OpenTelemetry SDK would add minutes to every build for them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::traceparent::{TraceParent, to_hex};
use crate::config::TelemetryConfig;
use crate::jobs::Jobs;

/// Spans waiting for export at most; beyond, new ones are dropped.
const QUEUE: usize = 4096;
/// Most spans in one export request.
const BATCH: usize = 512;
/// Longest a span waits for its batch.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// OTLP `SPAN_KIND_SERVER`.
const KIND_SERVER: u8 = 2;
/// OTLP `STATUS_CODE_ERROR`.
const STATUS_ERROR: u8 = 2;

/// One finished request span.
#[derive(Debug, Clone)]
struct Span {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    name: String,
    method: &'static str,
    route: Option<String>,
    status: u16,
    start_ns: u128,
    end_ns: u128,
}

/// Where finished spans go; cloned into the middleware.
#[derive(Clone)]
pub struct Tracer {
    spans: mpsc::Sender<Span>,
}

impl Tracer {
    /// A tracer exporting to `config.otlp_endpoint`, or `None` when tracing is off. Starts
    /// the export task on the application's task set (call within the runtime); at shutdown
    /// it sends what is queued, then ends.
    pub fn start(config: &TelemetryConfig, jobs: &Jobs) -> Option<Self> {
        let endpoint = config.otlp_endpoint.as_ref()?;
        let url = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
        let (spans, queue) = mpsc::channel(QUEUE);
        let service = config.service_name.clone();
        jobs.spawn_draining(move |stop| export(url, service, queue, stop));
        Some(Self { spans })
    }
}

/// The middleware: times the request and hands its span to the exporter.
pub async fn layer(State(tracer): State<Tracer>, request: Request, next: Next) -> Response {
    let parent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    if parent.is_some_and(|p| !p.sampled) {
        return next.run(request).await;
    }
    let method = method_name(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let start_ns = now_ns();
    let response = next.run(request).await;
    let (trace_id, parent_id) = match parent {
        Some(p) => (p.trace_id, Some(p.parent_id)),
        None => (random_id(), None),
    };
    let span = Span {
        trace_id,
        span_id: random_id(),
        parent_id,
        name: format!("{method} {}", route.as_deref().unwrap_or("unmatched")),
        method,
        route,
        status: response.status().as_u16(),
        start_ns,
        end_ns: now_ns(),
    };
    if tracer.spans.try_send(span).is_err() {
        metrics::counter!("tessera_trace_spans_dropped_total").increment(1);
    }
    response
}

/// Standard methods by name; anything else is `_OTHER`, as the semantic conventions say.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A random, non-zero id of `N` bytes.
fn random_id<const N: usize>() -> [u8; N] {
    let mut id = [0u8; N];
    while id == [0u8; N] {
        let random = uuid::Uuid::new_v4();
        id.copy_from_slice(&random.as_bytes()[..N]);
    }
    id
}

/// Posts batches until every sender is gone.
async fn export(
    url: String,
    service: String,
    mut queue: mpsc::Receiver<Span>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            first = queue.recv() => first,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else {
            // Shutting down (or every tracer is gone): what is queued goes out in one last
            // batch.
            while batch.len() < BATCH {
                let Ok(span) = queue.try_recv() else { break };
                batch.push(span);
            }
            if !batch.is_empty() {
                send(&http, &url, &service, &batch).await;
            }
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH && !stop.is_cancelled() {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        send(&http, &url, &service, &batch).await;
        batch.clear();
    }
}

/// Sends one batch; a failure is logged and counted, never retried.
async fn send(http: &reqwest::Client, url: &str, service: &str, batch: &[Span]) {
    let body = otlp_json(service, batch);
    let sent = http
        .post(url)
        .timeout(EXPORT_TIMEOUT)
        .json(&body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            tracing::warn!(status = %response.status(), "the OTLP collector refused spans");
            dropped(batch.len());
        }
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "the OTLP collector cannot be reached");
            dropped(batch.len());
        }
    }
}

fn dropped(count: usize) {
    metrics::counter!("tessera_trace_spans_dropped_total").increment(count as u64);
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding (ids as hex, 64-bit integers as
/// strings).
fn otlp_json(service: &str, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans.iter().map(span_json).collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [string_attribute("service.name", service)] },
            "scopeSpans": [{
                "scope": { "name": "tessera", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}

fn span_json(span: &Span) -> Value {
    let mut attributes = vec![
        string_attribute("http.request.method", span.method),
        json!({ "key": "http.response.status_code", "value": { "intValue": span.status.to_string() } }),
    ];
    if let Some(route) = &span.route {
        attributes.push(string_attribute("http.route", route));
    }
    let mut value = json!({
        "traceId": to_hex(&span.trace_id),
        "spanId": to_hex(&span.span_id),
        "name": span.name,
        "kind": KIND_SERVER,
        "startTimeUnixNano": span.start_ns.to_string(),
        "endTimeUnixNano": span.end_ns.to_string(),
        "attributes": attributes,
        "status": { "code": if span.status >= 500 { STATUS_ERROR } else { 0 } },
    });
    if let Some(parent) = span.parent_id {
        value["parentSpanId"] = Value::String(to_hex(&parent));
    }
    value
}

fn string_attribute(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}
