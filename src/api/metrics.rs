//! The API's Prometheus metrics: finished requests and commits in, `orchestrator_api_*` series
//! out (labels from fixed sets: the route template, the status class, the write kind).

use crate::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::time::Duration;

type RouteLabels = [(&'static str, String); 3];
type WriteLabels = [(&'static str, &'static str); 2];

/// Handles on the API's series; cheap to clone. Unregistered handles record into nothing.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RouteLabels, Counter>,
    duration: Family<[(&'static str, String); 1], Histogram>,
    writes: Family<WriteLabels, Counter>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            // 1 ms .. ~33 s
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            writes: Family::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "api_requests",
            "HTTP requests answered, by route template, method and status class (2xx, 4xx, 5xx)",
            this.requests.clone(),
        );
        metrics.register(
            "api_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            this.duration.clone(),
        );
        metrics.register(
            "api_writes",
            "Writes to Git by kind (task, context) and outcome (committed, refused, failed)",
            this.writes.clone(),
        );
        this
    }

    /// Records one answered request; `route` is the matched template (`/api/v1/tasks/{id}`).
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&[
                ("route", route.to_string()),
                ("method", method.to_string()),
                ("code", class.to_string()),
            ])
            .inc();
        self.duration
            .get_or_create(&[("route", route.to_string())])
            .observe(took.as_secs_f64());
    }

    /// Records one write: `kind` is `task` or `context`, `outcome` `committed`, `refused` or
    /// `failed`.
    pub fn write(&self, kind: &'static str, outcome: &'static str) {
        self.writes
            .get_or_create(&[("kind", kind), ("outcome", outcome)])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_fixed_labels() {
        let metrics = Metrics::new();
        let api = ApiMetrics::register(&metrics);
        api.request("/api/v1/tasks", "POST", 201, Duration::from_millis(3));
        api.request("/api/v1/tasks", "POST", 409, Duration::from_millis(1));
        api.write("task", "committed");
        let text = metrics.render();
        for needle in [
            r#"orchestrator_api_requests_total{route="/api/v1/tasks",method="POST",code="2xx"} 1"#,
            r#"orchestrator_api_requests_total{route="/api/v1/tasks",method="POST",code="4xx"} 1"#,
            r#"orchestrator_api_writes_total{kind="task",outcome="committed"} 1"#,
            "orchestrator_api_request_duration_seconds_count{route=\"/api/v1/tasks\"} 2",
        ] {
            assert!(text.contains(needle), "{needle}\n{text}");
        }
    }
}
