//! Log lines about a lost API server, per component: each failed or successful request in, at
//! most one line per change of state (lost, back) plus a reminder every [`REMINDER_EVERY`] out,
//! however many requests fail meanwhile.
//!
//! Without it every failed watch and every failed reconcile logged its own line: an outage of a
//! few seconds under 500 TaskRuns wrote over a thousand.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// While the server stays unreachable, one reminder line this often.
pub const REMINDER_EVERY: Duration = Duration::from_secs(30);

/// Whether a client error means the API server could not be reached (rather than that it
/// answered with an error about the request).
pub fn is_connection_error(error: &kube::Error) -> bool {
    matches!(
        error,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)
    )
}

/// The same for a watch: the list or watch request could not be made or was cut.
pub fn is_watch_connection_error(error: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error as W;
    match error {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => {
            is_connection_error(e)
        }
        _ => false,
    }
}

/// What a component knows about its connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// Since when requests fail; `None` while they succeed.
    down_since: Option<Instant>,
    /// Failed requests since `down_since`.
    failures: u64,
    last_line: Option<Instant>,
}

/// The line to log after one request, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Lost,
    StillDown { failures: u64, down_for: Duration },
    Back { failures: u64, down_for: Duration },
}

impl Connection {
    /// A request could not reach the server. Pure (the clock is passed in).
    pub fn failed(&mut self, now: Instant) -> Option<Line> {
        self.failures += 1;
        match self.down_since {
            None => {
                self.down_since = Some(now);
                self.last_line = Some(now);
                Some(Line::Lost)
            }
            Some(since) => {
                let due = self
                    .last_line
                    .is_none_or(|last| now.duration_since(last) >= REMINDER_EVERY);
                due.then(|| {
                    self.last_line = Some(now);
                    Line::StillDown {
                        failures: self.failures,
                        down_for: now.duration_since(since),
                    }
                })
            }
        }
    }

    /// A request reached the server.
    pub fn succeeded(&mut self, now: Instant) -> Option<Line> {
        let since = self.down_since.take()?;
        let line = Line::Back {
            failures: self.failures,
            down_for: now.duration_since(since),
        };
        *self = Connection::default();
        Some(line)
    }
}

/// One component's outage log ("controller", "sync", ...).
#[derive(Debug)]
pub struct OutageLog {
    component: &'static str,
    retry: Duration,
    connection: Mutex<Connection>,
}

impl OutageLog {
    /// `retry` is the longest wait between two attempts, stated in the "lost" line.
    pub fn new(component: &'static str, retry: Duration) -> OutageLog {
        OutageLog {
            component,
            retry,
            connection: Mutex::new(Connection::default()),
        }
    }

    /// Records a request that could not reach the server; logs only on a change of state or
    /// when a reminder is due.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let line = self.lock().failed(Instant::now());
        let component = self.component;
        match line {
            Some(Line::Lost) => tracing::error!(
                component,
                retry_every_ms = self.retry.as_millis() as u64,
                "lost the connection to the Kubernetes API server: {error}; retrying at least every {:?} and logging again when it is back",
                self.retry
            ),
            Some(Line::StillDown { failures, down_for }) => tracing::error!(
                component,
                failures,
                "the Kubernetes API server is still unreachable after {}s ({failures} failed requests): {error}",
                down_for.as_secs()
            ),
            _ => tracing::debug!(
                component,
                "request failed while the API server is unreachable: {error}"
            ),
        }
    }

    /// Records a request that reached the server.
    pub fn succeeded(&self) {
        if let Some(Line::Back { failures, down_for }) = self.lock().succeeded(Instant::now()) {
            tracing::info!(
                component = self.component,
                failures,
                "the Kubernetes API server is reachable again after {:.1}s ({failures} failed requests)",
                down_for.as_secs_f64()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_logs_once_when_lost_every_reminder_and_once_when_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Connection::default();
        assert_eq!(c.succeeded(t0), None, "nothing to say while up");
        let mut lines = Vec::new();
        // 1,000 failed requests over 65 s.
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(i * 65);
            lines.extend(c.failed(at));
        }
        lines.extend(c.succeeded(t0 + s(66)));
        assert_eq!(
            lines,
            [
                Line::Lost,
                // The first request at or after 30 s (the 463rd, at 462 × 65 ms) reminds.
                Line::StillDown {
                    failures: 463,
                    down_for: Duration::from_millis(462 * 65)
                },
                Line::StillDown {
                    failures: 925,
                    down_for: Duration::from_millis(924 * 65)
                },
                Line::Back {
                    failures: 1000,
                    down_for: s(66)
                },
            ]
        );
        assert_eq!(c, Connection::default(), "the next outage starts fresh");
        assert_eq!(c.failed(t0 + s(70)), Some(Line::Lost));
    }
}
