//! The retry delay of every kube-runtime watch this project runs: consecutive failures in, the
//! wait before the next list or watch out. Starts at [`WATCH_BACKOFF_FIRST`], doubles, and is
//! capped at [`WATCH_BACKOFF_MAX`]; a successful event resets it.
//!
//! kube-runtime's `default_backoff()` grows from 800 ms to 30 s and only forgets after two
//! minutes, so a watch that failed a few times while the API server was down relisted 10 to 25 s
//! after it came back. A cap of a few seconds keeps the relist prompt; a watch is one request per
//! attempt, so the cost on an unreachable server is small.

use kube::runtime::utils::Backoff;
use std::time::Duration;

/// The wait after the first failure.
pub const WATCH_BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The wait after the `failures`-th consecutive failure (1-based). Pure.
pub fn watch_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    WATCH_BACKOFF_FIRST
        .saturating_mul(1u32 << exponent)
        .min(WATCH_BACKOFF_MAX)
}

/// The capped backoff for `WatchStreamExt::backoff`.
#[derive(Clone, Debug, Default)]
pub struct WatchBackoff {
    failures: u32,
}

/// `watcher(api, config).backoff(watch_backoff())` instead of `.default_backoff()`.
pub fn watch_backoff() -> WatchBackoff {
    WatchBackoff::default()
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        Some(watch_delay(self.failures))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_doubles_and_stays_under_a_few_seconds() {
        let ms = Duration::from_millis;
        let cases = [
            (1, ms(200)),
            (2, ms(400)),
            (3, ms(800)),
            (4, ms(1600)),
            (5, ms(2000)),
            (40, ms(2000)),
            (u32::MAX, ms(2000)),
        ];
        for (failures, want) in cases {
            assert_eq!(watch_delay(failures), want, "{failures}");
        }
    }

    #[test]
    fn a_success_starts_over() {
        let mut b = watch_backoff();
        let first: Vec<_> = b.by_ref().take(6).collect();
        assert_eq!(first.last(), Some(&WATCH_BACKOFF_MAX));
        b.reset();
        assert_eq!(b.next(), Some(WATCH_BACKOFF_FIRST));
    }
}
