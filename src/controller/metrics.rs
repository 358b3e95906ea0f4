//! The controller's Prometheus metrics: reconcile outcomes and TaskRun phases in, series in the
//! registry the caller passes out. No global statics: each controller owns its metrics.

use crate::crd::TaskPhase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

/// `result` is `ok` or `error`: labels never name a task, so the series count stays fixed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub result: &'static str,
}

/// An agent profile's name: a bounded set, fixed by the profiles file.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    pub agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

/// Every series the controller exports.
#[derive(Debug)]
pub struct ControllerMetrics {
    /// `taskrun_total`: TaskRun runs (one per TaskRun and context version) the controller has
    /// taken on: counted when it first writes a status for that version.
    pub taskrun: Counter,
    /// `taskrun_active`: TaskRuns that are Pending or Running now.
    pub taskrun_active: Gauge,
    /// `taskrun_phase{phase}`: TaskRuns in each phase now.
    pub taskrun_phase: Family<PhaseLabels, Gauge>,
    /// `controller_reconcile_duration_seconds{result}`.
    pub reconcile_duration: Family<ReconcileLabels, Histogram, fn() -> Histogram>,
    /// `controller_reconcile_errors_total{kind}`, kind from `Error::kind()`.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// `controller_jobs_created_total`.
    pub jobs_created: Counter,
    /// `controller_reports_deferred_total`: status writes and events left for later because
    /// other TaskRuns waited to start (see [`super::starts_first`]).
    pub reports_deferred: Counter,
    /// `taskrun_queued{agent}`: TaskRuns waiting for a slot (maxConcurrent, --max-running).
    pub taskrun_queued: Family<AgentLabels, Gauge>,
    phases: Mutex<HashMap<String, TaskPhase>>,
}

fn reconcile_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

const PHASES: [TaskPhase; 4] = [
    TaskPhase::Pending,
    TaskPhase::Running,
    TaskPhase::Succeeded,
    TaskPhase::Failed,
];

impl ControllerMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> ControllerMetrics {
        let m = ControllerMetrics {
            taskrun: Counter::default(),
            taskrun_active: Gauge::default(),
            taskrun_phase: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_histogram),
            reconcile_errors: Family::default(),
            jobs_created: Counter::default(),
            reports_deferred: Counter::default(),
            taskrun_queued: Family::default(),
            phases: Mutex::new(HashMap::new()),
        };
        // prometheus-client appends `_total` to counters.
        registry.register(
            "taskrun",
            "TaskRun runs (TaskRun and context version) taken on by the controller",
            m.taskrun.clone(),
        );
        registry.register(
            "taskrun_active",
            "TaskRuns that are Pending or Running",
            m.taskrun_active.clone(),
        );
        registry.register(
            "taskrun_phase",
            "TaskRuns in each phase",
            m.taskrun_phase.clone(),
        );
        registry.register(
            "controller_reconcile_duration_seconds",
            "Time one TaskRun reconcile takes, by result (ok, error)",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "controller_reconcile_errors",
            "Failed TaskRun reconciles by error kind",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "controller_jobs_created",
            "Jobs the controller created",
            m.jobs_created.clone(),
        );
        registry.register(
            "controller_reports_deferred",
            "Reconciles that left their status write and event for later, while other TaskRuns waited to start",
            m.reports_deferred.clone(),
        );
        registry.register(
            "taskrun_queued",
            "TaskRuns waiting for a slot of their agent's maxConcurrent or --max-running, by agent",
            m.taskrun_queued.clone(),
        );
        for phase in PHASES {
            // Zero series exist from the start, so a scrape shows every phase.
            m.taskrun_phase
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(0);
        }
        m
    }

    /// Sets `taskrun_queued` for every agent in `agents` (0 when none of its TaskRuns waits).
    pub fn set_queued<'a>(
        &self,
        agents: impl IntoIterator<Item = &'a str>,
        queued: &std::collections::BTreeMap<&str, usize>,
    ) {
        for agent in agents {
            self.taskrun_queued
                .get_or_create(&AgentLabels {
                    agent: agent.to_string(),
                })
                .set(queued.get(agent).copied().unwrap_or(0) as i64);
        }
    }

    /// Records the phase a TaskRun (by uid) is in now.
    pub fn observe_phase(&self, uid: &str, phase: TaskPhase) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        let old = phases.insert(uid.to_string(), phase);
        if old != Some(phase) {
            if let Some(old) = old {
                self.phase_gauge(old).dec();
            }
            self.phase_gauge(phase).inc();
        }
        self.set_active(&phases);
    }

    /// The TaskRun is gone.
    pub fn forget(&self, uid: &str) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = phases.remove(uid) {
            self.phase_gauge(old).dec();
        }
        self.set_active(&phases);
    }

    fn phase_gauge(&self, phase: TaskPhase) -> Gauge {
        self.taskrun_phase
            .get_or_create(&PhaseLabels {
                phase: phase.as_str(),
            })
            .clone()
    }

    fn set_active(&self, phases: &HashMap<String, TaskPhase>) {
        let active = phases.values().filter(|p| !p.is_terminal()).count();
        self.taskrun_active.set(active as i64);
    }

    pub fn count_error(&self, kind: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind })
            .inc();
    }

    /// Records the reconcile's duration when dropped, however the reconcile ends: as `error`
    /// unless [`ReconcileTimer::succeeded`] was called.
    pub fn time_reconcile(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            family: &self.reconcile_duration,
            start: Instant::now(),
            ok: false,
        }
    }
}

pub struct ReconcileTimer<'a> {
    family: &'a Family<ReconcileLabels, Histogram, fn() -> Histogram>,
    start: Instant,
    ok: bool,
}

impl ReconcileTimer<'_> {
    pub fn succeeded(&mut self) {
        self.ok = true;
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let result = if self.ok { "ok" } else { "error" };
        self.family
            .get_or_create(&ReconcileLabels { result })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// The registry in the OpenMetrics text format, as /metrics serves it.
pub fn encode_openmetrics(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_active_follow_the_task_runs() {
        let mut registry = Registry::default();
        let m = ControllerMetrics::register(&mut registry);
        m.observe_phase("a", TaskPhase::Pending);
        m.observe_phase("b", TaskPhase::Running);
        m.observe_phase("a", TaskPhase::Running);
        m.observe_phase("a", TaskPhase::Running);
        m.observe_phase("c", TaskPhase::Succeeded);
        m.forget("b");
        m.taskrun.inc();
        m.jobs_created.inc();
        m.count_error("apply");
        drop(m.time_reconcile());
        let mut ok = m.time_reconcile();
        ok.succeeded();
        drop(ok);
        let text = encode_openmetrics(&registry);
        for line in [
            "taskrun_total 1",
            "taskrun_active 1",
            "taskrun_phase{phase=\"Running\"} 1",
            "taskrun_phase{phase=\"Pending\"} 0",
            "taskrun_phase{phase=\"Succeeded\"} 1",
            "taskrun_phase{phase=\"Failed\"} 0",
            "controller_jobs_created_total 1",
            "controller_reconcile_errors_total{kind=\"apply\"} 1",
            "controller_reconcile_duration_seconds_count{result=\"error\"} 1",
            "controller_reconcile_duration_seconds_count{result=\"ok\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
