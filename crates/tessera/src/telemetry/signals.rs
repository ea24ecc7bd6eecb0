//! Operator signals: the counters, gauges and histograms an operator alerts on, each recorded
//! by one named function at the place the event happens, so a metric's name and labels exist
//! once. Every label value comes from a closed set (problem codes and reasons are compile-time
//! strings), so no client can create series.
//!
//! | metric | what |
//! |---|---|
//! | `tessera_logins_total{outcome}` | login answers: `success`, or the problem code (`invalid_credentials`, `login_delayed`, `rate_limited`, `overloaded`…) |
//! | `tessera_lockouts_total{factor}` | accounts that reached the lockout threshold (`password`, `code`) |
//! | `tessera_csrf_refusals_total` | requests refused by the CSRF rule |
//! | `tessera_refresh_reuse_total` | rotated refresh tokens presented again (the session is revoked) |
//! | `tessera_token_verification_failures_total{reason}` | access tokens refused by Tessera's own endpoints, by reason |
//! | `tessera_revocation_streams` | open revocation-feed streams |
//! | `tessera_revocation_feed_lag_seconds` | from a revocation's commit to its delivery on a stream |
//! | `tessera_password_hash_queue_depth`, `tessera_password_hash_wait_seconds` | hashing jobs admitted (running and waiting), and how long each waited for a thread |
//! | `tessera_trace_spans_dropped_total` | request spans not exported (queue full, collector down); see [`crate::telemetry::traces`] |
//! | `process_*` | CPU seconds, resident and virtual memory, open and maximum file descriptors, start time |

use std::time::Duration;

use axum::http::{Response, StatusCode};

/// Every metric Tessera exports, so dashboards and alert rules can be checked against it
/// (histograms also export `_bucket`, `_sum` and `_count`).
pub const METRICS: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds",
    "tessera_build_info",
    "tessera_rate_limited_total",
    "tessera_redis_up",
    "tessera_redis_failures_total",
    "tessera_csp_reports_total",
    "tessera_audit_chain_seq",
    "tessera_logins_total",
    "tessera_lockouts_total",
    "tessera_csrf_refusals_total",
    "tessera_refresh_reuse_total",
    "tessera_token_verification_failures_total",
    "tessera_revocation_streams",
    "tessera_revocation_feed_lag_seconds",
    "tessera_password_hash_queue_depth",
    "tessera_password_hash_queue_capacity",
    "tessera_password_hash_wait_seconds",
    "tessera_trace_spans_dropped_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

/// Buckets of the feed lag: delivery is expected within tens of milliseconds, and a second is
/// the promise to verifiers.
const LAG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the wait for a hashing thread: nothing when idle, seconds when saturated.
const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `builder` with the buckets of the signals' histograms, so they aggregate across instances.
pub fn with_buckets(
    builder: metrics_exporter_prometheus::PrometheusBuilder,
) -> Result<metrics_exporter_prometheus::PrometheusBuilder, metrics_exporter_prometheus::BuildError>
{
    use metrics_exporter_prometheus::Matcher;
    builder
        .set_buckets_for_metric(
            Matcher::Full("tessera_revocation_feed_lag_seconds".into()),
            LAG_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("tessera_password_hash_wait_seconds".into()),
            WAIT_BUCKETS,
        )
}

/// The hashing pool admits at most `capacity` jobs (threads plus queue places).
pub fn hash_queue_capacity(capacity: usize) {
    metrics::gauge!("tessera_password_hash_queue_capacity").set(capacity as f64);
}

/// The problem code of an error answer, left in the response's extensions by `ApiError` for
/// the signals to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemCode(pub &'static str);

/// The login route, whose answers are counted by outcome.
const LOGIN_ROUTE: &str = "/api/v1/auth/login";

/// Looks at every answer once: login outcomes and CSRF refusals are read from it.
pub fn observe_answer<B>(route: &str, response: &Response<B>) {
    let code = response.extensions().get::<ProblemCode>().map(|c| c.0);
    if code == Some("csrf_failed") {
        metrics::counter!("tessera_csrf_refusals_total").increment(1);
    }
    if route == LOGIN_ROUTE {
        let outcome = match (response.status(), code) {
            (status, _) if status.is_success() => "success",
            (_, Some(code)) => code,
            (StatusCode::PAYLOAD_TOO_LARGE, None) => "payload_too_large",
            _ => "other",
        };
        metrics::counter!("tessera_logins_total", "outcome" => outcome).increment(1);
    }
}

/// An account reached the lockout threshold for `factor` (`password` or `code`).
pub fn lockout_started(factor: &'static str) {
    metrics::counter!("tessera_lockouts_total", "factor" => factor).increment(1);
}

/// A rotated refresh token was presented again.
pub fn refresh_reuse() {
    metrics::counter!("tessera_refresh_reuse_total").increment(1);
}

/// An access token was refused by one of Tessera's endpoints, for `reason`.
pub fn verification_failed(reason: &'static str) {
    metrics::counter!("tessera_token_verification_failures_total", "reason" => reason).increment(1);
}

/// One open revocation stream, counted while it lives.
#[must_use = "the stream is counted while the guard lives"]
pub struct StreamGuard(());

impl StreamGuard {
    /// Counts a stream as open until the guard is dropped.
    pub fn open() -> Self {
        metrics::gauge!("tessera_revocation_streams").increment(1.0);
        Self(())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        metrics::gauge!("tessera_revocation_streams").decrement(1.0);
    }
}

/// A revocation written at `created_ms` (Unix milliseconds) was delivered on a stream now.
pub fn revocation_delivered(created_ms: i64, now_ms: i64) {
    let lag = Duration::from_millis(u64::try_from(now_ms - created_ms).unwrap_or(0));
    metrics::histogram!("tessera_revocation_feed_lag_seconds").record(lag.as_secs_f64());
}

/// The password-hashing pool holds `depth` jobs (running and waiting).
pub fn hash_queue_depth(depth: usize) {
    metrics::gauge!("tessera_password_hash_queue_depth").set(depth as f64);
}

/// A hashing job waited `wait` for a thread.
pub fn hash_waited(wait: Duration) {
    metrics::histogram!("tessera_password_hash_wait_seconds").record(wait.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric name (`tessera_…`, `process_…`, `http_…`) a text mentions.
    fn metric_names(text: &str) -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| {
                ["tessera_", "process_", "http_"]
                    .iter()
                    .any(|p| word.starts_with(p))
            })
            .map(|word| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word)
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_dashboard_and_the_alert_rules_name_only_metrics_tessera_exports() {
        let files = [
            (
                "dashboard",
                include_str!("../../../../deploy/grafana/tessera.json"),
            ),
            (
                "alerts",
                include_str!("../../../../deploy/prometheus/tessera-alerts.yml"),
            ),
            (
                "alert tests",
                include_str!("../../../../deploy/prometheus/tessera-alerts.test.yml"),
            ),
        ];
        for (what, text) in files {
            let names = metric_names(text);
            assert!(names.len() > 5, "{what} names metrics");
            for name in names {
                assert!(
                    METRICS.contains(&name.as_str()),
                    "{what} names unknown metric {name}"
                );
            }
        }
        let dashboard = metric_names(files[0].1);
        for wanted in [
            "tessera_logins_total",
            "tessera_lockouts_total",
            "tessera_csrf_refusals_total",
            "tessera_refresh_reuse_total",
            "tessera_token_verification_failures_total",
            "tessera_revocation_feed_lag_seconds",
            "tessera_revocation_streams",
            "tessera_password_hash_queue_depth",
            "tessera_password_hash_wait_seconds",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(
                dashboard.iter().any(|n| n == wanted),
                "the dashboard shows {wanted}"
            );
        }
    }
}
