//! Per-object exponential backoff for failed reconciles: an object's consecutive failures in,
//! the delay before its next try out. Capped, jittered, and reset by a successful reconcile.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// The delay after the `failures`-th consecutive failure (1-based): base·2^(failures-1), capped,
/// then "equal jitter": half of it fixed, the other half scaled by `jitter` ∈ [0, 1], so that
/// objects failing together do not retry in lockstep.
pub fn backoff_delay(failures: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let raw = base.saturating_mul(1u32 << exponent).min(cap);
    let half = raw / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Consecutive failures per object; lives in the controller's context.
#[derive(Debug)]
pub struct Backoffs<K> {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Hash + Eq + Clone> Backoffs<K> {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoffs {
            base,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more failure of `key` and returns how long to wait before retrying it.
    pub fn next_delay(&self, key: &K) -> Duration {
        let failures = {
            let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        backoff_delay(failures, self.base, self.cap, rand::random::<f64>())
    }

    /// A reconcile of `key` succeeded: its next failure starts from `base` again.
    pub fn reset(&self, key: &K) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &K) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap_with_bounded_jitter() {
        let (base, cap) = (Duration::from_millis(500), Duration::from_secs(60));
        // (failures, jitter, expected)
        let cases = [
            (1, 1.0, Duration::from_millis(500)),
            (1, 0.0, Duration::from_millis(250)),
            (2, 1.0, Duration::from_secs(1)),
            (3, 1.0, Duration::from_secs(2)),
            (5, 0.5, Duration::from_secs(6)),
            (8, 1.0, Duration::from_secs(60)),
            (40, 1.0, Duration::from_secs(60)),
            (40, 0.0, Duration::from_secs(30)),
            (0, 1.0, Duration::from_millis(500)),
        ];
        for (failures, jitter, want) in cases {
            assert_eq!(
                backoff_delay(failures, base, cap, jitter),
                want,
                "{failures} {jitter}"
            );
        }
    }

    #[test]
    fn failures_are_counted_per_object_and_reset_by_success() {
        let b = Backoffs::new(Duration::from_secs(1), Duration::from_secs(300));
        let first = b.next_delay(&"a");
        assert!(
            first >= Duration::from_millis(500) && first <= Duration::from_secs(1),
            "{first:?}"
        );
        b.next_delay(&"a");
        let third = b.next_delay(&"a");
        assert!(
            third >= Duration::from_secs(2) && third <= Duration::from_secs(4),
            "{third:?}"
        );
        assert_eq!(b.failures(&"a"), 3);
        assert_eq!(b.failures(&"b"), 0, "another object is not slowed down");
        b.reset(&"a");
        assert_eq!(b.failures(&"a"), 0);
        assert!(b.next_delay(&"a") <= Duration::from_secs(1));
    }
}
