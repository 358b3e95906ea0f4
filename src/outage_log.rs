//! Log lines about a lost API server, per component: each failed or successful request in, at
//! most one line per change of state (lost, back) plus a reminder every [`REMINDER_EVERY`] out,
//! however many requests fail meanwhile.
//!
//! Without it every failed watch and every failed reconcile logged its own line: an outage of a
//! few seconds under 500 TaskRuns wrote over a thousand.
//!
//! Only an answer to a request made after the outage began ends it: when the server dies, the
//! answers already under way (a write's response, a watch event in a buffer) still arrive after
//! the first failures, and counting them logged "lost", "back" and "lost" again within
//! milliseconds.

use kube::runtime::watcher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// While the server stays unreachable, one reminder line this often.
pub const REMINDER_EVERY: Duration = Duration::from_secs(30);

/// kube-client's own lines that an outage would multiply: every failed request at ERROR
/// (`client::builder`) and every watch the server cut at WARN ("eof in poll"). The outage logs
/// say the same once per component.
const KUBE_CLIENT_QUIET: [&str; 2] = [
    "kube_client::client=error",
    "kube_client::client::builder=off",
];

/// The tracing filter of every command: `RUST_LOG` (default `info`), with kube-client's
/// per-request lines off unless `RUST_LOG` names `kube_client` itself. A `RUST_LOG` that does
/// not parse falls back to the default, as before.
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    let rust_log = rust_log.map(str::trim).filter(|v| !v.is_empty());
    let mut filter = rust_log
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if !rust_log.is_some_and(|v| v.contains("kube_client")) {
        for directive in KUBE_CLIENT_QUIET {
            if let Ok(directive) = directive.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

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

    /// A request made at `asked_at` was answered (`None`: made before any failure this
    /// component remembers, such as a watch that never failed). Only a request made after the
    /// outage began ends it.
    pub fn succeeded(&mut self, now: Instant, asked_at: Option<Instant>) -> Option<Line> {
        let since = self.down_since?;
        if asked_at.is_none_or(|asked| asked < since) {
            return None;
        }
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

    /// Records the answer to a request made at `asked_at` (see [`Connection::succeeded`]).
    pub fn succeeded(&self, asked_at: Option<Instant>) {
        let line = self.lock().succeeded(Instant::now(), asked_at);
        if let Some(Line::Back { failures, down_for }) = line {
            tracing::info!(
                component = self.component,
                failures,
                "the Kubernetes API server is reachable again after {:.1}s ({failures} failed requests)",
                down_for.as_secs_f64()
            );
        }
    }

    /// Records one item of the watch `watch`: an error that means the server is unreachable
    /// counts as a failed request; other errors (410 Gone before a relist, ...) are routine and
    /// logged at debug; an event answers a request the watch made after its own last error.
    pub fn watch_result(&self, watch: &mut WatchRequests, error: Option<&watcher::Error>) {
        match error {
            Some(e) => {
                watch.last_error = Some(Instant::now());
                if is_watch_connection_error(e) {
                    self.failed(e);
                } else {
                    tracing::debug!(component = self.component, "watch: {e}");
                }
            }
            None => self.succeeded(watch.last_error),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one watch stream knows for [`OutageLog::watch_result`]: after an error the watcher
/// lists or watches again, so every later event answers a request made after that error.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchRequests {
    last_error: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_clients_per_request_lines_are_off_unless_asked_for() {
        let quiet = "kube_client::client::builder=off,kube_client::client=error";
        for (rust_log, want) in [
            (None, format!("{quiet},info")),
            (Some(""), format!("{quiet},info")),
            (Some("info"), format!("{quiet},info")),
            (Some("debug"), format!("{quiet},debug")),
            (
                Some("orchestrator=debug"),
                format!("{quiet},orchestrator=debug"),
            ),
            (
                Some("info,kube_client=debug"),
                "kube_client=debug,info".into(),
            ),
            (Some("not a filter=="), format!("{quiet},info")),
        ] {
            let got = log_filter(rust_log).to_string();
            // EnvFilter prints its directives most specific first.
            let mut got: Vec<_> = got.split(',').collect();
            let mut want: Vec<_> = want.split(',').collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{rust_log:?}");
        }
    }

    #[test]
    fn an_outage_logs_once_when_lost_every_reminder_and_once_when_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Connection::default();
        assert_eq!(c.succeeded(t0, Some(t0)), None, "nothing to say while up");
        let mut lines = Vec::new();
        // 1,000 failed requests over 65 s.
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(i * 65);
            lines.extend(c.failed(at));
        }
        lines.extend(c.succeeded(t0 + s(66), Some(t0 + s(65))));
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

    #[test]
    fn answers_to_requests_made_before_the_outage_do_not_end_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Connection::default();
        assert_eq!(c.failed(t0 + ms(100)), Some(Line::Lost));
        for (what, now, asked_at) in [
            (
                "a buffered watch event of a watch that never failed",
                ms(101),
                None,
            ),
            ("a write sent before the server died", ms(102), Some(t0)),
            (
                "a watch that failed in an earlier outage",
                ms(103),
                Some(t0 + ms(99)),
            ),
        ] {
            assert_eq!(c.succeeded(t0 + now, asked_at), None, "{what}");
        }
        assert_eq!(c.failed(t0 + ms(104)), None, "still the same outage");
        assert_eq!(
            c.succeeded(t0 + ms(400), Some(t0 + ms(300))),
            Some(Line::Back {
                failures: 2,
                down_for: ms(300)
            }),
            "a relist after the outage began"
        );
        assert_eq!(
            c.succeeded(t0 + ms(401), Some(t0 + ms(300))),
            None,
            "said once"
        );
    }
}
