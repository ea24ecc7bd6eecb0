//! Rate limits and login lockout, counted in process or, with `redis.url`, in Redis so every
//! instance shares them.
//!
//! Limits use GCRA (the generic cell rate algorithm): each key holds one number, the time at
//! which its allowance is full again, so a check is one read-modify-write and a burst of up
//! to the whole count is allowed after a quiet period. The same arithmetic runs in Rust and,
//! for Redis, in one Lua script (atomic, on Redis's clock). When Redis cannot be reached the
//! instance counts on its own (logins keep working), reports itself degraded, and returns to
//! Redis as soon as it answers again.
//!
//! Lockout counts failures only, after a secret was checked and found wrong. Parallel guesses
//! cannot outrun it because few checks of one key run at once ([`Limiter::begin_attempt`]),
//! and those running count as failures still to come. In process, lockout state is kept apart
//! from rate-limit buckets, and a full store never drops a lockout to make room.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::future::Future;

use super::ApiError;
use tessera_token::unix_now_ms;

use crate::clock::Clock;

use super::tally::Tally;
use crate::config::Config;
pub use crate::config::{Policies, Policy, parse_rate};

mod gates;
mod local;

pub use gates::{AttemptPlace, AttemptRefused};
use gates::{Gates, IN_FLIGHT_PER_KEY, WAIT_MAX, WAITING_PER_KEY, Waiting};
use local::{Local, Overflow, SHARD_MAX, Slot};

/// The subject an address is counted under: IPv4 as is, IPv6 by its /64, which one
/// subscriber usually holds whole.
pub fn ip_subject(ip: Option<&str>) -> String {
    match ip.and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V6(v6)) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}

/// The outcome of a check, and what the response says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The policy's count.
    pub limit: u32,
    /// Requests left now.
    pub remaining: u32,
    /// Epoch seconds when the full allowance is back.
    pub reset: i64,
    /// Seconds to wait when refused.
    pub retry_after: u64,
}

impl Decision {
    /// Adds `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in self.headers() {
            headers.insert(name, value);
        }
    }

    fn headers(&self) -> [(HeaderName, HeaderValue); 3] {
        [
            (
                HeaderName::from_static("x-ratelimit-limit"),
                HeaderValue::from(self.limit),
            ),
            (
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderValue::from(self.remaining),
            ),
            (
                HeaderName::from_static("x-ratelimit-reset"),
                HeaderValue::from(self.reset),
            ),
        ]
    }

    /// The 429 problem for a refused request (the headers are added with [`apply`]).
    ///
    /// [`apply`]: Self::apply
    pub fn refusal(&self) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; retry after the time in Retry-After",
        )
        .retry_after(self.retry_after.max(1))
    }

    /// The stricter of two decisions: a refusal, else the one with less left.
    pub fn stricter(self, other: Decision) -> Decision {
        match (self.allowed, other.allowed) {
            (false, true) => self,
            (true, false) => other,
            _ if other.remaining < self.remaining => other,
            _ => self,
        }
    }
}

/// Answers with `answer` unless `decision` refuses (then 429); either way with the
/// decision's headers, so every response of a limited route carries them.
pub async fn limited<R: IntoResponse>(
    decision: Option<Decision>,
    answer: impl Future<Output = R>,
) -> Response {
    let mut response = match decision {
        Some(d) if !d.allowed => d.refusal().into_response(),
        _ => answer.await.into_response(),
    };
    if let Some(decision) = decision {
        decision.apply(response.headers_mut());
    }
    response
}

/// GCRA: with `tat` (when the allowance is full again, ms; 0 for a new key) at `now`, whether
/// one more request fits, the new `tat` to store if so, and the decision.
fn gcra(policy: Policy, tat: i64, now: i64) -> (Decision, Option<i64>) {
    let interval = (policy.period_ms / i64::from(policy.count)).max(1);
    let base = tat.max(now);
    let next = base + interval;
    let to_secs_up = |ms: i64| (ms + 999).div_euclid(1_000);
    if next - now <= policy.period_ms {
        let remaining = (policy.period_ms - (next - now)) / interval;
        let decision = Decision {
            allowed: true,
            limit: policy.count,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: to_secs_up(next),
            retry_after: 0,
        };
        (decision, Some(next))
    } else {
        let wait = next - policy.period_ms - now;
        let decision = Decision {
            allowed: false,
            limit: policy.count,
            remaining: 0,
            reset: to_secs_up(base),
            retry_after: u64::try_from(to_secs_up(wait)).unwrap_or(1),
        };
        (decision, None)
    }
}

/// The lockout rule for an attempt at `now` on a key with `failures` counted and `until` (ms)
/// the earliest next attempt: `Err(wait)` (ms) while it must wait, else how many of its
/// verifications may run at once. Places still running count as failures in waiting, so
/// parallel guesses never get more tries than the rule allows, while nothing is counted
/// before it has failed (a burst of right passwords never locks an account).
fn lockout_places(after: u32, failures: u32, until: i64, now: i64) -> Result<u32, i64> {
    if after == 0 {
        return Ok(IN_FLIGHT_PER_KEY);
    }
    if failures >= after {
        return if now < until { Err(until - now) } else { Ok(1) };
    }
    Ok((after - failures).min(IN_FLIGHT_PER_KEY))
}

/// One more failure on a key with `failures`: the new count and, from the threshold on, the
/// earliest next attempt (ms), one second doubling per failure up to `max_ms`.
fn lockout_failure(after: u32, max_ms: i64, failures: u32, now: i64) -> (u32, i64) {
    let failures = failures.saturating_add(1);
    let until = if failures >= after {
        let doublings = (failures - after).min(30);
        (1_000_i64 << doublings).min(max_ms) + now
    } else {
        0
    };
    (failures, until)
}

/// GCRA in Redis: KEYS[1], ARGV = count, period (ms). Returns allowed, remaining, reset (ms),
/// retry (ms), on Redis's clock.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local count = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local interval = math.max(math.floor(period / count), 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
local nxt = base + interval
if nxt - now <= period then
  redis.call('SET', KEYS[1], nxt, 'PX', nxt - now)
  return {1, math.floor((period - (nxt - now)) / interval), nxt, 0}
end
return {0, 0, base, nxt - period - now}
";

/// Lockout state in Redis: KEYS[1]. Returns failures and the wait left (ms, on Redis's clock).
const LOCKOUT_READ_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local state = redis.call('HMGET', KEYS[1], 'f', 'u')
local failures = tonumber(state[1] or '0')
local untl = tonumber(state[2] or '0')
return {failures, math.max(untl - now, 0)}
";

/// One failure in Redis: KEYS[1], ARGV = after, max (ms), keep (ms). Returns the failures.
const LOCKOUT_FAIL_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local after = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local failures = tonumber(redis.call('HGET', KEYS[1], 'f') or '0') + 1
local untl = 0
if failures >= after then
  untl = now + math.min(1000 * 2 ^ math.min(failures - after, 30), max)
end
redis.call('HSET', KEYS[1], 'f', failures, 'u', untl)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return failures
";

/// How long a failed Redis is left alone before it is tried again, in milliseconds.
const REDIS_RETRY_MS: i64 = 5_000;

/// How long lockout state is kept after the last attempt (ms): a day without attempts
/// forgets the failures.
const LOCKOUT_KEEP_MS: i64 = 86_400_000;

/// Rate limits and lockout of this instance.
pub struct Limiter {
    policies: Policies,
    lockout_after: u32,
    lockout_max_ms: i64,
    /// Rate-limit buckets kept here (without Redis, or while it is down).
    buckets: Local,
    /// Lockout state kept here, apart from the buckets so their churn never evicts it.
    lockouts: Local,
    /// Verifications running or waiting per key.
    gates: Arc<Gates>,
    redis: Option<redis::aio::ConnectionManager>,
    prefix: String,
    /// Whether the last Redis call failed (counting locally meanwhile).
    degraded: AtomicBool,
    /// Unix ms of the last failure, for logging once per outage. On the wall clock, not
    /// [`Clock`]: how long Redis is left alone is about the network, not a limit.
    failed_at: AtomicI64,
    /// Refusals, written to the audit log by group once a minute.
    refused: Arc<Tally>,
    /// The time counted in process; Redis counts on its own clock.
    clock: Clock,
}

impl Limiter {
    /// The limiter `config` describes, counting in process by `clock`. With Redis configured
    /// it connects now; an unreachable Redis leaves it counting locally (degraded) until
    /// Redis answers.
    pub async fn new(config: &Config, clock: Clock) -> anyhow::Result<Self> {
        let policies = Policies::parse(&config.rate_limits).map_err(|problems| {
            anyhow::anyhow!(
                "{}",
                problems
                    .iter()
                    .map(|(key, message)| format!("{key}: {message}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        // Connected lazily and reconnected by the manager: an instance that starts while Redis
        // is down counts locally until it answers.
        let redis = match &config.redis.url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url.expose())
                    .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?;
                let settings = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_millis(500)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                Some(
                    redis::aio::ConnectionManager::new_lazy_with_config(client, settings)
                        .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?,
                )
            }
        };
        let limiter = Self {
            policies,
            lockout_after: config.rate_limits.lockout_after,
            lockout_max_ms: i64::try_from(config.rate_limits.lockout_max_secs)
                .unwrap_or(86_400)
                .saturating_mul(1_000),
            buckets: Local::new(SHARD_MAX, Overflow::StartOver),
            lockouts: Local::new(SHARD_MAX, Overflow::FewestFailuresFirst),
            gates: Arc::default(),
            redis,
            prefix: config.redis.key_prefix.clone(),
            degraded: AtomicBool::new(false),
            failed_at: AtomicI64::new(0),
            refused: Tally::new("rate_limit.exceeded"),
            clock,
        };
        if limiter.ping().await == Some(false) {
            tracing::warn!("Redis unreachable at start; counting rate limits locally for now");
        }
        Ok(limiter)
    }

    /// The configured policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Whether Redis is configured but not answering (limits are per instance meanwhile).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Redis to use now: none while a recent failure says it is down (checked again every
    /// few seconds), so an outage costs one timeout per interval, not one per request.
    fn redis(&self) -> Option<&redis::aio::ConnectionManager> {
        let redis = self.redis.as_ref()?;
        let recently_failed = self.degraded.load(Ordering::Relaxed)
            && unix_now_ms() - self.failed_at.load(Ordering::Relaxed) < REDIS_RETRY_MS;
        (!recently_failed).then_some(redis)
    }

    /// Counts one request against `policy` for `key` (`group:subject`); refusals are
    /// remembered for the audit log.
    pub async fn check(&self, policy: Policy, key: &str) -> Decision {
        let decision = self.count(policy, key).await;
        if !decision.allowed {
            self.note_refusal(key);
        }
        decision
    }

    fn note_refusal(&self, key: &str) {
        let (group, subject) = key.split_once(':').unwrap_or((key, ""));
        metrics::counter!("tessera_rate_limited_total", "group" => group.to_owned()).increment(1);
        // Login names are what people type, sometimes a password: never kept.
        let sample = (group != "login_account").then_some(subject);
        self.refused.note(group, sample);
    }

    /// The refusals not yet written to the audit log.
    pub fn refusals(&self) -> &Arc<Tally> {
        &self.refused
    }

    async fn count(&self, policy: Policy, key: &str) -> Decision {
        if let Some(redis) = self.redis() {
            let mut conn = redis.clone();
            let result: Result<(i64, i64, i64, i64), _> = redis::Script::new(GCRA_SCRIPT)
                .key(format!("{}rl:{key}", self.prefix))
                .arg(policy.count)
                .arg(policy.period_ms)
                .invoke_async(&mut conn)
                .await;
            match result {
                Ok((allowed, remaining, reset_ms, retry_ms)) => {
                    self.redis_ok();
                    return Decision {
                        allowed: allowed == 1,
                        limit: policy.count,
                        remaining: u32::try_from(remaining).unwrap_or(0),
                        reset: (reset_ms + 999).div_euclid(1_000),
                        retry_after: u64::try_from((retry_ms + 999) / 1_000).unwrap_or(1),
                    };
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        let now = self.clock.now_ms();
        self.buckets.update(key, now, |slot| {
            let (decision, tat) = gcra(policy, slot.a, now);
            let store = tat.map(|tat| Slot {
                a: tat,
                b: 0,
                expires: tat,
            });
            (decision, store)
        })
    }

    /// A place to verify one secret under the lockout `key` (an account and factor, or a
    /// name that resolves to nothing): refused while the key is locked out, waits while as
    /// many verifications run as the lockout can still allow failures (at most
    /// `IN_FLIGHT_PER_KEY`), refused as busy when too many already wait. Nothing is counted
    /// here: only [`failed`](Self::failed) counts.
    pub async fn begin_attempt(&self, key: &str) -> Result<AttemptPlace, AttemptRefused> {
        let joined = self.gates.with(key, |gate| {
            if gate.waiting >= WAITING_PER_KEY {
                return None;
            }
            gate.waiting += 1;
            Some(Arc::clone(&gate.wake))
        });
        let Some(wake) = joined else {
            self.refused.note("attempts_busy", None);
            return Err(AttemptRefused::Busy);
        };
        // Leaves the waiting count however this ends, a client going away included.
        let _waiting = Waiting {
            gates: &self.gates,
            key,
        };
        let deadline = tokio::time::Instant::now() + WAIT_MAX;
        let outcome = loop {
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let seen = self.gates.with(key, |gate| gate.released);
            let (failures, wait_ms) = self.lockout_state(key).await;
            let now = self.clock.now_ms();
            let places = lockout_places(self.lockout_after, failures, now + wait_ms, now);
            let admitted = self.gates.with(key, |gate| {
                if gate.released != seen {
                    return None;
                }
                match places {
                    Err(wait) => Some(Err(AttemptRefused::Locked(
                        u64::try_from((wait + 999) / 1_000).unwrap_or(1),
                    ))),
                    Ok(places) if gate.running < places => {
                        gate.running += 1;
                        Some(Ok(()))
                    }
                    Ok(_) => None,
                }
            });
            match admitted {
                Some(outcome) => break outcome,
                // A place was given back meanwhile: read the state again at once.
                None if self.gates.with(key, |gate| gate.released) != seen => {}
                None => {
                    if tokio::time::timeout_at(deadline, woken).await.is_err() {
                        break Err(AttemptRefused::Busy);
                    }
                }
            }
        };
        match outcome {
            Ok(()) => Ok(AttemptPlace {
                key: key.to_owned(),
                gates: Arc::clone(&self.gates),
            }),
            Err(refused) => {
                let group = match refused {
                    AttemptRefused::Locked(_) => "login_lockout",
                    AttemptRefused::Busy => "attempts_busy",
                };
                self.refused.note(group, None);
                Err(refused)
            }
        }
    }

    /// Counts a failed verification on its key; returns the failures in a row, so the
    /// caller can tell the one that started a lockout.
    pub async fn failed(&self, place: AttemptPlace) -> u32 {
        if self.lockout_after == 0 {
            return 0;
        }
        let account = place.key.as_str();
        if let Some(redis) = self.redis() {
            let mut conn = redis.clone();
            let result: Result<i64, _> = redis::Script::new(LOCKOUT_FAIL_SCRIPT)
                .key(self.lockout_key(account))
                .arg(self.lockout_after)
                .arg(self.lockout_max_ms)
                .arg(LOCKOUT_KEEP_MS)
                .invoke_async(&mut conn)
                .await;
            match result {
                Ok(failures) => {
                    self.redis_ok();
                    return u32::try_from(failures).unwrap_or(u32::MAX);
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        let now = self.clock.now_ms();
        let (after, max) = (self.lockout_after, self.lockout_max_ms);
        self.lockouts.update(account, now, |slot| {
            let failures = u32::try_from(slot.a).unwrap_or(u32::MAX);
            let (failures, until) = lockout_failure(after, max, failures, now);
            let slot = Slot {
                a: i64::from(failures),
                b: until,
                expires: now + LOCKOUT_KEEP_MS,
            };
            (failures, Some(slot))
        })
    }

    /// A verification that succeeded: its key's failures are forgotten.
    pub async fn passed(&self, place: AttemptPlace) {
        self.reset(&place.key).await;
    }

    /// Failures counted on `key` and the wait left before its next attempt (ms).
    async fn lockout_state(&self, key: &str) -> (u32, i64) {
        if self.lockout_after == 0 {
            return (0, 0);
        }
        if let Some(redis) = self.redis() {
            let mut conn = redis.clone();
            let result: Result<(i64, i64), _> = redis::Script::new(LOCKOUT_READ_SCRIPT)
                .key(self.lockout_key(key))
                .invoke_async(&mut conn)
                .await;
            match result {
                Ok((failures, wait_ms)) => {
                    self.redis_ok();
                    return (u32::try_from(failures).unwrap_or(u32::MAX), wait_ms);
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        let now = self.clock.now_ms();
        self.lockouts.get(key, now).map_or((0, 0), |slot| {
            (
                u32::try_from(slot.a).unwrap_or(u32::MAX),
                (slot.b - now).max(0),
            )
        })
    }

    /// Forgets the failures of the lockout `key` (a success, or an administrator's unlock).
    pub async fn reset(&self, key: &str) {
        self.lockouts.remove(key);
        if let Some(redis) = self.redis() {
            let mut conn = redis.clone();
            let result: Result<(), _> = redis::cmd("DEL")
                .arg(self.lockout_key(key))
                .query_async(&mut conn)
                .await;
            match result {
                Ok(()) => self.redis_ok(),
                Err(e) => self.redis_failed(&e),
            }
        }
    }

    /// Whether Redis answers now (for readiness and `tessera check`); `None` without Redis.
    pub async fn ping(&self) -> Option<bool> {
        let redis = self.redis.as_ref()?;
        let mut conn = redis.clone();
        match redis::cmd("PING").query_async::<String>(&mut conn).await {
            Ok(_) => {
                self.redis_ok();
                Some(true)
            }
            Err(e) => {
                self.redis_failed(&e);
                Some(false)
            }
        }
    }

    fn lockout_key(&self, account: &str) -> String {
        format!("{}lo:{account}", self.prefix)
    }

    fn redis_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again; rate limits are shared again");
            metrics::gauge!("tessera_redis_up").set(1.0);
        }
    }

    fn redis_failed(&self, error: &redis::RedisError) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %error, "Redis failed; counting rate limits locally");
            metrics::gauge!("tessera_redis_up").set(0.0);
        }
        self.failed_at.store(unix_now_ms(), Ordering::Relaxed);
        metrics::counter!("tessera_redis_failures_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        text.parse().expect("valid rate")
    }

    #[test]
    fn rates_parse_and_bad_ones_are_named() {
        assert_eq!(
            policy("10/min"),
            Policy {
                count: 10,
                period_ms: 60_000
            }
        );
        assert_eq!(policy("5/hour").period_ms, 3_600_000);
        assert_eq!(policy("5/5min").period_ms, 300_000);
        assert_eq!(policy(" 600 / 60s ").count, 600);
        assert_eq!(parse_rate("off"), Ok(None));
        for bad in [
            "",
            "10",
            "0/min",
            "10/",
            "10/fortnight",
            "x/min",
            "10/0s",
            "1/999d",
        ] {
            let message = parse_rate(bad).expect_err(bad);
            assert!(message.contains("COUNT/PERIOD"), "{message}");
        }
    }

    #[test]
    fn gcra_allows_the_count_then_refuses_until_the_interval_passes() {
        let p = policy("3/3s");
        let (mut tat, now) = (0, 1_000_000);
        for remaining in [2, 1, 0] {
            let (decision, next) = gcra(p, tat, now);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
            tat = next.expect("stored");
        }
        let (refused, next) = gcra(p, tat, now);
        assert!(!refused.allowed && next.is_none());
        assert_eq!(refused.retry_after, 1);
        assert_eq!(refused.reset, (now + 3_000) / 1_000);
        // One interval later, one more fits.
        let (later, _) = gcra(p, tat, now + 1_000);
        assert!(later.allowed);
        assert_eq!(later.remaining, 0);
        // After the whole period, the full allowance is back.
        let (fresh, _) = gcra(p, tat, now + 3_000);
        assert_eq!(fresh.remaining, 2);
    }

    #[test]
    fn lockout_allows_the_threshold_then_waits_doubling_up_to_the_cap() {
        let (after, max) = (3, 4_000);
        let now = 1_000_000;
        // Below the threshold, places running count as failures still to come.
        assert_eq!(lockout_places(after, 0, 0, now), Ok(2));
        assert_eq!(lockout_places(after, 2, 0, now), Ok(1));
        let mut state = (0, 0);
        for n in 1..=3 {
            state = lockout_failure(after, max, state.0, now);
            assert_eq!(state.0, n);
        }
        assert_eq!(lockout_places(after, state.0, state.1, now), Err(1_000));
        assert_eq!(lockout_places(after, state.0, state.1, now + 1_000), Ok(1));
        state = lockout_failure(after, max, state.0, now + 1_000);
        assert_eq!(state.1, now + 1_000 + 2_000);
        state = lockout_failure(after, max, state.0, now + 3_000);
        assert_eq!(state.1 - (now + 3_000), 4_000);
        state = lockout_failure(after, max, state.0, now + 7_000);
        assert_eq!(state.1 - (now + 7_000), 4_000, "capped");
        assert_eq!(lockout_places(0, 99, 0, now), Ok(2), "lockout off");
    }

    async fn limiter(after: u32) -> Limiter {
        let mut config = Config::default();
        config.rate_limits.lockout_after = after;
        Limiter::new(&config, Clock::manual())
            .await
            .expect("limiter")
    }

    #[tokio::test]
    async fn failures_lock_a_key_and_a_success_forgets_them() {
        let limiter = limiter(3).await;
        for n in 1..=3 {
            let place = limiter.begin_attempt("k").await.expect("a place");
            assert_eq!(limiter.failed(place).await, n);
        }
        assert!(matches!(
            limiter.begin_attempt("k").await,
            Err(AttemptRefused::Locked(1))
        ));
        let other = limiter
            .begin_attempt("other")
            .await
            .expect("other keys go on");
        limiter.passed(other).await;
        limiter.reset("k").await;
        let place = limiter.begin_attempt("k").await.expect("unlocked");
        drop(place);
        assert_eq!(
            limiter.lockout_state("k").await,
            (0, 0),
            "a drop counts nothing"
        );
    }
}
