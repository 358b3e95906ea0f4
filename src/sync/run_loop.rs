//! The sync loop: a git source, sync triggers, ref changes and a clock in; a sync on every wake
//! (new revision, trigger, or the periodic re-sync that heals drift), reports on a watch channel
//! and metrics out.

use crate::health::SyncStatus;
use crate::source::GitSource;
use crate::source::snapshot::{FolderError, Revision};
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
    let mut logged_errors: Vec<FolderError> = vec![];
    let outage = Arc::new(crate::outage_log::OutageLog::new("sync", settings.retry));
    syncer.set_outage_log(outage.clone());
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
            log_folder_errors(&mut logged_errors, &snapshot.errors);
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
                    if e.is_connection() {
                        outage.failed(&e);
                    } else {
                        warn!(error = %e, "sync failed");
                    }
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

/// One WARN line per broken folder when the set of folder errors changed since the last sync
/// (and one INFO line when the last of them is fixed); nothing while it stays the same, so a
/// broken commit is named in the log once, not once per sync.
fn log_folder_errors(logged: &mut Vec<FolderError>, now: &[FolderError]) {
    if !folder_errors_changed(logged, now) {
        return;
    }
    if now.is_empty() {
        info!("every task folder is valid again");
    }
    for error in now {
        warn!(
            folder = %error.folder,
            file = %error.file.as_deref().unwrap_or("-"),
            error = %error.message,
            "task folder error: this task is kept as it is until the folder is fixed"
        );
    }
    *logged = now.to_vec();
}

/// Whether two lists of folder errors differ as sets. Pure.
pub fn folder_errors_changed(before: &[FolderError], now: &[FolderError]) -> bool {
    let key = |e: &FolderError| (e.folder.clone(), e.file.clone(), e.message.clone());
    let a: std::collections::BTreeSet<_> = before.iter().map(key).collect();
    let b: std::collections::BTreeSet<_> = now.iter().map(key).collect();
    a != b
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(folder: &str, message: &str) -> FolderError {
        FolderError {
            folder: folder.into(),
            file: Some("task.yaml".into()),
            task_id: None,
            message: message.into(),
        }
    }

    #[test]
    fn folder_errors_are_logged_when_the_set_changes() {
        let a = error("tasks/1-a", "agentName is missing");
        let b = error("tasks/2-b", "bad yaml");
        for (what, before, now, want) in [
            ("none, none", vec![], vec![], false),
            ("a new error", vec![], vec![a.clone()], true),
            (
                "the same errors",
                vec![a.clone(), b.clone()],
                vec![b.clone(), a.clone()],
                false,
            ),
            (
                "one fixed",
                vec![a.clone(), b.clone()],
                vec![b.clone()],
                true,
            ),
            ("all fixed", vec![a.clone()], vec![], true),
            (
                "another message",
                vec![a.clone()],
                vec![error("tasks/1-a", "x")],
                true,
            ),
        ] {
            assert_eq!(folder_errors_changed(&before, &now), want, "{what}");
        }
    }
}
