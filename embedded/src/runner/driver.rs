//! One Job's life in the runner: a Job in, its attempts run (as local processes or simulated)
//! and its status written through the status subresource, attempt by attempt, until it ends,
//! is deleted, or the runner shuts down.

use super::ANNOTATION_LOG_PATH;
use super::plan::{self, PlanError};
use super::pod::{self, PodState};
use super::process::{self, ProcessSpec};
use super::status::{AttemptOutcome, JobLimits, JobRun, Resume, Step};
use super::workspace;
use super::{RunnerConfig, RunnerMode, SimulatedOutcome};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The field manager of the runner's writes (kube-controller-manager in a real cluster).
pub const FIELD_MANAGER_RUNNER: &str = "orchestrator-runner";

/// How long a run waits for a referenced ConfigMap or Secret to appear (the controller may
/// create the Job a moment before its ConfigMap) before the attempt fails.
const SOURCE_WAIT: Duration = Duration::from_secs(5);

/// Kubernetes caps the Job controller's retry backoff at six minutes.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(360);

/// Why the runner stops following a Job before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The Job was deleted (or is being deleted): kill the process, write nothing.
    Deleted,
    /// The runner is shutting down: kill the process, write nothing, so that the next runner
    /// starts the attempt again.
    Shutdown,
}

/// How following a Job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The terminal status is written.
    Finished,
    /// The Job already carried a terminal condition: nothing was run.
    AlreadyFinished,
    /// Stopped by deletion or shutdown.
    Stopped(Stop),
    /// The Job disappeared while the runner wrote to it.
    Gone,
}

/// A failed write to the API server.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("writing the status of Job {job}")]
    WriteStatus {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("recording the log path on Job {job}")]
    AnnotateJob {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating log file {path}")]
    OpenLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Follows `job` to its end. `stop` fires on deletion or shutdown.
pub async fn drive_job(
    client: Client,
    config: &RunnerConfig,
    job: Job,
    mut stop: oneshot::Receiver<Stop>,
) -> Result<Ending, DriveError> {
    let limits = JobLimits::of(&job);
    let mut run = match JobRun::resume(job.status.as_ref()) {
        Resume::AlreadyFinished => return Ok(Ending::AlreadyFinished),
        Resume::Continue(run) => run,
    };
    let name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let api: Api<Job> = Api::namespaced(client.clone(), &namespace);

    let log_path = match &config.mode {
        RunnerMode::Process => {
            let path = log_path(&config.log_dir, &job);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| DriveError::OpenLog {
                    path: path.clone(),
                    source,
                })?;
            }
            if !has_annotation(&job, &path) {
                match annotate_log_path(&api, &name, &path).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Ending::Gone),
                    Err(source) => return Err(DriveError::AnnotateJob { job: key, source }),
                    Ok(()) => {}
                }
            }
            Some(path)
        }
        RunnerMode::Simulated { .. } => None,
    };

    loop {
        let now = Timestamp::now();
        if let Step::Finish(terminal) = run.next_step(limits, now) {
            run.finish(terminal, now);
            return Ok(match write(&api, &name, &key, &run.status()).await? {
                Written::Done => Ending::Finished,
                Written::Gone => Ending::Gone,
            });
        }
        if run.failed > 0 {
            // A retry: show the failed attempt (active 0) while waiting out the backoff, as the
            // Job controller does before it creates the next pod.
            if write(&api, &name, &key, &run.status()).await? == Written::Gone {
                return Ok(Ending::Gone);
            }
            let backoff = retry_backoff(config.retry_backoff, run.failed);
            let wake = earliest(Instant::now() + backoff, deadline_instant(&run, limits));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                s = &mut stop => return Ok(Ending::Stopped(s.unwrap_or(Stop::Shutdown))),
            }
            if let Step::Finish(_) = run.next_step(limits, Timestamp::now()) {
                continue;
            }
        }
        run.start_attempt(Timestamp::now());
        if write(&api, &name, &key, &run.status()).await? == Written::Gone {
            return Ok(Ending::Gone);
        }
        let deadline = deadline_instant(&run, limits);
        let attempt = run.failed + run.succeeded + 1;
        let outcome = match &config.mode {
            RunnerMode::Simulated { delay, outcome } => {
                simulate(*delay, *outcome, deadline, &mut stop).await
            }
            RunnerMode::Process => {
                let log_path = log_path.as_deref().unwrap_or(Path::new("/dev/null"));
                run_process(
                    &client, config, &job, attempt, log_path, deadline, &mut stop,
                )
                .await?
            }
        };
        match outcome {
            Ok(outcome) => run.end_attempt(outcome),
            Err(stopped) => return Ok(Ending::Stopped(stopped)),
        }
    }
}

/// `<log_dir>/<namespace>/<name>-<first 8 of uid>.log`: stable across runner restarts, distinct
/// for a Job deleted and created again under the same name.
pub fn log_path(log_dir: &Path, job: &Job) -> PathBuf {
    let uid = job.metadata.uid.as_deref().unwrap_or("nouid");
    let short: String = uid.chars().filter(|c| *c != '-').take(8).collect();
    log_dir
        .join(job.metadata.namespace.as_deref().unwrap_or("default"))
        .join(format!(
            "{}-{short}.log",
            job.metadata.name.as_deref().unwrap_or("job")
        ))
}

fn has_annotation(job: &Job, path: &Path) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_LOG_PATH))
        .is_some_and(|v| Path::new(v) == path)
}

async fn annotate_log_path(api: &Api<Job>, name: &str, path: &Path) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {"annotations": {ANNOTATION_LOG_PATH: path.to_string_lossy()}}});
    api.patch(name, &patch_params(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER_RUNNER.to_string()),
        ..PatchParams::default()
    }
}

/// The status as a merge patch that also clears what the new status leaves out (`active`
/// back to absent after an attempt), so the result equals `status` exactly.
pub fn status_patch(status: &JobStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        for key in [
            "active",
            "ready",
            "succeeded",
            "failed",
            "startTime",
            "completionTime",
            "conditions",
        ] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    json!({ "status": value })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Done,
    /// The Job no longer exists.
    Gone,
}

/// Writes the status; a few quick retries ride out a briefly unavailable server.
async fn write(
    api: &Api<Job>,
    name: &str,
    key: &str,
    status: &JobStatus,
) -> Result<Written, DriveError> {
    let patch = status_patch(status);
    let mut tries = 0;
    loop {
        match api
            .patch_status(name, &patch_params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(Written::Done),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Written::Gone),
            Err(source) if tries >= 4 => {
                return Err(DriveError::WriteStatus {
                    job: key.to_string(),
                    source,
                });
            }
            Err(e) => {
                tracing::debug!(job = key, error = %e, "status write failed; retrying");
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 << tries)).await;
            }
        }
    }
}

/// `base` doubled for every failure after the first, capped at six minutes.
pub fn retry_backoff(base: Duration, failed: i32) -> Duration {
    let doublings = u32::try_from(failed.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    base.saturating_mul(1 << doublings).min(MAX_RETRY_BACKOFF)
}

fn deadline_instant(run: &JobRun, limits: JobLimits) -> Option<Instant> {
    let deadline = run.deadline(limits)?;
    let left = deadline.duration_since(Timestamp::now());
    Some(Instant::now() + Duration::try_from(left).unwrap_or(Duration::ZERO))
}

fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    b.map_or(a, |b| a.min(b))
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn simulate(
    delay: Duration,
    outcome: SimulatedOutcome,
    deadline: Option<Instant>,
    stop: &mut oneshot::Receiver<Stop>,
) -> Result<AttemptOutcome, Stop> {
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(match outcome {
            SimulatedOutcome::Succeed => AttemptOutcome::Succeeded,
            SimulatedOutcome::Fail => AttemptOutcome::Failed,
        }),
        _ = sleep_until_deadline(deadline) => Ok(AttemptOutcome::DeadlineExceeded),
        s = stop => Err(s.unwrap_or(Stop::Shutdown)),
    }
}

/// Runs one attempt as a local process. Anything that stops the process from starting (a
/// missing ConfigMap, no command, a program that does not exist) is written to the log and
/// counts as a failed attempt, as a pod that cannot start counts in Kubernetes. A Pod object
/// mirrors the attempt (best effort: a failed Pod write never fails the Job).
async fn run_process(
    client: &Client,
    config: &RunnerConfig,
    job: &Job,
    attempt: i32,
    log_path: &Path,
    deadline: Option<Instant>,
    stop: &mut oneshot::Receiver<Stop>,
) -> Result<Result<AttemptOutcome, Stop>, DriveError> {
    let open = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path);
    let mut log = open.map_err(|source| DriveError::OpenLog {
        path: log_path.to_path_buf(),
        source,
    })?;
    let name = job.metadata.name.as_deref().unwrap_or("job");
    let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
    let _ = writeln!(
        log,
        "--- orchestrator local runner: Job {namespace}/{name}, attempt {attempt}, {} ---",
        Timestamp::now()
    );
    let pod = PodMirror::create(client, job).await;
    let started = Timestamp::now();
    let end = attempt_process(client, config, job, &log, deadline, stop).await;
    let finished = Timestamp::now();
    let (line, state, result) = match end {
        AttemptEnd::NotStarted(why) => (
            format!("cannot run: {why}"),
            Some(PodState::NotStarted { at: started }),
            Ok(AttemptOutcome::Failed),
        ),
        AttemptEnd::Exited(status) => {
            let outcome = match &status {
                Ok(s) if s.success() => AttemptOutcome::Succeeded,
                _ => AttemptOutcome::Failed,
            };
            let exit_code = status.as_ref().ok().and_then(|s| s.code());
            (
                format!("exited: {}", describe(status)),
                Some(PodState::Exited {
                    started,
                    finished,
                    exit_code,
                }),
                Ok(outcome),
            )
        }
        AttemptEnd::Killed(None) => (
            "killed: the Job's activeDeadlineSeconds passed".to_string(),
            Some(PodState::Exited {
                started,
                finished,
                exit_code: None,
            }),
            Ok(AttemptOutcome::DeadlineExceeded),
        ),
        AttemptEnd::Killed(Some(stop)) => (
            match stop {
                Stop::Deleted => "killed: the Job was deleted".to_string(),
                Stop::Shutdown => "killed: the runner shut down".to_string(),
            },
            // A deleted Job's Pod is garbage-collected; at shutdown, say it ended.
            (stop == Stop::Shutdown).then_some(PodState::Exited {
                started,
                finished,
                exit_code: None,
            }),
            Err(stop),
        ),
    };
    let _ = writeln!(log, "--- {line} ---");
    if let (Some(pod), Some(state)) = (&pod, state) {
        pod.set(job, state).await;
    }
    Ok(result)
}

/// How an attempt's process ended.
enum AttemptEnd {
    NotStarted(String),
    Exited(std::io::Result<std::process::ExitStatus>),
    /// Killed at the deadline (`None`) or on a stop.
    Killed(Option<Stop>),
}

async fn attempt_process(
    client: &Client,
    config: &RunnerConfig,
    job: &Job,
    log: &std::fs::File,
    deadline: Option<Instant>,
    stop: &mut oneshot::Receiver<Stop>,
) -> AttemptEnd {
    let name = job.metadata.name.as_deref().unwrap_or("job");
    let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
    let run_dir = match tempfile::Builder::new()
        .prefix(&format!("orchestrator-{name}-"))
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => return AttemptEnd::NotStarted(format!("creating the run directory: {e}")),
    };
    let refs = plan::references(job);
    let give_up = Instant::now() + SOURCE_WAIT;
    let plan = loop {
        let sources = match workspace::fetch_sources(client, namespace, &refs).await {
            Ok(s) => s,
            Err(e) => {
                return AttemptEnd::NotStarted(format!("reading ConfigMaps and Secrets: {e}"));
            }
        };
        match plan::plan_run(job, &sources, run_dir.path()) {
            Ok(plan) => break plan,
            Err(PlanError::Missing { .. }) if Instant::now() < give_up => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    s = &mut *stop => return AttemptEnd::Killed(Some(s.unwrap_or(Stop::Shutdown))),
                }
            }
            Err(e) => return AttemptEnd::NotStarted(e.to_string()),
        }
    };
    if let Err(e) = workspace::write_files(&plan) {
        return AttemptEnd::NotStarted(format!("writing the mounted files: {e}"));
    }
    let spec = ProcessSpec {
        program: &plan.program,
        args: &plan.args,
        env: &plan.env,
        cwd: &plan.cwd,
    };
    let mut child = match process::spawn(&spec, log) {
        Ok(child) => child,
        Err(e) => return AttemptEnd::NotStarted(format!("starting {:?}: {e}", plan.program)),
    };
    let grace = plan::grace_seconds(job)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(config.termination_grace, Duration::from_secs);
    // The run directory lives until the process group is gone.
    tokio::select! {
        status = child.wait() => AttemptEnd::Exited(status),
        _ = sleep_until_deadline(deadline) => {
            child.terminate(grace).await;
            AttemptEnd::Killed(None)
        }
        s = &mut *stop => {
            child.terminate(grace).await;
            AttemptEnd::Killed(Some(s.unwrap_or(Stop::Shutdown)))
        }
    }
}

/// The Pod object of one attempt, written best effort.
struct PodMirror {
    api: Api<Pod>,
    name: String,
}

impl PodMirror {
    async fn create(client: &Client, job: &Job) -> Option<PodMirror> {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let pod: Pod = serde_json::from_value(pod::pod_for(job)).ok()?;
        match api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let name = created.metadata.name?;
                let mirror = PodMirror { api, name };
                mirror
                    .set(
                        job,
                        PodState::Running {
                            started: Timestamp::now(),
                        },
                    )
                    .await;
                Some(mirror)
            }
            Err(e) => {
                tracing::debug!(error = %e, "creating the attempt's Pod failed; going on without");
                None
            }
        }
    }

    async fn set(&self, job: &Job, state: PodState) {
        let patch = pod::pod_status_patch(job, state);
        if let Err(e) = self
            .api
            .patch_status(&self.name, &patch_params(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(pod = %self.name, error = %e, "writing the Pod's status failed");
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "unknown status".to_string(),
        },
        Err(e) => format!("waiting failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        assert_eq!(retry_backoff(base, 1), Duration::from_secs(1));
        assert_eq!(retry_backoff(base, 2), Duration::from_secs(2));
        assert_eq!(retry_backoff(base, 4), Duration::from_secs(8));
        assert_eq!(retry_backoff(base, 100), MAX_RETRY_BACKOFF);
        assert_eq!(retry_backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn the_status_patch_clears_fields_the_status_no_longer_has() {
        let patch = status_patch(&JobStatus {
            failed: Some(1),
            ready: Some(0),
            ..JobStatus::default()
        });
        assert_eq!(patch["status"]["failed"], json!(1));
        assert_eq!(patch["status"]["active"], Value::Null);
        assert!(
            patch["status"]
                .as_object()
                .is_some_and(|m| m.contains_key("active"))
        );
    }

    #[test]
    fn log_paths_are_per_namespace_name_and_uid() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "web-1-v1", "namespace": "tasks", "uid": "1234abcd-ef00-0000"}
        }))
        .expect("job");
        assert_eq!(
            log_path(Path::new("/logs"), &job),
            PathBuf::from("/logs/tasks/web-1-v1-1234abcd.log")
        );
    }
}
