//! One Job's life in the runner: a Job in, its attempts run (as local processes or simulated)
//! and its status written through the status subresource, attempt by attempt, until it ends,
//! is deleted, or the runner shuts down.

use super::ANNOTATION_LOG_PATH;
use super::plan::{self, PlanError};
use super::pod::{self, ANNOTATION_POD_LOG_END, ANNOTATION_POD_LOG_START, PodState};
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
    /// `spec.suspend` turned true: kill the process group, delete the Pod, write the
    /// Suspended condition.
    Suspended,
    /// The Job disappeared while the runner wrote to it (internal).
    Gone,
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
    /// The Job is suspended: its Suspended condition is written, nothing runs.
    Suspended,
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

/// Follows `job` to its end, or until it is suspended. `stop` fires on deletion, shutdown or
/// suspension.
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
    let job_status = JobStatusWriter {
        api: &api,
        name: &name,
        key: &key,
    };

    if is_suspended(&job) {
        return suspended(&job_status, &mut run).await;
    }
    run.resume_suspended(Timestamp::now());

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

    run.begin(Timestamp::now());
    loop {
        let now = Timestamp::now();
        if let Step::Finish(terminal) = run.next_step(limits, now) {
            run.finish(terminal, now);
            return Ok(match job_status.write(&run).await? {
                Written::Done => Ending::Finished,
                Written::Gone => Ending::Gone,
            });
        }
        if run.retries() > 0 {
            // A retry: show the failed attempt (active 0) while waiting out the backoff, as the
            // Job controller does before it creates the next pod.
            if job_status.write(&run).await? == Written::Gone {
                return Ok(Ending::Gone);
            }
            let backoff = retry_backoff(config.retry_backoff, run.retries());
            let wake = earliest(Instant::now() + backoff, deadline_instant(&run, limits));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                s = &mut stop => return stopped(&job_status, &mut run, s).await,
            }
            if let Step::Finish(_) = run.next_step(limits, Timestamp::now()) {
                continue;
            }
        }
        let deadline = deadline_instant(&run, limits);
        let attempt = run.failed + run.succeeded + 1;
        let outcome = match &config.mode {
            RunnerMode::Simulated { delay, outcome } => {
                run.start_attempt(Timestamp::now(), true);
                if job_status.write(&run).await? == Written::Gone {
                    return Ok(Ending::Gone);
                }
                simulate(*delay, *outcome, deadline, &mut stop).await
            }
            RunnerMode::Process => {
                let log_path = log_path.as_deref().unwrap_or(Path::new("/dev/null"));
                let attempt = Attempt {
                    client: &client,
                    config,
                    job: &job,
                    number: attempt,
                    log_path,
                    deadline,
                };
                match run_process(&attempt, &job_status, &mut run, &mut stop).await? {
                    Err(Stop::Gone) => return Ok(Ending::Gone),
                    other => other,
                }
            }
        };
        match outcome {
            Ok(outcome) => run.end_attempt(outcome),
            Err(s) => return stopped(&job_status, &mut run, Ok(s)).await,
        }
    }
}

fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// Writes the Suspended condition (no active Pod) and ends following the Job.
async fn suspended(
    job_status: &JobStatusWriter<'_>,
    run: &mut JobRun,
) -> Result<Ending, DriveError> {
    run.suspend(Timestamp::now());
    Ok(match job_status.write(run).await? {
        Written::Done => Ending::Suspended,
        Written::Gone => Ending::Gone,
    })
}

/// What a stop means for the Job: a suspension writes its condition; deletion and shutdown
/// write nothing.
async fn stopped(
    job_status: &JobStatusWriter<'_>,
    run: &mut JobRun,
    stop: Result<Stop, oneshot::error::RecvError>,
) -> Result<Ending, DriveError> {
    match stop.unwrap_or(Stop::Shutdown) {
        Stop::Suspended => suspended(job_status, run).await,
        other => Ok(Ending::Stopped(other)),
    }
}

/// Writes one Job's status.
struct JobStatusWriter<'a> {
    api: &'a Api<Job>,
    name: &'a str,
    key: &'a str,
}

impl JobStatusWriter<'_> {
    async fn write(&self, run: &JobRun) -> Result<Written, DriveError> {
        write(self.api, self.name, self.key, &run.status()).await
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

/// One attempt's fixed inputs.
struct Attempt<'a> {
    client: &'a Client,
    config: &'a RunnerConfig,
    job: &'a Job,
    number: i32,
    log_path: &'a Path,
    deadline: Option<Instant>,
}

/// Runs one attempt as a local process, as the Job controller and the kubelet would: the Pod
/// is created first (a refusal, such as a missing ServiceAccount, is `FailedCreate`: a Warning
/// event on the Job, no process, a retry later); while a referenced ConfigMap or Secret is
/// missing the Pod waits (`CreateContainerConfigError`), active but not ready, until it
/// appears or the deadline passes; then the process runs, and its termination message lands
/// on the Pod. Anything else that stops the process from starting (no command, a program that
/// does not exist) is written to the log and counts as a failed attempt.
async fn run_process(
    a: &Attempt<'_>,
    job_status: &JobStatusWriter<'_>,
    run: &mut JobRun,
    stop: &mut oneshot::Receiver<Stop>,
) -> Result<Result<AttemptOutcome, Stop>, DriveError> {
    let job = a.job;
    let open = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.log_path);
    let mut log = open.map_err(|source| DriveError::OpenLog {
        path: a.log_path.to_path_buf(),
        source,
    })?;
    let name = job.metadata.name.as_deref().unwrap_or("job");
    let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
    // The attempt's header line goes into the log once its Pod exists; the Pod's log starts
    // right after it (a log reader never sees the runner's line).
    let header = format!(
        "--- local runner: Job {namespace}/{name}, attempt {}, {} ---\n",
        a.number,
        Timestamp::now()
    );
    let log_start = log_len(&log) + header.len() as u64;
    let pod = match PodMirror::create(a.client, job, a.log_path, log_start).await {
        Ok(pod) => pod,
        Err(message) => {
            tracing::info!(job = %job_status.key, %message, "the Job's Pod cannot be created");
            record_failed_create(a.client, job, &message).await;
            return Ok(Ok(AttemptOutcome::NotCreated));
        }
    };
    let _ = log.write_all(header.as_bytes());
    run.start_attempt(Timestamp::now(), false);
    if job_status.write(run).await? == Written::Gone {
        return Ok(Err(Stop::Gone));
    }
    let created = Timestamp::now();
    let run_dir = match tempfile::Builder::new()
        .prefix(&format!("kube-envtest-{name}-"))
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            return finish_not_started(
                a,
                &pod,
                &mut log,
                format!("creating the run directory: {e}"),
            )
            .await;
        }
    };
    let plan = match prepare(a, &pod, run_dir.path(), created, stop).await {
        Ok(plan) => plan,
        Err(Prepared::NotStarted(why)) => return finish_not_started(a, &pod, &mut log, why).await,
        Err(Prepared::Killed(None)) => {
            pod.annotate(&[(ANNOTATION_POD_LOG_END, log_len(&log).to_string())])
                .await;
            let _ = writeln!(
                log,
                "--- killed: the Job's activeDeadlineSeconds passed ---"
            );
            pod.set(
                job,
                PodState::Exited {
                    started: created,
                    finished: Timestamp::now(),
                    exit_code: None,
                    message: None,
                },
            )
            .await;
            return Ok(Ok(AttemptOutcome::DeadlineExceeded));
        }
        Err(Prepared::Killed(Some(s))) => {
            pod.annotate(&[(ANNOTATION_POD_LOG_END, log_len(&log).to_string())])
                .await;
            pod.stopped(job, s, created).await;
            return Ok(Err(s));
        }
    };
    let started = Timestamp::now();
    let child = process::spawn(
        &ProcessSpec {
            program: &plan.program,
            args: &plan.args,
            env: &plan.env,
            cwd: &plan.cwd,
        },
        &log,
    );
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            return finish_not_started(
                a,
                &pod,
                &mut log,
                format!("starting {:?}: {e}", plan.program),
            )
            .await;
        }
    };
    run.ready = true;
    pod.set(job, PodState::Running { started }).await;
    if job_status.write(run).await? == Written::Gone {
        return Ok(Err(Stop::Gone));
    }
    let end = execute(a, child, stop).await;
    let finished = Timestamp::now();
    let log_end = log_len(&log);
    pod.annotate(&[(ANNOTATION_POD_LOG_END, log_end.to_string())])
        .await;
    let (line, result) = match &end {
        AttemptEnd::Exited(status) => {
            let outcome = match status {
                Ok(s) if s.success() => AttemptOutcome::Succeeded,
                _ => AttemptOutcome::Failed,
            };
            (format!("exited: {}", describe(status)), Ok(outcome))
        }
        AttemptEnd::Killed(None) => (
            "killed: the Job's activeDeadlineSeconds passed".to_string(),
            Ok(AttemptOutcome::DeadlineExceeded),
        ),
        AttemptEnd::Killed(Some(stop)) => (stop_line(*stop), Err(*stop)),
    };
    match &end {
        AttemptEnd::Killed(Some(s)) => pod.stopped(job, *s, started).await,
        _ => {
            let exit_code = match &end {
                AttemptEnd::Exited(status) => status.as_ref().ok().and_then(|s| s.code()),
                _ => None,
            };
            let file = read_prefix(&plan.termination_message, 1 << 20);
            let tail = read_range(a.log_path, log_start, log_end, 64 * 1024);
            let message =
                pod::termination_message(&file, &tail, exit_code != Some(0), plan.fallback_to_logs);
            pod.set(
                job,
                PodState::Exited {
                    started,
                    finished,
                    exit_code,
                    message: Some(message),
                },
            )
            .await;
        }
    }
    let _ = writeln!(log, "--- {line} ---");
    Ok(result)
}

fn stop_line(stop: Stop) -> String {
    match stop {
        Stop::Deleted | Stop::Gone => "killed: the Job was deleted".to_string(),
        Stop::Shutdown => "killed: the runner shut down".to_string(),
        Stop::Suspended => "killed: the Job was suspended".to_string(),
    }
}

fn log_len(log: &std::fs::File) -> u64 {
    log.metadata().map_or(0, |m| m.len())
}

/// The first `max` bytes of a file; nothing when it cannot be read.
fn read_prefix(path: &Path, max: u64) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(max).read_to_end(&mut out);
    }
    out
}

/// Bytes `start..end` of a file, at most the last `max` of them.
fn read_range(path: &Path, start: u64, end: u64, max: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let from = start.max(end.saturating_sub(max));
    let mut out = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = f.take(end.saturating_sub(from)).read_to_end(&mut out);
    }
    out
}

/// An attempt whose process never started: logged, the Pod failed, one failed attempt.
async fn finish_not_started(
    a: &Attempt<'_>,
    pod: &PodMirror,
    log: &mut std::fs::File,
    why: String,
) -> Result<Result<AttemptOutcome, Stop>, DriveError> {
    let _ = writeln!(log, "--- cannot run: {why} ---");
    pod.annotate(&[(ANNOTATION_POD_LOG_END, log_len(log).to_string())])
        .await;
    pod.set(
        a.job,
        PodState::NotStarted {
            at: Timestamp::now(),
        },
    )
    .await;
    Ok(Ok(AttemptOutcome::Failed))
}

/// The Job controller's `FailedCreate` event on the Job (core/v1, as kube-controller-manager
/// records it), best effort.
async fn record_failed_create(client: &Client, job: &Job, message: &str) {
    let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
    let name = job.metadata.name.as_deref().unwrap_or("job");
    let now = Timestamp::now();
    let now = Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "batch/v1", "kind": "Job", "name": name, "namespace": namespace,
            "uid": job.metadata.uid, "resourceVersion": job.metadata.resource_version,
        },
        "reason": "FailedCreate",
        "message": format!("Error creating: {message}"),
        "type": "Warning",
        "source": {"component": "job-controller"},
        "reportingComponent": "job-controller",
        "reportingInstance": "",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), namespace);
    let Ok(event) = serde_json::from_value(event) else {
        return;
    };
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(job = name, error = %e, "recording the FailedCreate event failed");
    }
}

/// Why an attempt's process did not get to start.
enum Prepared {
    NotStarted(String),
    /// Killed at the deadline (`None`) or on a stop, while waiting.
    Killed(Option<Stop>),
}

/// How often a waiting Pod looks for its missing ConfigMaps and Secrets again.
const SOURCE_RETRY: Duration = Duration::from_millis(500);

/// Plans the attempt and writes its files; while a referenced ConfigMap or Secret is missing
/// the Pod waits, as the kubelet retries a container whose config cannot be built.
async fn prepare(
    a: &Attempt<'_>,
    pod: &PodMirror,
    run_dir: &Path,
    since: Timestamp,
    stop: &mut oneshot::Receiver<Stop>,
) -> Result<plan::RunPlan, Prepared> {
    let namespace = a.job.metadata.namespace.as_deref().unwrap_or("default");
    let refs = plan::references(a.job);
    let mut shown: Option<PodState> = None;
    loop {
        let sources = workspace::fetch_sources(a.client, namespace, &refs)
            .await
            .map_err(|e| Prepared::NotStarted(format!("reading ConfigMaps and Secrets: {e}")))?;
        let state = match plan::plan_run(a.job, &sources, run_dir) {
            Ok(plan) => {
                workspace::write_files(&plan)
                    .map_err(|e| Prepared::NotStarted(format!("writing the mounted files: {e}")))?;
                return Ok(plan);
            }
            Err(e) => match waiting_reason(&e, namespace) {
                Some((reason, message)) => PodState::Waiting {
                    since,
                    reason,
                    message,
                },
                None => return Err(Prepared::NotStarted(e.to_string())),
            },
        };
        if shown.as_ref() != Some(&state) {
            pod.set(a.job, state.clone()).await;
            shown = Some(state);
        }
        tokio::select! {
            _ = tokio::time::sleep(SOURCE_RETRY) => {}
            _ = sleep_until_deadline(a.deadline) => return Err(Prepared::Killed(None)),
            s = &mut *stop => return Err(Prepared::Killed(Some(s.unwrap_or(Stop::Shutdown)))),
        }
    }
}

/// The kubelet's waiting reason and message for a plan that waits on a missing object: env
/// references are `CreateContainerConfigError` (`secret "x" not found`), volumes keep the
/// container `ContainerCreating`. `None` for errors that retrying cannot fix.
pub fn waiting_reason(e: &PlanError, namespace: &str) -> Option<(&'static str, Option<String>)> {
    match e {
        PlanError::Missing { by, .. } | PlanError::MissingKey { by, .. }
            if by.starts_with("volume ") =>
        {
            Some((pod::REASON_CONTAINER_CREATING, None))
        }
        PlanError::Missing { kind, name, .. } => Some((
            pod::REASON_CREATE_CONTAINER_CONFIG_ERROR,
            Some(format!("{} \"{name}\" not found", kind.to_lowercase())),
        )),
        PlanError::MissingKey {
            kind, name, key, ..
        } => Some((
            pod::REASON_CREATE_CONTAINER_CONFIG_ERROR,
            Some(format!(
                "couldn't find key {key} in {kind} {namespace}/{name}"
            )),
        )),
        _ => None,
    }
}

/// How an attempt's process ended.
enum AttemptEnd {
    Exited(std::io::Result<std::process::ExitStatus>),
    /// Killed at the deadline (`None`) or on a stop.
    Killed(Option<Stop>),
}

async fn execute(
    a: &Attempt<'_>,
    mut child: process::RunningProcess,
    stop: &mut oneshot::Receiver<Stop>,
) -> AttemptEnd {
    let grace = plan::grace_seconds(a.job)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(a.config.termination_grace, Duration::from_secs);
    tokio::select! {
        status = child.wait() => AttemptEnd::Exited(status),
        _ = sleep_until_deadline(a.deadline) => {
            child.terminate(grace).await;
            AttemptEnd::Killed(None)
        }
        s = &mut *stop => {
            child.terminate(grace).await;
            AttemptEnd::Killed(Some(s.unwrap_or(Stop::Shutdown)))
        }
    }
}

/// The Pod object of one attempt.
struct PodMirror {
    api: Api<Pod>,
    name: String,
}

impl PodMirror {
    /// Creates the attempt's Pod (Pending); `Err` carries the server's refusal.
    async fn create(
        client: &Client,
        job: &Job,
        log_path: &Path,
        log_start: u64,
    ) -> Result<PodMirror, String> {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let mut value = pod::pod_for(job);
        value["metadata"]["annotations"][pod::ANNOTATION_POD_LOG_PATH] =
            json!(log_path.to_string_lossy());
        value["metadata"]["annotations"][ANNOTATION_POD_LOG_START] = json!(log_start.to_string());
        let pod: Pod = serde_json::from_value(value).map_err(|e| e.to_string())?;
        match api.create(&PostParams::default(), &pod).await {
            Ok(created) => Ok(PodMirror {
                api,
                name: created.metadata.name.unwrap_or_default(),
            }),
            Err(kube::Error::Api(e)) => Err(e.message),
            Err(e) => Err(e.to_string()),
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

    async fn annotate(&self, annotations: &[(&str, String)]) {
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        let patch = json!({"metadata": {"annotations": map}});
        if let Err(e) = self
            .api
            .patch(&self.name, &patch_params(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(pod = %self.name, error = %e, "annotating the Pod failed");
        }
    }

    /// The attempt was stopped: a suspended Job's Pod is deleted (as the Job controller
    /// deletes active Pods), a deleted Job's is garbage-collected, at shutdown it ended.
    async fn stopped(&self, job: &Job, stop: Stop, started: Timestamp) {
        match stop {
            Stop::Suspended => {
                let _ = self.api.delete(&self.name, &Default::default()).await;
            }
            Stop::Shutdown => {
                self.set(
                    job,
                    PodState::Exited {
                        started,
                        finished: Timestamp::now(),
                        exit_code: None,
                        message: None,
                    },
                )
                .await;
            }
            Stop::Deleted | Stop::Gone => {}
        }
    }
}

fn describe(status: &std::io::Result<std::process::ExitStatus>) -> String {
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
