//! The time an instance reads for expiry, limits and lockout: the system clock in production,
//! a manual clock in tests, which stands still until the test advances it.
//!
//! One [`Clock`] is built with the application and shared by every service that decides
//! something by time, so a test can move a whole instance forward at once instead of sleeping.
//! Counters kept in Redis run on Redis's own clock (its `TIME`), not this one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Where an instance reads the time; cheap to clone (clones share one source).
#[derive(Clone, Debug)]
pub struct Clock {
    source: Arc<Source>,
}

#[derive(Debug)]
enum Source {
    /// The operating system's wall clock.
    System,
    /// Unix milliseconds that change only when advanced.
    Manual(AtomicI64),
}

impl Clock {
    /// The system's wall clock (production).
    pub fn system() -> Self {
        Self {
            source: Arc::new(Source::System),
        }
    }

    /// A clock standing still at the current wall time until [`advance`](Self::advance)
    /// moves it.
    pub fn manual() -> Self {
        Self::manual_at(tessera_token::unix_now_ms())
    }

    /// A clock standing still at `unix_ms` until advanced.
    pub fn manual_at(unix_ms: i64) -> Self {
        Self {
            source: Arc::new(Source::Manual(AtomicI64::new(unix_ms))),
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &*self.source {
            Source::System => tessera_token::unix_now_ms(),
            Source::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Now, in Unix seconds (rounded down, as the system clock's seconds are).
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1_000)
    }

    /// Moves a manual clock forward by `by`.
    ///
    /// # Panics
    /// On the system clock, which only time moves: a test that advances it is wrong.
    pub fn advance(&self, by: Duration) {
        match &*self.source {
            Source::System => panic!("the system clock cannot be advanced"),
            Source::Manual(ms) => {
                let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
                ms.fetch_add(by, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_clones_share_it() {
        let clock = Clock::manual_at(1_700_000_000_500);
        let shared = clock.clone();
        assert_eq!(clock.now(), 1_700_000_000);
        shared.advance(Duration::from_millis(600));
        assert_eq!(clock.now_ms(), 1_700_000_001_100);
        assert_eq!(clock.now(), 1_700_000_001);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = tessera_token::unix_now();
        let now = Clock::system().now();
        assert!(now >= before && now <= tessera_token::unix_now());
    }

    #[test]
    #[should_panic(expected = "cannot be advanced")]
    fn the_system_clock_cannot_be_advanced() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
