//! Secret checks running and waiting per lockout key, in this process: few run at once, a
//! bounded number wait, and every place is given back however its request ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Verifications of one key's secrets that may run at once on this instance: enough that a
/// person's two devices never wait on each other, too few for one caller to occupy the
/// password-hashing pool.
pub(super) const IN_FLIGHT_PER_KEY: u32 = 2;

/// Attempts on one key that may wait for a place; beyond them the answer is a refusal that
/// is not counted as a failure.
pub(super) const WAITING_PER_KEY: u32 = 32;

/// Longest an attempt waits for a place.
pub(super) const WAIT_MAX: Duration = Duration::from_secs(30);

/// Attempts running or waiting per key, in this process.
#[derive(Default)]
pub(super) struct Gates {
    keys: Mutex<HashMap<String, Gate>>,
}

#[derive(Default)]
pub(super) struct Gate {
    pub(super) running: u32,
    pub(super) waiting: u32,
    /// Places given back so far: a waiter that read the lockout state before a release
    /// reads it again, since the failure that release may have counted is not in it.
    pub(super) released: u64,
    pub(super) wake: Arc<Notify>,
}

impl Gates {
    pub(super) fn with<T>(&self, key: &str, f: impl FnOnce(&mut Gate) -> T) -> T {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let gate = keys.entry(key.to_owned()).or_default();
        let out = f(gate);
        if gate.running == 0 && gate.waiting == 0 {
            keys.remove(key);
        }
        out
    }
}

/// A place to verify one secret of a key, from [`Limiter::begin_attempt`](super::Limiter::begin_attempt). Say how it went
/// with [`Limiter::failed`](super::Limiter::failed) or [`Limiter::passed`](super::Limiter::passed); dropped without either (the hashing
/// pool was full, the database failed, the client went away) nothing is counted.
pub struct AttemptPlace {
    pub(super) key: String,
    pub(super) gates: Arc<Gates>,
}

impl Drop for AttemptPlace {
    fn drop(&mut self) {
        let wake = self.gates.with(&self.key, |gate| {
            gate.running = gate.running.saturating_sub(1);
            gate.released += 1;
            Arc::clone(&gate.wake)
        });
        wake.notify_waiters();
    }
}

/// An attempt counted as waiting on its key until dropped.
pub(super) struct Waiting<'a> {
    pub(super) gates: &'a Gates,
    pub(super) key: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gates.with(self.key, |gate| {
            gate.waiting = gate.waiting.saturating_sub(1)
        });
    }
}

/// Why an attempt may not verify anything now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptRefused {
    /// The key is locked out: wait this many seconds.
    Locked(u64),
    /// Too many attempts on the key are already running or waiting (not a failure).
    Busy,
}
