//! Retry policy, in one place: how long to wait before trying again, for
//! the controller's reconciles, the engine's reads and the Docker event
//! streams. Delays grow geometrically to a cap, and are jittered so that
//! many retries that failed together (a gateway outage) do not come back
//! together.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// A geometric backoff with a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The delay after the first failure.
    pub(crate) first: Duration,
    /// Each further failure multiplies the delay by this.
    pub(crate) factor: u32,
    pub(crate) max: Duration,
}

/// A binding's reconcile that failed, or left something undone.
pub(crate) const RECONCILE: Policy = Policy {
    first: Duration::from_secs(2),
    factor: 2,
    max: Duration::from_secs(60),
};

/// A read from an engine that failed on the way (reset, timeout, 5xx).
pub(crate) const ENGINE_READ: Policy = Policy {
    first: Duration::from_millis(200),
    factor: 4,
    max: Duration::from_secs(5),
};

/// A node's event stream that broke: reconnect.
pub(crate) const EVENT_STREAM: Policy = Policy {
    first: Duration::from_millis(250),
    factor: 2,
    max: Duration::from_secs(10),
};

impl Policy {
    /// The delay after `failures` consecutive failures (1 = the first),
    /// before jitter.
    pub(crate) fn base(&self, failures: u32) -> Duration {
        let mut d = self.first;
        for _ in 1..failures {
            if d >= self.max {
                break;
            }
            d = d.saturating_mul(self.factor);
        }
        d.min(self.max)
    }

    /// The delay after `failures` consecutive failures, jittered, never
    /// above the cap.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        jitter(self.base(failures)).min(self.max)
    }
}

/// A backoff that remembers how many times it failed.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: Policy,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(policy: Policy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The next delay before jitter: `first`, then growing to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.base(self.failures)
    }

    /// The next delay, jittered.
    pub(crate) fn next_jittered(&mut self) -> Duration {
        jitter(self.next_delay())
    }
}

/// `d` moved by up to 20 % either way, at random.
pub(crate) fn jitter(d: Duration) -> Duration {
    // Every RandomState is seeded anew; its hash of nothing is a random word.
    let r = RandomState::new().hash_one(());
    let permille = 800 + (r % 401) as u32;
    d * permille / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap() {
        let p = Policy {
            first: Duration::from_millis(250),
            factor: 2,
            max: Duration::from_secs(1),
        };
        let d: Vec<u128> = (1..=5).map(|n| p.base(n).as_millis()).collect();
        assert_eq!(d, [250, 500, 1000, 1000, 1000]);
        assert_eq!(RECONCILE.base(1), Duration::from_secs(2));
        assert_eq!(RECONCILE.base(6), Duration::from_secs(60));
        assert_eq!(RECONCILE.base(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jittered_delays_keep_the_cap() {
        assert!((0..200).all(|_| RECONCILE.delay(10) <= RECONCILE.max));
    }

    #[test]
    fn jitter_stays_within_a_fifth_and_varies() {
        let d = Duration::from_secs(10);
        let seen: std::collections::BTreeSet<Duration> = (0..200).map(|_| jitter(d)).collect();
        assert!(seen.iter().all(|j| *j >= d * 4 / 5 && *j <= d * 6 / 5));
        assert!(
            seen.len() > 50,
            "jitter is random: {} distinct values",
            seen.len()
        );
    }
}
