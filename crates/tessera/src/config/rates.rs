//! Rates in the configuration (`rate_limits.*`): `COUNT/PERIOD` or `off`, parsed once.

use std::fmt;
use std::str::FromStr;

use super::RateLimitConfig;

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
    /// OFREP evaluations per caller.
    pub flags_per_caller: Option<Policy>,
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
            flags_per_caller: rate("rate_limits.flags_per_caller", &config.flags_per_caller),
        };
        if problems.is_empty() {
            Ok(policies)
        } else {
            Err(problems)
        }
    }
}
