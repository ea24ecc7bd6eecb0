//! `X-Request-Id`: accepted from the client when well-formed, generated otherwise, echoed on the
//! response, carried in every log line of the request and in every problem body.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The header carrying the request id.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled, as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text (always ASCII).
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// The id of the request this task is serving, if any.
pub fn current_request_id() -> Option<String> {
    CURRENT.try_with(|id| id.as_str().to_owned()).ok()
}

/// Middleware: outermost, so everything below (logs, errors, panics) sees the id.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| is_acceptable(v))
        .cloned()
        .unwrap_or_else(generate);
    let id = RequestId(id);
    request.extensions_mut().insert(id.clone());
    let header = id.0.clone();
    let mut response = CURRENT.scope(id, next.run(request)).await;
    response.headers_mut().insert(X_REQUEST_ID.clone(), header);
    response
}

/// Client ids end up in logs: only short, printable, unambiguous ones are kept, so nobody can
/// forge log lines or flood them.
fn is_acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// A UUIDv7: the time in milliseconds, then 74 bits from a per-thread generator seeded once
/// from the OS. Request ids need uniqueness, not secrecy, and asking the OS for randomness on
/// every request cost a system call each.
fn generate() -> HeaderValue {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(seed());
    }
    let (high, low) = STATE.with(|state| {
        let next = || {
            // wyrand: one multiply per 64 bits, a full-period sequence per seed.
            let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(s);
            let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
            (t >> 64) as u64 ^ t as u64
        };
        (next(), next())
    });
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&high.to_le_bytes());
    random[8..].copy_from_slice(&low.to_le_bytes()[..2]);
    let millis = tessera_token::unix_now_ms().max(0).unsigned_abs();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buffer = uuid::Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut buffer);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// A seed from the OS, different for every thread.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    // Without OS randomness the ids stay unique per thread through the time part.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_version_7_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| generate().to_str().expect("ASCII").to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 7, "{id}");
        }
    }

    #[test]
    fn ids_are_kept_only_when_short_and_plain() {
        assert!(is_acceptable(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(!is_acceptable(&HeaderValue::from_static("")));
        assert!(!is_acceptable(&HeaderValue::from_static("a b")));
        assert!(!is_acceptable(&HeaderValue::from_static("x\"y")));
        let long = "a".repeat(MAX_LEN + 1);
        assert!(!is_acceptable(
            &HeaderValue::from_str(&long).expect("ascii")
        ));
    }

    #[test]
    fn generated_ids_are_uuids() {
        let id = generate();
        assert!(uuid::Uuid::parse_str(id.to_str().expect("ascii")).is_ok());
    }
}
