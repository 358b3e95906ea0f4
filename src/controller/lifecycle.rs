//! Where a task is in its life: the TaskRun's decisions (suspend, cancel, queue slot), its
//! current Job, that Job's Pods and Job events in, phase + reason + message + result + Pod name
//! out; and, with the clock passed in, whether a blocked task is Stalled. Pure.
//!
//! `Running` only when a Pod runs (Job `ready` ≥ 1 or a Pod in phase Running); otherwise
//! `Pending` with what blocks it, as the kubelet, scheduler and Job controller say it:
//! `FailedCreate` (a Job event), `Unschedulable` (the PodScheduled condition),
//! `ImagePullBackOff`/`ErrImagePull`/`CreateContainerConfigError` (the container's waiting
//! state). A failed Job's message names why its last attempt failed (exit code and reason).

use super::reasons::*;
use crate::crd::{MAX_RESULT_BYTES, TaskPhase};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// One event about the Job (core/v1 or events.k8s.io/v1, as the Job controller records them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// `FailedCreate`, `SuccessfulCreate`, …
    pub reason: String,
    pub message: String,
    /// `Warning` or `Normal`.
    pub type_: String,
}

/// A cancel that applies to the current attempt (see [`super::operations::cancel_applies`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancel {
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

/// Why a task waits with no Job: its place in the queue (see [`super::queue`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSlot {
    /// 1-based place among the tasks waiting for the same limit.
    pub position: usize,
    pub waiting: usize,
    /// What is full, e.g. `agent claude-code runs 5 of maxConcurrent 5`.
    pub limit: String,
}

/// What the decision reads. `job` is the current attempt's Job, `pods` its Pods (any order),
/// `events` its events.
#[derive(Clone, Debug, Default)]
pub struct LifecycleInput<'a> {
    pub suspend: bool,
    pub cancel: Option<&'a Cancel>,
    /// Set when the queue holds the task back and no Job exists yet.
    pub queued: Option<&'a QueueSlot>,
    pub job: Option<&'a Job>,
    pub pods: &'a [Pod],
    pub events: &'a [JobEvent],
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub phase: TaskPhase,
    /// One of the reasons in [`super::reasons`].
    pub reason: &'static str,
    pub message: String,
    /// The latest Pod's name, when the Job has one: what `orchestrator logs` reads.
    pub pod_name: Option<String>,
    /// The agent's termination message (or, on failure, the kubelet's log fallback), cut to
    /// 4 KiB.
    pub result: Option<String>,
}

/// Waiting reasons of a container that block a Pod until someone fixes something.
const BLOCKING_WAITING_REASONS: &[&str] = &[
    REASON_IMAGE_PULL_BACK_OFF,
    REASON_ERR_IMAGE_PULL,
    REASON_CREATE_CONTAINER_CONFIG_ERROR,
    "CreateContainerError",
    "InvalidImageName",
];

pub fn lifecycle(input: &LifecycleInput<'_>) -> Lifecycle {
    let job_name = input
        .job
        .and_then(|j| j.metadata.name.clone())
        .unwrap_or_default();
    let latest = latest_pod(input.pods);
    let pod_name = latest.and_then(|p| p.metadata.name.clone());
    let terminated = latest.and_then(terminated_state);
    let result = terminated
        .and_then(|t| t.message.as_deref())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(fit_result);
    let decided = |phase, reason, message: String| Lifecycle {
        phase,
        reason,
        message,
        pod_name: pod_name.clone(),
        result: result.clone(),
    };
    let terminal = input.job.and_then(job_terminal);

    // A Job that finished before a cancel came stays Succeeded; a cancel wins over a failure
    // (stopping the Job may itself fail it).
    if let Some((TaskPhase::Succeeded, reason, _)) = &terminal {
        return decided(
            TaskPhase::Succeeded,
            reason,
            format!("Job {job_name} succeeded"),
        );
    }
    if let Some(cancel) = input.cancel {
        return decided(
            TaskPhase::Failed,
            REASON_CANCELLED,
            format!("cancelled by {} at {}", cancel.by, cancel.at),
        );
    }
    if let Some((phase, reason, condition)) = terminal {
        let mut message = format!("Job {job_name} failed: {condition}");
        if let Some(last) = latest.and_then(last_attempt) {
            message.push_str("; ");
            message.push_str(&last);
        }
        return decided(phase, reason, message);
    }
    let job_suspended = input
        .job
        .and_then(|j| j.spec.as_ref())
        .and_then(|s| s.suspend)
        .unwrap_or(false);
    if input.suspend || job_suspended {
        let what = if input.job.is_some() {
            format!("Job {job_name} is suspended")
        } else {
            "no Job runs".to_string()
        };
        return decided(
            TaskPhase::Pending,
            REASON_SUSPENDED,
            format!("{what}: task.yaml says suspend: true; remove it (in a commit) to resume"),
        );
    }
    let Some(job) = input.job else {
        return match input.queued {
            Some(slot) => decided(
                TaskPhase::Pending,
                REASON_QUEUED,
                format!(
                    "queued: position {} of {} waiting; {}",
                    slot.position, slot.waiting, slot.limit
                ),
            ),
            None => decided(
                TaskPhase::Pending,
                REASON_PENDING,
                "no Job yet; the controller creates it".to_string(),
            ),
        };
    };
    let ready = job.status.as_ref().and_then(|s| s.ready).unwrap_or(0);
    if ready >= 1 || latest.is_some_and(is_running) {
        let pod = pod_name.as_deref().unwrap_or("its Pod");
        return decided(
            TaskPhase::Running,
            REASON_RUNNING,
            format!("Job {job_name} is running (Pod {pod})"),
        );
    }
    if let Some(pod) = latest {
        let name = pod_name.as_deref().unwrap_or_default();
        if let Some((reason, message)) = waiting_block(pod) {
            return decided(
                TaskPhase::Pending,
                reason,
                format!("Pod {name} cannot start: {reason}: {message}"),
            );
        }
        if let Some(message) = unschedulable(pod) {
            return decided(
                TaskPhase::Pending,
                REASON_UNSCHEDULABLE,
                format!("Pod {name} cannot be scheduled: {message}"),
            );
        }
        if let Some(last) = last_attempt(pod) {
            return decided(
                TaskPhase::Pending,
                REASON_JOB_CREATED,
                format!("Job {job_name}: {last}; waiting for the next attempt"),
            );
        }
        return decided(
            TaskPhase::Pending,
            REASON_JOB_CREATED,
            format!("Job {job_name} created; Pod {name} is starting"),
        );
    }
    if let Some(event) = input
        .events
        .iter()
        .rev()
        .find(|e| e.reason == REASON_FAILED_CREATE && e.type_ == "Warning")
    {
        return decided(
            TaskPhase::Pending,
            REASON_FAILED_CREATE,
            format!(
                "Job {job_name} cannot create its Pod: {}",
                event.message.trim()
            ),
        );
    }
    decided(
        TaskPhase::Pending,
        REASON_JOB_CREATED,
        format!("Job {job_name} created; waiting for its Pod"),
    )
}

/// The Job's terminal condition: phase, reason and `Reason: message` text.
fn job_terminal(job: &Job) -> Option<(TaskPhase, &'static str, String)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| {
            let text = match (c.reason.as_deref(), c.message.as_deref()) {
                (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
                (Some(r), _) => r.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => c.type_.clone(),
            };
            match c.type_.as_str() {
                "Complete" => Some((TaskPhase::Succeeded, REASON_SUCCEEDED, text)),
                "Failed" => Some((
                    TaskPhase::Failed,
                    match c.reason.as_deref() {
                        Some("BackoffLimitExceeded") => REASON_BACKOFF_LIMIT_EXCEEDED,
                        Some("DeadlineExceeded") => REASON_DEADLINE_EXCEEDED,
                        _ => REASON_FAILED,
                    },
                    text,
                )),
                _ => None,
            }
        })
}

/// The Pod created last (ties broken by name), i.e. the latest attempt.
pub fn latest_pod(pods: &[Pod]) -> Option<&Pod> {
    pods.iter().max_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    })
}

fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn terminated_state(pod: &Pod) -> Option<&ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref())
}

/// `attempt (Pod p) exited with code 1 (Error): <first line of its message>`.
fn last_attempt(pod: &Pod) -> Option<String> {
    let t = terminated_state(pod)?;
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut text = format!("last attempt (Pod {name}) exited with code {}", t.exit_code);
    if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty()) {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(line) = t
        .message
        .as_deref()
        .and_then(|m| m.lines().rev().map(str::trim).find(|l| !l.is_empty()))
    {
        text.push_str(": ");
        text.push_str(&cut(line, 200));
    }
    Some(text)
}

/// A container waiting for a reason that needs a fix, with the kubelet's message.
fn waiting_block(pod: &Pod) -> Option<(&'static str, String)> {
    let statuses = pod.status.as_ref()?;
    statuses
        .init_container_statuses
        .iter()
        .flatten()
        .chain(statuses.container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            let known = BLOCKING_WAITING_REASONS.iter().find(|r| **r == reason)?;
            let message = waiting
                .message
                .clone()
                .unwrap_or_else(|| format!("container {} is waiting", c.name));
            // The two image-pull reasons alternate; both are the image pull failing.
            let reason: &'static str = match *known {
                "InvalidImageName" => REASON_ERR_IMAGE_PULL,
                "CreateContainerError" => REASON_CREATE_CONTAINER_CONFIG_ERROR,
                r => r,
            };
            Some((reason, message))
        })
}

fn unschedulable(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| {
            c.message
                .clone()
                .unwrap_or_else(|| "no node fits it".to_string())
        })
}

/// A result of at most [`MAX_RESULT_BYTES`], cut at a character boundary with a marker.
pub fn fit_result(text: &str) -> String {
    if text.len() <= MAX_RESULT_BYTES {
        return text.to_string();
    }
    const MARK: &str = " […]";
    let mut end = MAX_RESULT_BYTES - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max_chars - 1).collect();
        s.push('…');
        s
    }
}

/// Whether a Pending reason means someone must fix something (it counts towards Stalled).
/// Queued and Suspended are decisions, not trouble.
pub fn is_blocking(phase: TaskPhase, reason: &str) -> bool {
    phase == TaskPhase::Pending && !matches!(reason, REASON_QUEUED | REASON_SUSPENDED)
}

/// The stall clock of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// Not blocked: Running, terminal, Queued or Suspended.
    Clear,
    /// Blocked since `since`, under the threshold.
    Blocked { since: Timestamp },
    /// Blocked since `since`, for longer than the threshold: the Stalled condition is True.
    Stalled { since: Timestamp },
}

/// `blocked_since` is when the task last became blocked (the caller keeps it, e.g. as the
/// lastTransitionTime of a False `Stalled` condition, which holds while the task stays blocked
/// whatever the blocking reason); `None` means it just became blocked now.
pub fn stall(
    phase: TaskPhase,
    reason: &str,
    blocked_since: Option<Timestamp>,
    now: Timestamp,
    threshold: Duration,
) -> Stall {
    if !is_blocking(phase, reason) {
        return Stall::Clear;
    }
    let since = blocked_since.unwrap_or(now);
    let blocked_for = now.as_millisecond().saturating_sub(since.as_millisecond());
    if blocked_for >= threshold.as_millis() as i64 {
        Stall::Stalled { since }
    } else {
        Stall::Blocked { since }
    }
}

#[cfg(test)]
mod tests;
