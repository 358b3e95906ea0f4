//! The local Job runner, a stand-in for kubelet and the Job controller: batch/v1 Jobs watched
//! through any API server in, local processes (or simulated runs) and Job status out.
//!
//! For each new Job the first container's command and args run as a local process in its own
//! process group; stdout and stderr go to `<log_dir>/<namespace>/<job>-<uid8>.log`, recorded on
//! the Job as the `orchestrator.io/log-path` annotation. Mounted ConfigMaps, Secrets and
//! emptyDirs are written under a private run directory, and each mountPath in the command,
//! args, env and workingDir is rewritten to its local directory ([`mounts`]). Status is written
//! through the status subresource exactly as the Job controller writes it ([`status`]).
//! Finished Jobs are never run again, also by a restarted runner.

pub mod driver;
pub mod heartbeat;
pub mod mounts;
pub mod plan;
pub mod pod;
pub mod process;
pub mod status;
pub mod workspace;

pub use heartbeat::runner_attached;

/// The annotation on a Job that names the local file holding its output.
pub const ANNOTATION_LOG_PATH: &str = "orchestrator.io/log-path";

use driver::{Ending, Stop};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// What the runner does with a Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerMode {
    /// Run the first container's command as a local process.
    Process,
    /// Run nothing: each attempt "takes" `delay` and ends with `outcome`. For benchmarks; one
    /// timer per running Job, no thread and no process.
    Simulated {
        delay: Duration,
        outcome: SimulatedOutcome,
    },
}

/// How a simulated attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedOutcome {
    Succeed,
    /// Every attempt fails, so the Job ends Failed with `BackoffLimitExceeded` after
    /// `backoffLimit + 1` attempts.
    Fail,
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub mode: RunnerMode,
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Where the per-Job log files go.
    pub log_dir: PathBuf,
    /// The wait before the first retry, doubled for each further one and capped at six
    /// minutes. Kubernetes uses 10 s; the default here is 1 s, for fast local feedback.
    pub retry_backoff: Duration,
    /// SIGTERM-to-SIGKILL grace when a process is stopped and the pod template sets no
    /// `terminationGracePeriodSeconds`.
    pub termination_grace: Duration,
}

impl RunnerConfig {
    /// Local processes in every namespace, logs in `log_dir`.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        RunnerConfig {
            mode: RunnerMode::Process,
            namespace: None,
            log_dir: log_dir.into(),
            retry_backoff: Duration::from_secs(1),
            termination_grace: Duration::from_secs(5),
        }
    }

    /// The simulated runner (nothing runs; no log files are written).
    pub fn simulated(delay: Duration, outcome: SimulatedOutcome) -> Self {
        RunnerConfig {
            mode: RunnerMode::Simulated { delay, outcome },
            ..RunnerConfig::new(std::env::temp_dir())
        }
    }
}

/// The local Job runner.
pub struct JobRunner;

impl JobRunner {
    /// Starts watching Jobs on a tokio task. Must be called inside a tokio runtime.
    pub fn start(client: Client, config: RunnerConfig) -> RunnerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let log_dir = config.log_dir.clone();
        let task = tokio::spawn(run(client, Arc::new(config), stop_rx));
        RunnerHandle {
            stop: stop_tx,
            task: Some(task),
            log_dir,
        }
    }
}

/// A running runner. `shutdown()` stops it cleanly; dropping it stops it in the background.
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    log_dir: PathBuf,
}

impl RunnerHandle {
    /// Stops watching, kills every running process (SIGTERM, then SIGKILL after the grace
    /// period) and returns once they are gone. Jobs that were running keep their status, so a
    /// later runner starts them again as a new attempt.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the Job runner task failed");
        }
    }

    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The watch loop: decides per Job event whether to start, stop or ignore, and owns one driver
/// task per running Job.
async fn run(client: Client, config: Arc<RunnerConfig>, mut stop: watch::Receiver<bool>) {
    let api: Api<Job> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut runner = Runner::default();
    let mut heartbeat = tokio::time::interval(heartbeat::RENEW_INTERVAL);
    type DriverResult = (String, u64, String, Result<Ending, driver::DriveError>);
    let mut drivers: JoinSet<DriverResult> = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = heartbeat.tick() => heartbeat::renew(&client).await,
            Some(done) = drivers.join_next(), if !drivers.is_empty() => match done {
                Ok((uid, generation, key, result)) => {
                    runner.driver_ended(&uid, generation, &key, result);
                }
                Err(e) => tracing::error!(error = %e, "a Job driver task failed"),
            },
            event = events.next() => match event {
                Some(Ok(event)) => {
                    for job in runner.on_event(event) {
                        let (tx, rx) = oneshot::channel();
                        let uid = job.metadata.uid.clone().unwrap_or_default();
                        let key = job_key(&job);
                        tracing::info!(job = %key, "starting Job");
                        runner.started += 1;
                        let generation = runner.started;
                        runner.running.insert(uid.clone(), (generation, tx));
                        let client = client.clone();
                        let config = config.clone();
                        drivers.spawn(async move {
                            let result = driver::drive_job(client, &config, job, rx).await;
                            (uid, generation, key, result)
                        });
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watching Jobs failed; retrying"),
                None => break,
            },
        }
    }
    for (_, (_, tx)) in runner.running.drain() {
        let _ = tx.send(Stop::Shutdown);
    }
    while let Some(done) = drivers.join_next().await {
        if let Ok((_, _, key, Err(e))) = done {
            tracing::warn!(job = %key, error = %e, "Job driver ended with an error at shutdown");
        }
    }
}

fn job_key(job: &Job) -> String {
    format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or_default(),
        job.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Which Jobs the runner follows. Keyed by uid, so a Job deleted and created again under the
/// same name is a new Job.
#[derive(Default)]
struct Runner {
    /// Jobs with a driver, and the channel that stops it.
    running: HashMap<String, (u64, oneshot::Sender<Stop>)>,
    /// Numbers the drivers, so that a stopped driver that ends late (a suspended Job resumed
    /// at once) does not take the entry of the driver that replaced it.
    started: u64,
    /// Jobs the runner is done with (finished, or given up on): never started again, even when
    /// a stale watch event shows them unfinished.
    done: HashSet<String>,
    /// Uids listed since the last watch restart, to find Jobs deleted while disconnected.
    relisted: Option<HashSet<String>>,
    /// Suspended Jobs whose Suspended condition is written (or being written): started again
    /// when `spec.suspend` turns false.
    suspended: HashSet<String>,
}

impl Runner {
    /// Applies one watch event; returns the Jobs to start.
    fn on_event(&mut self, event: watcher::Event<Job>) -> Vec<Job> {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(job) => {
                if let (Some(seen), Some(uid)) = (&mut self.relisted, &job.metadata.uid) {
                    seen.insert(uid.clone());
                }
                self.on_apply(job).into_iter().collect()
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.relisted.take() {
                    let gone: Vec<String> = self
                        .running
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.stop(&uid, Stop::Deleted);
                    }
                    self.done.retain(|uid| seen.contains(uid));
                    self.suspended.retain(|uid| seen.contains(uid));
                }
                Vec::new()
            }
            watcher::Event::Apply(job) => self.on_apply(job).into_iter().collect(),
            watcher::Event::Delete(job) => {
                if let Some(uid) = &job.metadata.uid {
                    self.stop(uid, Stop::Deleted);
                    self.done.remove(uid);
                    self.suspended.remove(uid);
                }
                Vec::new()
            }
        }
    }

    fn on_apply(&mut self, job: Job) -> Option<Job> {
        let uid = job.metadata.uid.clone()?;
        if job.metadata.deletion_timestamp.is_some() {
            self.stop(&uid, Stop::Deleted);
            return None;
        }
        if self.done.contains(&uid) {
            return None;
        }
        if job.status.as_ref().is_some_and(status::is_finished) {
            self.done.insert(uid);
            return None;
        }
        let suspend = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
        match (suspend, self.running.contains_key(&uid)) {
            // Suspending a running Job kills its process group; its driver writes the
            // Suspended condition.
            (true, true) => {
                self.stop(&uid, Stop::Suspended);
                self.suspended.insert(uid);
                None
            }
            (_, true) => None,
            // A suspended Job the runner has not written the condition for: a driver writes
            // it and ends.
            (true, false) => self.suspended.insert(uid).then_some(job),
            (false, false) => {
                self.suspended.remove(&uid);
                Some(job)
            }
        }
    }

    fn stop(&mut self, uid: &str, why: Stop) {
        if let Some((_, tx)) = self.running.remove(uid) {
            let _ = tx.send(why);
        }
    }

    fn driver_ended(
        &mut self,
        uid: &str,
        generation: u64,
        key: &str,
        result: Result<Ending, driver::DriveError>,
    ) {
        if self.running.get(uid).is_some_and(|(g, _)| *g == generation) {
            self.running.remove(uid);
        }
        match result {
            Ok(Ending::Finished) => {
                tracing::info!(job = %key, "Job finished");
                self.done.insert(uid.to_string());
            }
            Ok(Ending::AlreadyFinished) => {
                self.done.insert(uid.to_string());
            }
            Ok(Ending::Suspended) => {
                tracing::info!(job = %key, "Job suspended");
            }
            Ok(Ending::Stopped(_) | Ending::Gone) => {}
            Err(e) => {
                tracing::error!(job = %key, error = %e, "giving up on Job");
                self.done.insert(uid.to_string());
            }
        }
    }
}
