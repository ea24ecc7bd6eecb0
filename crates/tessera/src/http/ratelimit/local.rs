//! The in-process store behind rate limits and lockout: a few shards of plain maps, swept as
//! they grow, with a rule for what a full one may drop.

use std::collections::HashMap;
use std::sync::Mutex;

/// A key's state: a limit's `tat`, or a lockout's failures and earliest next attempt.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Slot {
    pub(super) a: i64,
    pub(super) b: i64,
    /// When the slot means nothing any more (ms).
    pub(super) expires: i64,
}

/// What a full in-process store may drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overflow {
    /// Rate-limit buckets: the shard starts over (a reset allowance is the only loss).
    StartOver,
    /// Lockout state: the slots with the fewest failures go first, and a slot past the
    /// threshold (`b`, its earliest next attempt, set) is never dropped, so no amount of
    /// traffic on other keys resets a lockout. Such slots cost an attacker `lockout_after`
    /// password checks each and expire a day after their last attempt, so they grow slowly.
    FewestFailuresFirst,
}

/// Counters kept in this process: a few shards of plain maps, swept as they grow.
pub(super) struct Local {
    shards: [Mutex<Shard>; 16],
    /// Most slots a shard holds before it makes room.
    max: usize,
    overflow: Overflow,
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

/// Most keys a shard holds (about 50 MB in all) before it makes room.
pub(super) const SHARD_MAX: usize = 65_536;

impl Local {
    pub(super) fn new(max: usize, overflow: Overflow) -> Self {
        Self {
            shards: Default::default(),
            max: max.max(1),
            overflow,
        }
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        &self.shards[usize::try_from(hash % 16).unwrap_or(0)]
    }

    /// Runs `update` on the key's slot (zeros when absent or expired) and stores what it
    /// returns, if anything.
    pub(super) fn update<T>(
        &self,
        key: &str,
        now: i64,
        update: impl FnOnce(Slot) -> (T, Option<Slot>),
    ) -> T {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let sweep_at = shard.sweep_at.max(SHARD_SWEEP_AT.min(self.max));
        if shard.slots.len() >= sweep_at && !shard.slots.contains_key(key) {
            shard.slots.retain(|_, slot| slot.expires > now);
            if shard.slots.len() >= self.max {
                self.make_room(&mut shard.slots);
            }
            shard.sweep_at = (shard.slots.len() * 2).max(SHARD_SWEEP_AT.min(self.max));
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

    /// Frees space in a full shard of live slots, as `overflow` allows.
    fn make_room(&self, slots: &mut HashMap<String, Slot>) {
        match self.overflow {
            Overflow::StartOver => {
                tracing::warn!("rate-limit counters overflowing; this shard starts over");
                slots.clear();
            }
            Overflow::FewestFailuresFirst => {
                // Down to three quarters, so the next few new keys do not sweep again.
                let target = self.max - self.max / 4;
                let mut level = 1;
                while slots.len() >= target && slots.values().any(|slot| slot.b == 0) {
                    slots.retain(|_, slot| slot.b != 0 || slot.a > level);
                    level += 1;
                }
                if slots.len() >= self.max {
                    tracing::warn!(
                        slots = slots.len(),
                        "lockout counters past their size; every one is a lockout, all kept"
                    );
                }
            }
        }
    }

    /// The key's live slot, if any.
    pub(super) fn get(&self, key: &str, now: i64) -> Option<Slot> {
        self.shard(key)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slots
            .get(key)
            .copied()
            .filter(|slot| slot.expires > now)
    }

    pub(super) fn remove(&self, key: &str) {
        self.shard(key)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slots
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LOCKOUT_KEEP_MS, Policy, gcra, lockout_failure};
    use super::*;

    fn policy(text: &str) -> Policy {
        text.parse().expect("valid rate")
    }

    #[test]
    fn local_counting_is_per_key() {
        let local = Local::new(SHARD_MAX, Overflow::StartOver);
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

    fn fail(local: &Local, key: &str, now: i64) {
        local.update(key, now, |slot| {
            let (a, b) = lockout_failure(3, 60_000, u32::try_from(slot.a).unwrap_or(0), now);
            (
                (),
                Some(Slot {
                    a: i64::from(a),
                    b,
                    expires: now + LOCKOUT_KEEP_MS,
                }),
            )
        });
    }

    #[test]
    fn a_full_lockout_store_drops_the_fewest_failures_and_never_a_lockout() {
        let local = Local::new(8, Overflow::FewestFailuresFirst);
        let now = 1_000_000;
        // One locked key and one with two failures, in every shard.
        for n in 0..64 {
            for _ in 0..3 {
                fail(&local, &format!("locked{n}"), now);
            }
            for _ in 0..2 {
                fail(&local, &format!("twice{n}"), now);
            }
        }
        // Far more keys with one failure each than the store holds.
        for n in 0..10_000 {
            fail(&local, &format!("spray{n}"), now);
        }
        for n in 0..64 {
            let locked = local.get(&format!("locked{n}"), now).expect("lockout kept");
            assert_eq!(locked.a, 3);
            assert!(locked.b > now, "still locked");
        }
        let twice = (0..64)
            .filter(|n| local.get(&format!("twice{n}"), now).is_some())
            .count();
        assert!(twice > 0, "two failures outlast one");
    }

    #[test]
    fn rate_limit_churn_never_touches_lockouts() {
        let buckets = Local::new(4, Overflow::StartOver);
        let lockouts = Local::new(4, Overflow::FewestFailuresFirst);
        let now = 1_000_000;
        for _ in 0..3 {
            fail(&lockouts, "acct:victim", now);
        }
        let p = policy("1/min");
        for n in 0..10_000 {
            buckets.update(
                &format!("login_ip:10.0.{}.{}", n / 256, n % 256),
                now,
                |slot| {
                    let (_, tat) = gcra(p, slot.a, now);
                    (
                        (),
                        tat.map(|a| Slot {
                            a,
                            b: 0,
                            expires: a,
                        }),
                    )
                },
            );
        }
        assert_eq!(lockouts.get("acct:victim", now).map(|s| s.a), Some(3));
    }
}
