//! The load generator: N connections, each a task with one keep-alive HTTP/1.1 connection and
//! one request in flight (a closed loop), for a bounded time. Each connection runs its own
//! [`Script`], so stateful traffic (a refresh token chain) stays on one connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest wait for one answer; a request still unanswered then counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TCP connection to the loopback server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that failed this many times in one phase stops: the phase is broken anyway.
const MAX_ERRORS_PER_CONNECTION: u64 = 20;
/// Highest latency the histogram records, in microseconds (longer ones are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;

/// One request, without the host: [`run`] adds it.
#[derive(Clone)]
pub struct Call {
    method: Method,
    path: Arc<str>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// `POST path` with a JSON body.
    pub fn post_json(path: &str, body: &serde_json::Value) -> Self {
        Self::post(path, "application/json", body.to_string())
    }

    /// `POST path` with a form body.
    pub fn post_form(path: &str, body: &str) -> Self {
        Self::post(path, "application/x-www-form-urlencoded", body.to_owned())
    }

    fn post(path: &str, content_type: &'static str, body: String) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Self {
            method: Method::POST,
            path: path.into(),
            headers,
            body: Bytes::from(body),
        }
    }

    /// The same call with one more header.
    pub fn with(mut self, name: header::HeaderName, value: &str) -> anyhow::Result<Self> {
        self.headers.insert(name, HeaderValue::from_str(value)?);
        Ok(self)
    }

    /// Its body.
    #[cfg(test)]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    fn request(&self, host: &HeaderValue) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&*self.path)
            .body(Full::new(self.body.clone()))?;
        *request.headers_mut() = self.headers.clone();
        request.headers_mut().insert(header::HOST, host.clone());
        Ok(request)
    }
}

/// What one connection sends, request after request.
pub trait Script: Send {
    /// The next request, or `None` when this connection has nothing left to send (its token
    /// chain broke, say).
    fn next(&mut self) -> Option<Call>;

    /// Sees each answer, to take what the next request needs from it.
    fn answer(&mut self, _status: StatusCode, _headers: &HeaderMap, _body: &Bytes) {}
}

/// Makes the script of connection `n`.
pub type Scripts = Arc<dyn Fn(usize) -> Box<dyn Script> + Send + Sync>;

/// The same request, again and again.
pub struct Repeat(pub Call);

impl Script for Repeat {
    fn next(&mut self) -> Option<Call> {
        Some(self.0.clone())
    }
}

/// Scripts that send the same request on every connection.
pub fn repeat(call: Call) -> Scripts {
    Arc::new(move |_| Box::new(Repeat(call.clone())))
}

/// Scripts that send `calls[n % len]` again and again on connection `n`.
pub fn one_each(calls: Vec<Call>) -> Scripts {
    Arc::new(move |n| Box::new(Repeat(calls[n % calls.len()].clone())))
}

/// What a load run saw.
pub struct Outcome {
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of every answer, whatever its status, in microseconds.
    pub latencies: Histogram<u64>,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection failures and timeouts (requests that got no answer).
    pub errors: u64,
}

impl Outcome {
    /// Nothing seen yet.
    pub fn empty() -> Self {
        Self {
            elapsed: Duration::ZERO,
            latencies: histogram(),
            statuses: BTreeMap::new(),
            errors: 0,
        }
    }

    fn merge(&mut self, other: Self) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latencies.add(&other.latencies);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.errors += other.errors;
    }

    /// Successful (2xx) answers per second.
    pub fn ok_per_sec(&self) -> f64 {
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum();
        ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Answers whose status is not in `expected`.
    pub fn unexpected(&self, expected: &[u16]) -> BTreeMap<u16, u64> {
        self.statuses
            .iter()
            .filter(|(status, _)| !expected.contains(status))
            .map(|(status, count)| (*status, *count))
            .collect()
    }

    /// The latency at `quantile` (0–1), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latencies.value_at_quantile(quantile) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Runs `connections` connections to `addr` for `duration`, each sending what its script
/// gives until the time is up (the request in flight then still completes, bounded by
/// [`REQUEST_TIMEOUT`]).
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    scripts: &Scripts,
) -> Outcome {
    let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header");
    let began = Instant::now();
    let deadline = began + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|n| {
            let script = scripts(n);
            let host = host.clone();
            tokio::spawn(connection(addr, host, deadline, script))
        })
        .collect();
    let mut total = Outcome::empty();
    for task in tasks {
        match task.await {
            Ok(outcome) => total.merge(outcome),
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = began.elapsed();
    total
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await??;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the sender is dropped or the server closes.
    tokio::spawn(conn);
    Ok(sender)
}

async fn connection(
    addr: SocketAddr,
    host: HeaderValue,
    deadline: Instant,
    mut script: Box<dyn Script>,
) -> Outcome {
    let mut outcome = Outcome::empty();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < deadline && outcome.errors < MAX_ERRORS_PER_CONNECTION {
        let Some(call) = script.next() else { break };
        let Ok(request) = call.request(&host) else {
            outcome.errors += 1;
            continue;
        };
        let mut ready = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match connect(addr).await {
                Ok(s) => s,
                Err(_) => {
                    outcome.errors += 1;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        let exchange = async {
            ready.ready().await?;
            let response = ready.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((parts, body))) => {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                outcome
                    .latencies
                    .saturating_record(micros.clamp(1, MAX_LATENCY_US));
                *outcome.statuses.entry(parts.status.as_u16()).or_default() += 1;
                script.answer(parts.status, &parts.headers, &body);
                sender = Some(ready);
            }
            // A failed or timed-out exchange leaves the connection unusable: a new one next.
            _ => outcome.errors += 1,
        }
    }
    outcome
}
