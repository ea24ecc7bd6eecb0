//! Events that can arrive by the thousand under attack (rate-limit refusals, CSP reports) are
//! counted here in memory; the audit log writes them as one event per group and minute, with
//! the count and a few samples (`audit::tally`), so an attack cannot flood the log or its
//! writers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Samples kept per group and window.
const MAX_SAMPLES: usize = 20;

/// Longest sample kept, in characters.
const MAX_SAMPLE_CHARS: usize = 128;

/// Counts of one kind of event (`action`) by group, since the last flush.
pub struct Tally {
    action: &'static str,
    groups: Mutex<HashMap<String, Count>>,
}

/// What one group counted since the last [`Tally::take`].
#[derive(Debug, Default)]
pub struct Count {
    /// Occurrences.
    pub count: u64,
    /// A few distinct samples.
    pub samples: Vec<String>,
}

impl Tally {
    /// A tally written as `action` events.
    pub fn new(action: &'static str) -> Arc<Self> {
        Arc::new(Self {
            action,
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one occurrence in `group`, keeping `sample` if there is room and it is new.
    pub fn note(&self, group: &str, sample: Option<&str>) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: an attacker choosing group names gets one shared bucket past the limit.
        let group = if groups.len() >= 64 && !groups.contains_key(group) {
            "other"
        } else {
            group
        };
        let entry = groups.entry(group.to_owned()).or_default();
        entry.count += 1;
        if let Some(sample) = sample {
            let sample: String = sample.chars().take(MAX_SAMPLE_CHARS).collect();
            if entry.samples.len() < MAX_SAMPLES && !entry.samples.contains(&sample) {
                entry.samples.push(sample);
            }
        }
    }

    /// The action the counts are written as.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// What was counted since the last call, by group; counting starts again from zero.
    pub fn take(&self) -> HashMap<String, Count> {
        std::mem::take(&mut *self.groups.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
