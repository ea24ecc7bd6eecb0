//! OTLP traces: with `telemetry.otlp_endpoint` set, each request is exported as a server span
//! to a collector, continuing the caller's W3C `traceparent`; unsampled parents are not
//! exported and malformed ones start a new trace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use serde_json::Value;

use crate::helpers::{TestDatabase, spawn_app_with};

/// A collector that keeps every span it is sent; returns its URL and the spans.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |Json(body): Json<Value>| {
            let kept = Arc::clone(&kept);
            async move {
                for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                    let service = resource["resource"]["attributes"][0].clone();
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            let mut span = span.clone();
                            span["service"] = service.clone();
                            kept.lock().expect("lock").push(span);
                        }
                    }
                }
                Json(serde_json::json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
    (url, spans)
}

/// The exported span of trace `trace_id`, waiting for the exporter's next batch.
async fn span_of(spans: &Mutex<Vec<Value>>, trace_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s["traceId"] == trace_id)
            .cloned();
        if let Some(span) = found {
            return span;
        }
        assert!(Instant::now() < deadline, "no span of {trace_id} exported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map_or(&Value::Null, |kv| &kv["value"])
}

#[tokio::test]
async fn requests_are_exported_as_spans_continuing_the_callers_trace() {
    let (url, spans) = collector().await;
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.telemetry.otlp_endpoint = Some(url.parse().expect("URL"));
    })
    .await;
    let get = |path: &str, traceparent: &str| {
        app.client
            .get(app.url(path))
            .header("traceparent", traceparent.to_owned())
            .send()
    };
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    get("/healthz", &format!("00-{unsampled}-b7ad6b7169203331-00"))
        .await
        .expect("sent");
    get("/readyz", "00-NOT-A-TRACE-01").await.expect("sent");
    get("/healthz", &format!("00-{sampled}-00f067aa0ba902b7-01"))
        .await
        .expect("sent");

    let span = span_of(&spans, sampled).await;
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(span["name"], "GET /healthz");
    assert_eq!(span["kind"], 2);
    assert_eq!(span["spanId"].as_str().map(str::len), Some(16));
    assert_eq!(attribute(&span, "http.route")["stringValue"], "/healthz");
    assert_eq!(
        attribute(&span, "http.request.method")["stringValue"],
        "GET"
    );
    assert_eq!(
        attribute(&span, "http.response.status_code")["intValue"],
        "200"
    );
    assert_eq!(span["service"]["value"]["stringValue"], "tessera");

    // Spans leave in order: by now the two earlier requests were handled too.
    let exported = spans.lock().expect("lock").clone();
    assert!(
        exported.iter().all(|s| s["traceId"] != unsampled),
        "an unsampled trace is not exported"
    );
    let fresh = exported
        .iter()
        .find(|s| s["name"] == "GET /readyz")
        .expect("the request with a malformed traceparent is traced");
    assert!(fresh.get("parentSpanId").is_none(), "it starts a new trace");
    assert_eq!(fresh["traceId"].as_str().map(str::len), Some(32));
}

#[tokio::test]
async fn spans_still_queued_at_shutdown_are_exported_before_it_ends() {
    let (url, spans) = collector().await;
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.telemetry.otlp_endpoint = Some(url.parse().expect("URL"));
    })
    .await;
    let trace = "5c2a9b1e7d3f40c6a8e1b2c3d4e5f607";
    app.client
        .get(app.url("/healthz"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("sent");
    // The span is queued before the answer leaves; the exporter's batch is not due yet.
    app.stop().await;
    let exported = spans.lock().expect("lock").clone();
    assert!(
        exported.iter().any(|s| s["traceId"] == trace),
        "the queued span went out during shutdown: {exported:?}"
    );
}
