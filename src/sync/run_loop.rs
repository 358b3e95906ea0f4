//! The sync loop: a git source, sync triggers, ref changes and a clock in; a sync on every wake
//! (new revision, trigger, or the periodic re-sync that heals drift), reports on a watch channel
//! and metrics out.

use crate::health::SyncStatus;
use crate::source::GitSource;
use crate::source::snapshot::Revision;
use crate::sync::apply::{Syncer, now_rfc3339};
use crate::sync::metrics::{SyncMetrics, error_kind};
use crate::sync::report::{ReportSender, SyncReport};
use crate::sync::trigger::SyncRequests;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

/// When the loop wakes.
#[derive(Clone, Copy, Debug)]
pub struct LoopSettings {
    /// Fetch and re-sync at least this often; each re-sync heals drift (a TaskRun edited or
    /// deleted by hand).
    pub interval: Duration,
    /// Retry this soon after a sync that did not converge (a failed write, a TaskRun still
    /// being deleted, an unreachable cluster).
    pub retry: Duration,
}

impl LoopSettings {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            retry: interval.min(Duration::from_secs(2)),
        }
    }
}

/// Where the latest sync of the loop stands, for `--until-done` and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopState {
    pub revision: Revision,
    pub status: SyncStatus,
    /// A sync of this revision right now would write nothing (see `SyncOutcome::converged`).
    pub converged: bool,
    /// Syncs finished since the loop started.
    pub syncs: u64,
}

/// What the loop publishes to.
#[derive(Clone)]
pub struct LoopOutputs {
    /// The latest report (a watch channel: readers that fall behind see only the newest).
    pub reports: ReportSender,
    /// Every report, in order, for a reader that must see each revision even when two syncs
    /// finish while it is busy: the notes writer, so that a commit superseded within seconds
    /// still gets its note. Unbounded so that the sync never waits for Git; the reader only
    /// falls behind while it writes one notes commit.
    pub every_report: Option<mpsc::UnboundedSender<SyncReport>>,
    pub state: watch::Sender<Option<LoopState>>,
    pub metrics: SyncMetrics,
}

impl LoopOutputs {
    fn publish(&self, report: SyncReport) {
        if let Some(every) = &self.every_report {
            // A reader that has stopped is not the sync's concern.
            let _ = every.send(report.clone());
        }
        self.reports.send_replace(Some(report));
    }
}

/// Runs until `shutdown` turns true. `ref_changes` is the notify watch on a local repository's
/// refs (see `crate::source::watch_refs`).
pub async fn run_sync_loop(
    mut source: GitSource,
    mut syncer: Syncer,
    mut requests: SyncRequests,
    ref_changes: Option<Arc<Notify>>,
    outputs: LoopOutputs,
    settings: LoopSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut syncs = 0u64;
    while !*shutdown.borrow() {
        let mut delay = settings.interval;
        let snapshot = match source.fetch_snapshot().await {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                warn!(error = %e, "fetching the source failed; re-syncing the last good revision");
                outputs.metrics.error(error_kind::FETCH, 1);
                delay = source.next_delay();
                source.last_good()
            }
        };
        if let Some(snapshot) = snapshot {
            syncs += 1;
            match syncer.sync(&snapshot).await {
                Ok(outcome) => {
                    outputs.metrics.observe(
                        &outcome.plan,
                        &outcome.report,
                        outcome.took,
                        unix_now(),
                    );
                    if !outcome.converged {
                        delay = delay.min(settings.retry);
                    }
                    outputs.state.send_replace(Some(LoopState {
                        revision: snapshot.revision.clone(),
                        status: outcome.report.status,
                        converged: outcome.converged,
                        syncs,
                    }));
                    outputs.publish(outcome.report);
                }
                Err(e) => {
                    warn!(error = %e, "sync failed");
                    outputs.metrics.error(e.kind(), 1);
                    outputs.metrics.set_status(SyncStatus::Unknown);
                    delay = delay.min(settings.retry);
                    let previous = outputs
                        .reports
                        .borrow()
                        .as_ref()
                        .and_then(|r| r.applied_revision.clone());
                    outputs.state.send_replace(Some(LoopState {
                        revision: snapshot.revision.clone(),
                        status: SyncStatus::Unknown,
                        converged: false,
                        syncs,
                    }));
                    outputs.publish(SyncReport::unknown(
                        &snapshot.revision,
                        "taskruns",
                        e.to_string(),
                        previous,
                        now_rfc3339(),
                    ));
                }
            }
        }
        let ref_changed = async {
            match &ref_changes {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => debug!("periodic re-sync"),
            Some(reason) = requests.next() => info!(%reason, "sync requested"),
            _ = ref_changed => debug!("a local ref moved"),
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
    info!("sync loop stopped");
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
