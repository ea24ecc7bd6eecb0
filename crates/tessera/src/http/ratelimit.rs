//! Rate limits and login lockout, counted in process or, with `redis.url`, in Redis so every
//! instance shares them.
//!
//! Limits use GCRA (the generic cell rate algorithm): each key holds one number, the time at
//! which its allowance is full again, so a check is one read-modify-write and a burst of up
//! to the whole count is allowed after a quiet period. The same arithmetic runs in Rust and,
//! for Redis, in one Lua script (atomic, on Redis's clock). When Redis cannot be reached the
//! instance counts on its own (logins keep working), reports itself degraded, and returns to
//! Redis as soon as it answers again.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::future::Future;

use super::ApiError;
use tessera_token::unix_now_ms;

use crate::audit::tally::Tally;
use crate::config::{Config, RateLimitConfig};

/// `COUNT/PERIOD`: at most `count` requests in any `period`, bursts included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Requests allowed per period.
    pub count: u32,
    /// The period, in milliseconds.
    pub period_ms: i64,
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "`{}` is not a rate: expected COUNT/PERIOD such as `10/min`, `5/hour`, \
                 `5/5min` or `600/60s`, or `off`",
                text.escape_debug()
            )
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let (amount, unit) = period.split_at(split);
        let amount: i64 = if amount.is_empty() {
            1
        } else {
            amount.parse().map_err(|_| invalid())?
        };
        let unit_ms = match unit {
            "s" | "sec" | "second" => 1_000,
            "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            "d" | "day" => 86_400_000,
            _ => return Err(invalid()),
        };
        let period_ms = amount.checked_mul(unit_ms).ok_or_else(invalid)?;
        if count == 0 || period_ms == 0 || period_ms > 7 * 86_400_000 {
            return Err(invalid());
        }
        Ok(Self { count, period_ms })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.period_ms / 1_000)
    }
}

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

/// Parses a configured rate: `None` for `off`.
pub fn parse_rate(text: &str) -> Result<Option<Policy>, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some)
}

/// The configured limits, parsed.
#[derive(Debug, Clone, Copy)]
pub struct Policies {
    /// Logins per client IP and account name.
    pub login_per_ip_account: Option<Policy>,
    /// Logins per client IP.
    pub login_per_ip: Option<Policy>,
    /// Registrations per client IP.
    pub register_per_ip: Option<Policy>,
    /// Refreshes per session.
    pub refresh_per_session: Option<Policy>,
    /// Token requests per client.
    pub token_per_client: Option<Policy>,
    /// CSP reports per client IP.
    pub csp_report_per_ip: Option<Policy>,
}

impl Policies {
    /// Every rate of `config`, or the problems with them (key, message).
    pub fn parse(config: &RateLimitConfig) -> Result<Self, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let mut rate = |key: &'static str, text: &str| {
            parse_rate(text).unwrap_or_else(|message| {
                problems.push((key, message));
                None
            })
        };
        let policies = Self {
            login_per_ip_account: rate(
                "rate_limits.login_per_ip_account",
                &config.login_per_ip_account,
            ),
            login_per_ip: rate("rate_limits.login_per_ip", &config.login_per_ip),
            register_per_ip: rate("rate_limits.register_per_ip", &config.register_per_ip),
            refresh_per_session: rate(
                "rate_limits.refresh_per_session",
                &config.refresh_per_session,
            ),
            token_per_client: rate("rate_limits.token_per_client", &config.token_per_client),
            csp_report_per_ip: rate("rate_limits.csp_report_per_ip", &config.csp_report_per_ip),
        };
        if problems.is_empty() {
            Ok(policies)
        } else {
            Err(problems)
        }
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

/// The lockout rule: with `failures` counted and `until` (ms) the earliest next attempt,
/// whether an attempt at `now` may go ahead. One that may is counted as a failure at once
/// (success resets), so parallel attempts never get more guesses than the rule allows.
fn lockout(
    after: u32,
    max_ms: i64,
    failures: u32,
    until: i64,
    now: i64,
) -> Result<(u32, i64), i64> {
    if failures >= after && now < until {
        return Err(until - now);
    }
    let failures = failures.saturating_add(1);
    let until = if failures >= after {
        let doublings = (failures - after).min(30);
        (1_000_i64 << doublings).min(max_ms) + now
    } else {
        0
    };
    Ok((failures, until))
}

/// A key's state: a limit's `tat`, or a lockout's failures and earliest next attempt.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    a: i64,
    b: i64,
    /// When the slot means nothing any more (ms).
    expires: i64,
}

/// Counters kept in this process: a few shards of plain maps, swept as they grow.
#[derive(Default)]
struct Local {
    shards: [Mutex<Shard>; 16],
}

#[derive(Default)]
struct Shard {
    slots: HashMap<String, Slot>,
    /// Size at which expired slots are swept next: doubles while they are all live, so a
    /// full shard is not scanned on every update.
    sweep_at: usize,
}

/// Keys a shard holds before expired ones are first swept.
const SHARD_SWEEP_AT: usize = 8_192;

/// Most keys a shard ever holds (about 50 MB in all); past it, it starts over, logged.
const SHARD_MAX: usize = 65_536;

impl Local {
    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        &self.shards[usize::try_from(hash % 16).unwrap_or(0)]
    }

    /// Runs `update` on the key's slot (zeros when absent or expired) and stores what it
    /// returns, if anything.
    fn update<T>(&self, key: &str, now: i64, update: impl FnOnce(Slot) -> (T, Option<Slot>)) -> T {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if shard.slots.len() >= shard.sweep_at.max(SHARD_SWEEP_AT) {
            shard.slots.retain(|_, slot| slot.expires > now);
            if shard.slots.len() >= SHARD_MAX {
                tracing::warn!("rate-limit counters overflowing; this shard starts over");
                shard.slots.clear();
            }
            shard.sweep_at = (shard.slots.len() * 2).max(SHARD_SWEEP_AT);
        }
        let current = shard
            .slots
            .get(key)
            .copied()
            .filter(|slot| slot.expires > now)
            .unwrap_or_default();
        let (out, store) = update(current);
        if let Some(slot) = store {
            shard.slots.insert(key.to_owned(), slot);
        }
        out
    }

    fn remove(&self, key: &str) {
        self.shard(key)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slots
            .remove(key);
    }
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

/// Lockout in Redis: KEYS[1], ARGV = after, max (ms), keep (ms). Returns allowed, wait (ms),
/// failures.
const LOCKOUT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local after = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'f', 'u')
local failures = tonumber(state[1] or '0')
local untl = tonumber(state[2] or '0')
if failures >= after and now < untl then
  return {0, untl - now, failures}
end
failures = failures + 1
untl = 0
if failures >= after then
  untl = now + math.min(1000 * 2 ^ math.min(failures - after, 30), max)
end
redis.call('HSET', KEYS[1], 'f', failures, 'u', untl)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, 0, failures}
";

/// How long a failed Redis is left alone before it is tried again, in milliseconds.
const REDIS_RETRY_MS: i64 = 5_000;

/// How long lockout state is kept after the last attempt (ms): a day without attempts
/// forgets the failures.
const LOCKOUT_KEEP_MS: i64 = 86_400_000;

/// What the lockout says about one login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead; this is the `n`th consecutive attempt without a success.
    Allowed(u32),
    /// Wait this many seconds.
    Delayed(u64),
}

/// Rate limits and lockout of this instance.
pub struct Limiter {
    policies: Policies,
    lockout_after: u32,
    lockout_max_ms: i64,
    local: Local,
    redis: Option<redis::aio::ConnectionManager>,
    prefix: String,
    /// Whether the last Redis call failed (counting locally meanwhile).
    degraded: AtomicBool,
    /// Unix ms of the last failure, for logging once per outage.
    failed_at: AtomicI64,
    /// Refusals, written to the audit log by group once a minute.
    refused: Arc<Tally>,
}

impl Limiter {
    /// The limiter `config` describes. With Redis configured it connects now; an unreachable
    /// Redis leaves it counting locally (degraded) until Redis answers.
    pub async fn new(config: &Config) -> anyhow::Result<Self> {
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
            local: Local::default(),
            redis,
            prefix: config.redis.key_prefix.clone(),
            degraded: AtomicBool::new(false),
            failed_at: AtomicI64::new(0),
            refused: Tally::new("rate_limit.exceeded"),
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
        let now = unix_now_ms();
        self.local.update(key, now, |slot| {
            let (decision, tat) = gcra(policy, slot.a, now);
            let store = tat.map(|tat| Slot {
                a: tat,
                b: 0,
                expires: tat,
            });
            (decision, store)
        })
    }

    /// Counts a login attempt for `account` (tenant and login name, normalised), whether or
    /// not such an account exists.
    pub async fn attempt(&self, account: &str) -> Attempt {
        if self.lockout_after == 0 {
            return Attempt::Allowed(0);
        }
        if let Some(redis) = self.redis() {
            let mut conn = redis.clone();
            let result: Result<(i64, i64, i64), _> = redis::Script::new(LOCKOUT_SCRIPT)
                .key(self.lockout_key(account))
                .arg(self.lockout_after)
                .arg(self.lockout_max_ms)
                .arg(LOCKOUT_KEEP_MS)
                .invoke_async(&mut conn)
                .await;
            match result {
                Ok((1, _, failures)) => {
                    self.redis_ok();
                    return Attempt::Allowed(u32::try_from(failures).unwrap_or(u32::MAX));
                }
                Ok((_, wait_ms, _)) => {
                    self.redis_ok();
                    return Attempt::Delayed(u64::try_from((wait_ms + 999) / 1_000).unwrap_or(1));
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        let now = unix_now_ms();
        let (after, max) = (self.lockout_after, self.lockout_max_ms);
        self.local.update(&format!("lo:{account}"), now, |slot| {
            let failures = u32::try_from(slot.a).unwrap_or(u32::MAX);
            match lockout(after, max, failures, slot.b, now) {
                Ok((failures, until)) => (
                    Attempt::Allowed(failures),
                    Some(Slot {
                        a: i64::from(failures),
                        b: until,
                        expires: now + LOCKOUT_KEEP_MS,
                    }),
                ),
                Err(wait) => (
                    Attempt::Delayed(u64::try_from((wait + 999) / 1_000).unwrap_or(1)),
                    None,
                ),
            }
        })
    }

    /// Forgets `account`'s failures (a successful login, or an administrator's unlock).
    pub async fn reset(&self, account: &str) {
        self.local.remove(&format!("lo:{account}"));
        if let Some(redis) = self.redis() {
            let mut conn = redis.clone();
            let result: Result<(), _> = redis::cmd("DEL")
                .arg(self.lockout_key(account))
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
        let mut state = (0, 0);
        let now = 1_000_000;
        for n in 1..=3 {
            state = lockout(after, max, state.0, state.1, now).expect("allowed");
            assert_eq!(state.0, n);
        }
        assert_eq!(lockout(after, max, state.0, state.1, now), Err(1_000));
        state = lockout(after, max, state.0, state.1, now + 1_000).expect("after the wait");
        assert_eq!(state.1, now + 1_000 + 2_000);
        state = lockout(after, max, state.0, state.1, now + 3_000).expect("after the wait");
        assert_eq!(state.1 - (now + 3_000), 4_000);
        state = lockout(after, max, state.0, state.1, now + 7_000).expect("after the wait");
        assert_eq!(state.1 - (now + 7_000), 4_000, "capped");
    }

    #[test]
    fn local_counting_is_per_key() {
        let local = Local::default();
        let p = policy("1/min");
        let check = |key: &str| {
            local.update(key, 5_000, |slot| {
                let (d, tat) = gcra(p, slot.a, 5_000);
                (
                    d.allowed,
                    tat.map(|a| Slot {
                        a,
                        b: 0,
                        expires: a,
                    }),
                )
            })
        };
        assert!(check("a"));
        assert!(!check("a"));
        assert!(check("b"));
    }
}
