//! The sync's Prometheus metrics: sync outcomes in, `orchestrator_sync_*` series out.

use crate::health::SyncStatus;
use crate::metrics::Metrics;
use crate::sync::plan::{Action, SyncPlan};
use crate::sync::report::SyncReport;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::time::Duration;

type Labels = [(&'static str, &'static str); 1];

/// Handles on the sync's series; cheap to clone.
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    runs: Family<Labels, Counter>,
    duration: Histogram,
    errors: Family<Labels, Counter>,
    task_actions: Family<Labels, Counter>,
    last_status: Family<Labels, Gauge>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// The fixed set of error kinds (never error text as a label).
pub mod error_kind {
    pub const FETCH: &str = "fetch";
    pub const LIST: &str = "list";
    pub const APPLY: &str = "apply";
    pub const FOLDER: &str = "folder";
}

impl SyncMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            runs: Family::default(),
            // 1 ms .. ~65 s
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            errors: Family::default(),
            task_actions: Family::default(),
            last_status: Family::default(),
            last_success: Gauge::default(),
        };
        metrics.register(
            "sync_runs",
            "Syncs finished, by resulting sync status",
            this.runs.clone(),
        );
        metrics.register(
            "sync_duration_seconds",
            "Time from listing the live TaskRuns to the last write of one sync",
            this.duration.clone(),
        );
        metrics.register(
            "sync_errors",
            "Sync errors by kind: fetch, list, apply, folder",
            this.errors.clone(),
        );
        metrics.register(
            "sync_task_actions",
            "TaskRuns planned by action: create, update, prune, unchanged, keep, conflict",
            this.task_actions.clone(),
        );
        metrics.register(
            "sync_last_status",
            "1 for the status of the latest sync (Synced, OutOfSync, Unknown), 0 for the others",
            this.last_status.clone(),
        );
        metrics.register(
            "sync_last_success_timestamp_seconds",
            "Unix time of the latest Synced sync",
            this.last_success.clone(),
        );
        this
    }

    /// Records one finished sync.
    pub fn observe(&self, plan: &SyncPlan, report: &SyncReport, took: Duration, unix_now: f64) {
        self.runs
            .get_or_create(&[("status", report.status.as_str())])
            .inc();
        self.duration.observe(took.as_secs_f64());
        for step in &plan.steps {
            self.task_actions
                .get_or_create(&[("action", action_label(&step.action))])
                .inc();
        }
        let apply_errors = report.apply_errors.len() as u64;
        if apply_errors > 0 {
            self.error(error_kind::APPLY, apply_errors);
        }
        if !report.folder_errors.is_empty() {
            self.error(error_kind::FOLDER, report.folder_errors.len() as u64);
        }
        self.set_status(report.status);
        if report.status == SyncStatus::Synced {
            self.last_success.set(unix_now);
        }
    }

    /// Counts errors that happen outside a plan (fetch, list).
    pub fn error(&self, kind: &'static str, n: u64) {
        self.errors.get_or_create(&[("kind", kind)]).inc_by(n);
    }

    pub fn set_status(&self, status: SyncStatus) {
        for s in [
            SyncStatus::Synced,
            SyncStatus::OutOfSync,
            SyncStatus::Unknown,
        ] {
            self.last_status
                .get_or_create(&[("status", s.as_str())])
                .set(i64::from(s == status));
        }
    }
}

fn action_label(action: &Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update(_) => "update",
        Action::Unchanged => "unchanged",
        Action::Prune { .. } => "prune",
        Action::KeepBroken | Action::KeepOrphan { .. } => "keep",
        Action::Conflict { .. } => "conflict",
        Action::WaitForDeletion => "wait",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::tests::{folder, snapshot, source};
    use crate::desired::{KnownTaskRuns, desired_task_runs};
    use crate::sync::plan::{PlanInput, plan};

    #[test]
    fn one_sync_shows_up_in_every_series() {
        let metrics = Metrics::new();
        let sync = SyncMetrics::register(&metrics);
        let snap = snapshot('1', vec![folder(1, "a"), folder(2, "b")]);
        let desired = desired_task_runs(&snap, &source(), "default", &KnownTaskRuns::new());
        let p = plan(PlanInput {
            legacy_owner: None,
            desired: &desired,
            live: &KnownTaskRuns::new(),
            folder_errors: &[],
            source_label: &source().label_value(),
            prune: true,
            settled: None,
        });
        let report = SyncReport::from_plan(None, &snap.revision, &p, &[], vec![], None, "t".into());
        sync.observe(&p, &report, Duration::from_millis(20), 1_700_000_000.0);
        sync.error(error_kind::FETCH, 1);
        let text = metrics.render();
        for want in [
            r#"orchestrator_sync_runs_total{status="Synced"} 1"#,
            "orchestrator_sync_duration_seconds_count 1",
            r#"orchestrator_sync_task_actions_total{action="create"} 2"#,
            r#"orchestrator_sync_last_status{status="Synced"} 1"#,
            r#"orchestrator_sync_last_status{status="OutOfSync"} 0"#,
            r#"orchestrator_sync_errors_total{kind="fetch"} 1"#,
            "orchestrator_sync_last_success_timestamp_seconds 1700000000",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
