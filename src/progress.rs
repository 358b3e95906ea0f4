//! Progress lines for long work (a first clone, a first sync of thousands of TaskRuns): quiet
//! for work that ends within the first interval, then one line per interval, then one line
//! at the end, so a person watching the log knows it is not stuck.

use std::time::{Duration, Instant};

/// How often a line is logged, and how long work runs before the first one.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// When to log: pure apart from the clock it is given.
#[derive(Debug)]
pub struct Throttle {
    next: Instant,
    logged: bool,
}

impl Throttle {
    pub fn starting_at(now: Instant) -> Self {
        Self {
            next: now + PROGRESS_INTERVAL,
            logged: false,
        }
    }

    /// Whether a line is due at `now` (and, if so, the next one is an interval away).
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + PROGRESS_INTERVAL;
        self.logged = true;
        true
    }

    /// Whether any line was logged: then the end deserves one too.
    pub fn logged(&self) -> bool {
        self.logged
    }
}

/// `12,345` for counts in progress lines.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `3 of 10 (30 %)`.
pub fn fraction(done: usize, total: usize) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!("{} of {} ({percent} %)", thousands(done), thousands(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_for_the_first_interval_then_one_line_per_interval() {
        let start = Instant::now();
        let mut t = Throttle::starting_at(start);
        let at = |ms| start + Duration::from_millis(ms);
        let seen: Vec<bool> = [0, 1_000, 1_999, 2_000, 2_500, 3_999, 4_000, 4_001]
            .into_iter()
            .map(|ms| t.due(at(ms)))
            .collect();
        assert_eq!(seen, [false, false, false, true, false, false, true, false]);
        assert!(t.logged());
        assert!(!Throttle::starting_at(start).logged());
    }

    #[test]
    fn counts_read_well() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), want);
        }
        assert_eq!(fraction(2_500, 10_000), "2,500 of 10,000 (25 %)");
        assert_eq!(fraction(0, 0), "0 of 0 (100 %)");
    }
}
