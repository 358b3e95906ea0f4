//! The Prometheus registry shared by every stage: each stage registers its metrics in, the API's
//! `/metrics` renders OpenMetrics text out.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, Mutex, MutexGuard};

/// Prefix of every metric name (`orchestrator_sync_runs_total`).
pub const METRIC_PREFIX: &str = "orchestrator";

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A cheaply cloneable handle on one registry. Stages register at construction
/// (`SyncMetrics::register(&metrics)`); metric handles are themselves `Arc`s, so recording never
/// takes this lock.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix(METRIC_PREFIX))),
        }
    }

    /// Registers one metric as `orchestrator_<name>`. Counters get `_total` appended by the
    /// encoder, so pass counter names without it.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock().register(name, help, metric);
    }

    /// Hands the registry to a stage whose metrics register into `&mut Registry`
    /// (`ControllerMetrics::register`, `NotesMetrics::register`).
    pub fn register_with<T>(&self, register: impl FnOnce(&mut Registry) -> T) -> T {
        register(&mut self.lock())
    }

    /// The whole registry as OpenMetrics text (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only come from a metric
        // whose own encode fails, and then a partial page is still the best answer.
        let _ = encode(&mut out, &self.lock());
        out
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-written in a way that
        // matters for rendering, so a poisoned lock is still usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn registered_metrics_render_as_openmetrics_with_the_prefix() {
        let metrics = Metrics::new();
        let runs = Counter::<u64>::default();
        let up = Gauge::<i64>::default();
        metrics.register("things", "Things done", runs.clone());
        metrics
            .clone()
            .register("up", "Whether it is up", up.clone());
        runs.inc_by(3);
        up.set(1);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE orchestrator_things counter"),
            "{text}"
        );
        assert!(text.contains("orchestrator_things_total 3"), "{text}");
        assert!(text.contains("orchestrator_up 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
