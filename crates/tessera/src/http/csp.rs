//! `POST /api/v1/csp-report`: browsers report Content-Security-Policy violations of Tessera's
//! pages here, in the legacy `application/csp-report` form or the Reporting API's
//! `application/reports+json`. Reports are small (16 KiB at most), rate-limited per client
//! IP, counted by directive in the metrics, and written to the audit log aggregated (one
//! event per directive and minute), so a flood of reports costs nothing lasting.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::ApiError;
use super::client::RequestMeta;
use super::ratelimit::{ip_subject, limited};
use crate::http::openapi::ApiRouter;
use crate::state::AppState;
use utoipa_axum::routes;

/// Largest report accepted.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;

/// CSP directives (Level 3) a violation can name.
const KNOWN_DIRECTIVES: [&str; 24] = [
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "object-src",
    "frame-src",
    "child-src",
    "worker-src",
    "manifest-src",
    "base-uri",
    "form-action",
    "frame-ancestors",
    "navigate-to",
    "sandbox",
    "require-trusted-types-for",
    "trusted-types",
    "upgrade-insecure-requests",
];

/// Most violations read from one Reporting API batch.
const MAX_REPORTS: usize = 32;

/// The report route, with its own body limit.
pub fn router() -> ApiRouter {
    let (schemas, paths, report) = routes!(report);
    ApiRouter::new().routes((
        schemas,
        paths,
        report.layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
    ))
}

/// A report in the legacy `report-uri` form (also accepted as `application/json`).
#[derive(serde::Deserialize, utoipa::ToSchema)]
struct LegacyReport {
    #[serde(rename = "csp-report")]
    #[schema(value_type = Object)]
    report: serde_json::Map<String, Value>,
}

/// One violation, reduced to what is kept: the directive and where the blocked resource was
/// (scheme, host and path; a query string may hold a token and is dropped).
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    directive: String,
    blocked: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/csp-report",
    tag = "meta",
    request_body(content(
        (LegacyReport = "application/csp-report"),
        (Vec<Object> = "application/reports+json"),
    )),
    security(()),
    responses((status = 204, description = "Recorded"))
)]
async fn report(
    State(state): State<AppState>,
    origin: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decision = match state.limiter().policies().csp_report_per_ip {
        Some(policy) => {
            let ip = ip_subject(origin.ip.as_deref());
            Some(
                state
                    .limiter()
                    .check(policy, &format!("csp_report:{ip}"))
                    .await,
            )
        }
        None => None,
    };
    limited(decision, async {
        let violations = parse(&headers, &body)?;
        for violation in &violations {
            metrics::counter!("tessera_csp_reports_total", "directive" => violation.directive.clone())
                .increment(1);
            state
                .csp_reports()
                .note(&violation.directive, Some(&violation.blocked));
        }
        Ok::<_, ApiError>(StatusCode::NO_CONTENT)
    })
    .await
}

fn invalid(detail: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_report", detail)
}

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Violation>, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let legacy = match media.as_str() {
        "application/csp-report" | "application/json" => true,
        "application/reports+json" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/csp-report or application/reports+json",
            ));
        }
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|_| invalid("the report is not JSON"))?;
    let violations: Vec<Violation> = if legacy {
        let LegacyReport { report } =
            serde_json::from_value(value).map_err(|_| invalid("expected {\"csp-report\": {…}}"))?;
        violation(
            &Value::Object(report),
            "effective-directive",
            "violated-directive",
            "blocked-uri",
        )
        .into_iter()
        .collect()
    } else {
        let reports = value
            .as_array()
            .filter(|reports| reports.iter().all(Value::is_object))
            .ok_or_else(|| invalid("expected an array of reports (objects)"))?;
        reports
            .iter()
            .take(MAX_REPORTS)
            .filter(|r| r.get("type").and_then(Value::as_str) == Some("csp-violation"))
            .filter_map(|r| r.get("body"))
            .filter_map(|b| violation(b, "effectiveDirective", "violatedDirective", "blockedURL"))
            .collect()
    };
    // A well-formed report with nothing to count (another report type, a directive that is
    // no name) is accepted and dropped: reports are written by anyone.
    Ok(violations)
}

fn violation(report: &Value, effective: &str, violated: &str, blocked: &str) -> Option<Violation> {
    let text = |key: &str| report.get(key).and_then(Value::as_str);
    let directive = text(effective).or_else(|| text(violated))?;
    // `script-src-elem`, or the first word of an old `violated-directive` with its sources.
    let directive: String = directive
        .split_whitespace()
        .next()?
        .chars()
        .take(40)
        .collect();
    if directive.is_empty()
        || !directive
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
    {
        return None;
    }
    // Reports are written by anyone: a name outside CSP's own becomes `other`, so metric
    // labels and audit groups stay few.
    let directive = if KNOWN_DIRECTIVES.contains(&directive.as_str()) {
        directive
    } else {
        "other".to_owned()
    };
    Some(Violation {
        directive,
        blocked: blocked_sample(text(blocked).unwrap_or("")),
    })
}

/// What is kept of a blocked URL, which anyone can write: scheme, host and path only (a
/// query string or fragment, and credentials before the host, may hold secrets), without
/// hidden characters, at most 200 characters. Keywords (`inline`, `eval`) stay as they are.
fn blocked_sample(blocked: &str) -> String {
    let without_query = blocked.split(['?', '#']).next().unwrap_or("");
    let without_credentials = match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    };
    without_credentials
        .chars()
        .filter(|c| !crate::text::is_hidden(*c))
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_samples_keep_no_credentials_queries_or_hidden_characters() {
        assert_eq!(
            blocked_sample("https://user:secret@cdn.example/x.js?token=abc#f"),
            "https://cdn.example/x.js"
        );
        assert_eq!(
            blocked_sample("https://cdn.example/a\u{202E}b"),
            "https://cdn.example/ab"
        );
        assert_eq!(blocked_sample("inline"), "inline");
        assert_eq!(blocked_sample(&"a".repeat(500)).len(), 200);
    }

    fn headers(media: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::CONTENT_TYPE, media.parse().expect("value"));
        map
    }

    #[test]
    fn both_report_forms_are_read_and_query_strings_dropped() {
        let legacy = br#"{"csp-report": {"document-uri": "https://auth.example/login",
            "violated-directive": "script-src-elem 'self'",
            "blocked-uri": "https://evil.example/x.js?token=secret"}}"#;
        assert_eq!(
            parse(&headers("application/csp-report"), legacy).expect("read"),
            [Violation {
                directive: "script-src-elem".into(),
                blocked: "https://evil.example/x.js".into()
            }]
        );
        let modern = br#"[{"type": "csp-violation", "body": {"effectiveDirective": "img-src",
            "blockedURL": "data"}}, {"type": "deprecation", "body": {}}]"#;
        let read = parse(&headers("application/reports+json"), modern).expect("read");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].directive, "img-src");
    }

    #[test]
    fn well_formed_reports_with_nothing_to_count_are_dropped() {
        for (media, body) in [
            ("application/reports+json", &b"[]"[..]),
            (
                "application/reports+json",
                br#"[{"type": "deprecation", "body": {}}, {}]"#,
            ),
            (
                "application/csp-report",
                br#"{"csp-report": {"violated-directive": "<script>"}}"#,
            ),
        ] {
            assert_eq!(
                parse(&headers(media), body).expect("accepted"),
                [],
                "{body:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_clearly() {
        for (media, body, code) in [
            ("text/plain", &b"{}"[..], "unsupported_media_type"),
            ("application/csp-report", b"not json", "invalid_report"),
            (
                "application/csp-report",
                b"{\"other\": 1}",
                "invalid_report",
            ),
            (
                "application/csp-report",
                b"{\"csp-report\": 1}",
                "invalid_report",
            ),
            ("application/reports+json", b"{}", "invalid_report"),
            ("application/reports+json", b"[null]", "invalid_report"),
        ] {
            let error = parse(&headers(media), body).expect_err("refused");
            assert_eq!(error.code(), code, "{media} {body:?}");
        }
    }
}
