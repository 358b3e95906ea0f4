//! The notes writer: sync reports and TaskRun states in, notes commits on `refs/notes/orchestrator`
//! (and, for a remote repository, pushes of that ref) out, in the background.
//!
//! # Contract for `run` ([`spawn_notes_writer`])
//!
//! - `reports`: a stream of the [`SyncReport`]s the sync produces. `run` gives it the sync
//!   loop's `every_report` channel (an unbounded mpsc: every revision is seen, so a commit
//!   superseded while the writer is busy still gets its note, with `supersededBy`).
//!   [`report_stream`] over the sync's `ReportReceiver` also works, but that watch channel keeps
//!   only the latest report: of two sent while the writer is busy only the second is seen.
//!   Sending never waits for Git. A report that repeats the previous one
//!   for the same commit apart from `synced_at` changes nothing.
//!   When the stream ends the writer writes what is left, pushes once more and stops.
//! - At shutdown call [`NotesWriterHandle::shutdown`]`(timeout).await`: it writes the final
//!   state at once (the coalescing interval does not hold it back), pushes once and stops
//!   (aborting after `timeout`). [`NotesWriterHandle::abort`] drops unwritten changes.
//! - `states`: anything implementing [`TaskStates`]: a `kube::runtime::reflector::Store<TaskRun>`,
//!   or a closure returning `BTreeMap<TaskRun name, TaskState>`. It is re-read every
//!   `poll_interval` while the current revision has non-terminal tasks, and at once after
//!   [`NotesWriterHandle::wake`] (call it from the reflector's event stream if you like).
//! - `config.repo_path`: the local repository, or the bare mirror the source keeps for a remote
//!   repository; with `config.remote` set, the writer pushes ONLY the notes ref there (fetch,
//!   merge by commit, retry on non-fast-forward, back off while the remote is unreachable).
//!   The mirror's own fetch must not overwrite `refs/notes/*`: fetch branches only.
//! - At most one notes commit per `min_interval`; a revision's note stops changing once every
//!   task is terminal, or once a report of another commit arrives (its note then says
//!   `supersededBy`). Git errors are logged and retried; they never reach the sync.

use super::error::NotesError;
use super::metrics::NotesMetrics;
use super::model::{NOTES_REF, TaskState};
use super::push::{NotesRemote, push_backoff, sync_notes_with_remote};
use super::store::write_notes;
use super::tracker::{PlannedNote, Tracker};
use crate::crd::TaskRun;
use crate::sync::report::{ReportReceiver, SyncReport};
use futures::{Stream, StreamExt};
use git2::{Oid, Repository, Signature};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// How and where notes are written.
#[derive(Clone, Debug)]
pub struct NotesConfig {
    /// The local repository (or the source's bare mirror of a remote one).
    pub repo_path: PathBuf,
    /// Where to push the notes ref; `None` for a local repository.
    pub remote: Option<NotesRemote>,
    pub notes_ref: String,
    /// Author and committer of notes commits.
    pub author_name: String,
    pub author_email: String,
    /// At most one notes commit per this interval (bursts of status changes coalesce).
    pub min_interval: Duration,
    /// How often task states are re-read while a revision is in progress.
    pub poll_interval: Duration,
    /// Wait after the first failed push; doubles per failure up to `push_backoff_max`.
    pub push_backoff_initial: Duration,
    pub push_backoff_max: Duration,
    /// Fetch-merge-push rounds before one push attempt counts as failed.
    pub push_attempts: u32,
}

impl NotesConfig {
    /// Defaults: `refs/notes/orchestrator`, `orchestrator <orchestrator@localhost>`, one notes
    /// commit per 3 s, states re-read every second, push backoff 1 s doubling to 60 s.
    pub fn new(repo_path: impl Into<PathBuf>) -> NotesConfig {
        NotesConfig {
            repo_path: repo_path.into(),
            remote: None,
            notes_ref: NOTES_REF.to_string(),
            author_name: "orchestrator".to_string(),
            author_email: "orchestrator@localhost".to_string(),
            min_interval: Duration::from_secs(3),
            poll_interval: Duration::from_secs(1),
            push_backoff_initial: Duration::from_secs(1),
            push_backoff_max: Duration::from_secs(60),
            push_attempts: 5,
        }
    }

    fn signature(&self) -> Result<Signature<'static>, NotesError> {
        Signature::now(&self.author_name, &self.author_email).map_err(|source| {
            NotesError::Signature {
                name: self.author_name.clone(),
                email: self.author_email.clone(),
                source,
            }
        })
    }

    fn open(&self) -> Result<Repository, NotesError> {
        Repository::open(&self.repo_path).map_err(|source| NotesError::OpenRepository {
            path: self.repo_path.display().to_string(),
            source,
        })
    }
}

/// The reports published on the sync's watch channel, starting with the one already there.
pub fn report_stream(
    reports: ReportReceiver,
) -> impl Stream<Item = SyncReport> + Send + Unpin + 'static {
    tokio_stream::wrappers::WatchStream::new(reports).filter_map(std::future::ready)
}

/// The current status of TaskRuns, by TaskRun name.
pub trait TaskStates: Send + Sync + 'static {
    fn task_states(&self) -> BTreeMap<String, TaskState>;
}

impl<F> TaskStates for F
where
    F: Fn() -> BTreeMap<String, TaskState> + Send + Sync + 'static,
{
    fn task_states(&self) -> BTreeMap<String, TaskState> {
        self()
    }
}

impl TaskStates for kube::runtime::reflector::Store<TaskRun> {
    fn task_states(&self) -> BTreeMap<String, TaskState> {
        self.state()
            .iter()
            .filter_map(|tr| Some((tr.metadata.name.clone()?, TaskState::of_task_run(tr))))
            .collect()
    }
}

/// The running writer (and pusher).
pub struct NotesWriterHandle {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    writer: JoinHandle<()>,
    pusher: Option<JoinHandle<()>>,
}

impl NotesWriterHandle {
    /// Task states changed: re-read them now instead of at the next poll (writes still coalesce).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Writes the final state now (not waiting out the coalescing interval), pushes once, and
    /// stops; gives up after `timeout` (an unreachable remote) and aborts both tasks. Call this
    /// at shutdown so the last status change reaches the note.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(true);
        let (writer, pusher) = (
            self.writer.abort_handle(),
            self.pusher.as_ref().map(|p| p.abort_handle()),
        );
        if tokio::time::timeout(timeout, self.join()).await.is_err() {
            tracing::warn!(
                ?timeout,
                "the notes writer did not finish in time; stopping it"
            );
            writer.abort();
            if let Some(pusher) = pusher {
                pusher.abort();
            }
        }
    }

    /// Waits until the reports stream has ended, the last notes are written and pushed once.
    pub async fn join(self) {
        let _ = self.writer.await;
        if let Some(pusher) = self.pusher {
            let _ = pusher.await;
        }
    }

    /// Stops both tasks at once, writing nothing more.
    pub fn abort(&self) {
        self.writer.abort();
        if let Some(pusher) = &self.pusher {
            pusher.abort();
        }
    }
}

/// Starts the notes writer (and, with a remote, its pusher) on the current tokio runtime.
pub fn spawn_notes_writer<S>(
    config: NotesConfig,
    reports: S,
    states: Arc<dyn TaskStates>,
    metrics: NotesMetrics,
) -> NotesWriterHandle
where
    S: Stream<Item = SyncReport> + Send + Unpin + 'static,
{
    let config = Arc::new(config);
    let lock = Arc::new(Mutex::new(()));
    let wake = Arc::new(Notify::new());
    let (stop, stop_rx) = watch::channel(false);
    let (written_tx, written_rx) = watch::channel(0u64);
    let pusher = config.remote.clone().map(|remote| {
        tokio::spawn(run_pusher(
            config.clone(),
            remote,
            written_rx,
            lock.clone(),
            metrics.clone(),
        ))
    });
    let writer = tokio::spawn(run_writer(
        config,
        reports,
        states,
        Signals {
            wake: wake.clone(),
            stop: stop_rx,
        },
        written_tx,
        lock,
        metrics,
    ));
    NotesWriterHandle {
        wake,
        stop,
        writer,
        pusher,
    }
}

/// What the handle tells the writer: re-read states now; stop.
struct Signals {
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
}

async fn run_writer<S>(
    config: Arc<NotesConfig>,
    mut reports: S,
    states: Arc<dyn TaskStates>,
    signals: Signals,
    written: watch::Sender<u64>,
    lock: Arc<Mutex<()>>,
    metrics: NotesMetrics,
) where
    S: Stream<Item = SyncReport> + Send + Unpin + 'static,
{
    let Signals { wake, mut stop } = signals;
    let mut tracker = Tracker::new();
    let mut next_write = Instant::now();
    let mut closed = false;
    loop {
        if !closed {
            let now = Instant::now();
            let tick = if now < next_write {
                next_write
            } else {
                now + config.poll_interval
            };
            tokio::select! {
                report = reports.next() => match report {
                    Some(report) => tracker.observe(report, &states.task_states()),
                    None => closed = true,
                },
                _ = wake.notified() => {}
                Ok(_) = stop.wait_for(|stop| *stop) => closed = true,
                _ = sleep_until(tick), if !tracker.is_idle() => {}
            }
        }
        // Closing flushes at once: the final state matters more than the interval.
        if !closed && Instant::now() < next_write {
            continue;
        }
        let plan = tracker.plan(&states.task_states());
        if !plan.is_empty() {
            next_write = Instant::now() + config.min_interval;
            match write_planned(config.clone(), plan.clone(), lock.clone()).await {
                Ok(count) => {
                    tracker.wrote(&plan);
                    metrics.written.inc_by(count);
                    written.send_modify(|generation| *generation += 1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.kind(), "writing notes failed; will retry")
                }
            }
        }
        if closed {
            break;
        }
    }
}

/// Writes `plan` as one notes commit; returns how many notes changed.
async fn write_planned(
    config: Arc<NotesConfig>,
    plan: Vec<PlannedNote>,
    lock: Arc<Mutex<()>>,
) -> Result<u64, NotesError> {
    tokio::task::spawn_blocking(move || {
        let notes = plan
            .iter()
            .map(|p| {
                Oid::from_str(&p.commit)
                    .map(|oid| (oid, p.text.clone()))
                    .map_err(|_| NotesError::BadCommitId {
                        commit: p.commit.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let repo = config.open()?;
        let signature = config.signature()?;
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let written = write_notes(&repo, &config.notes_ref, &signature, &notes)?;
        Ok(written.changed as u64)
    })
    .await
    .map_err(|e| NotesError::TaskStopped(e.to_string()))?
}

async fn run_pusher(
    config: Arc<NotesConfig>,
    remote: NotesRemote,
    mut written: watch::Receiver<u64>,
    lock: Arc<Mutex<()>>,
    metrics: NotesMetrics,
) {
    // Push at start too: notes written before a restart may never have reached the remote.
    let mut dirty = true;
    let mut failures = 0u32;
    let mut retry_at = Instant::now();
    let mut writer_done = false;
    loop {
        if dirty && Instant::now() >= retry_at {
            match push_round(config.clone(), remote.clone(), lock.clone()).await {
                Ok(round) => {
                    failures = 0;
                    dirty = false;
                    metrics.push_conflicts.inc_by(u64::from(round.conflicts));
                    if round.pushed {
                        metrics.pushes.inc();
                    }
                }
                Err(e) => {
                    failures += 1;
                    metrics.push_failures.inc();
                    if let NotesError::PushRejected { attempts, .. } = &e {
                        metrics.push_conflicts.inc_by(u64::from(*attempts));
                    }
                    let wait = push_backoff(
                        failures,
                        config.push_backoff_initial,
                        config.push_backoff_max,
                    );
                    retry_at = Instant::now() + wait;
                    tracing::warn!(url = %remote.url, error = %e, kind = e.kind(), retry_in = ?wait, "pushing notes failed");
                }
            }
        }
        if writer_done {
            break;
        }
        tokio::select! {
            changed = written.changed() => match changed {
                Ok(()) => dirty = true,
                // The writer stopped: one last attempt (if anything is unpushed), then stop.
                Err(_) => {
                    writer_done = true;
                    retry_at = Instant::now();
                }
            },
            _ = sleep_until(retry_at), if dirty => {}
        }
    }
}

async fn push_round(
    config: Arc<NotesConfig>,
    remote: NotesRemote,
    lock: Arc<Mutex<()>>,
) -> Result<super::push::PushRound, NotesError> {
    tokio::task::spawn_blocking(move || {
        let repo = config.open()?;
        let signature = config.signature()?;
        sync_notes_with_remote(
            &repo,
            &remote,
            &config.notes_ref,
            &signature,
            &lock,
            config.push_attempts,
        )
    })
    .await
    .map_err(|e| NotesError::TaskStopped(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{TaskPhase, TaskRunSpec, TaskRunStatus};
    use kube::runtime::{reflector, watcher};

    #[test]
    fn a_reflector_store_gives_the_states_by_task_run_name() {
        let (store, mut writer) = reflector::store::<TaskRun>();
        let mut tr = TaskRun::new(
            "task-42",
            TaskRunSpec {
                task_id: 42,
                service_name: "web".into(),
                agent_name: "coder".into(),
                context_version: 3,
                content_digest: String::new(),
                source_path: String::new(),
                suspend: false,
                priority: 0,
                markdown_files: vec![],
            },
        );
        tr.metadata.namespace = Some("default".into());
        tr.status = Some(TaskRunStatus {
            phase: Some(TaskPhase::Running),
            job_name: Some("web-42-v3".into()),
            context_version: Some(3),
            ..TaskRunStatus::default()
        });
        writer.apply_watcher_event(&watcher::Event::Apply(tr));
        let states = TaskStates::task_states(&store);
        assert_eq!(
            states.get("task-42"),
            Some(&TaskState {
                phase: Some(TaskPhase::Running),
                job_name: Some("web-42-v3".into()),
                message: None,
                context_version: Some(3),
                ..TaskState::default()
            })
        );
    }
}
