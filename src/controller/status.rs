//! The TaskRun's status: the previous status, what the controller observed and the time in, the
//! new status out. Pure; [`decide`] adds the one decision of a reconcile: whether to write it and
//! the one event (the transition a person cares about) to publish.
//!
//! Rules: within one run (same context version and Job) the phase only moves forward
//! (Pending → Running → Succeeded|Failed), so it never flaps; `attempts` never goes down; a
//! condition keeps its lastTransitionTime while its status holds; `lastUpdated` moves only when
//! something else changed.

use super::job_phase::JobState;
use super::job_phase::format_time;
use super::lifecycle::{Lifecycle, Stall, is_blocking, stall};
use super::reasons::*;
use crate::crd::{TaskPhase, TaskRunCondition, TaskRunStatus};
use k8s_openapi::jiff::Timestamp;

/// What the controller saw for the TaskRun's current context version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub generation: Option<i64>,
    pub context_version: i64,
    pub job_name: String,
    pub config_map_name: String,
    pub outcome: Outcome,
    /// What the Job's Pods say (see [`super::lifecycle`]): the phase short of terminal (Running
    /// only while a Pod runs), the reason and message of what blocks it, the Pod and the
    /// agent's result. `None` keeps the Job-only view.
    pub life: Option<Lifecycle>,
    /// Retries carried out for this content version, and the token of the latest (see
    /// [`super::operations::plan_attempt`]).
    pub retries: i32,
    pub retry_token: Option<String>,
    /// The profile's stallAfter: blocked this long, the Stalled condition turns True. `None`
    /// tracks no stall.
    pub stall_after: Option<std::time::Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `agentName` names no profile; the message names it and the known ones. No Job exists.
    AgentNotFound { message: String },
    /// The current version's Job as last seen; `superseded` names older Jobs that were still
    /// running and have just been stopped for it; `created` is set when this reconcile created
    /// the Job, to the agent it runs ("echo (local/shell)"); `young` when the Job was created
    /// less than [`PENDING_GRACE`] ago.
    Job {
        state: JobState,
        superseded: Vec<String>,
        created: Option<String>,
        young: bool,
    },
    /// The Job finished earlier and is gone (ttlSecondsAfterFinished); the recorded outcome stands.
    Finished,
}

/// The new status. `now` is RFC 3339.
pub fn task_run_status(
    previous: Option<&TaskRunStatus>,
    observation: &Observation,
    now: &str,
) -> TaskRunStatus {
    let prev = previous.cloned().unwrap_or_default();
    let same_run = prev.context_version == Some(observation.context_version)
        && prev.job_name.as_deref() == Some(observation.job_name.as_str());

    let mut next = match &observation.outcome {
        Outcome::Finished if same_run => {
            // Only what outlives the run may still arrive: the Pod's name and the result.
            let mut kept = prev.clone();
            if let Some(life) = &observation.life {
                kept.pod_name = life.pod_name.clone().or(kept.pod_name);
                kept.result = life.result.clone().or(kept.result);
            }
            kept
        }
        Outcome::AgentNotFound { message } => TaskRunStatus {
            phase: Some(TaskPhase::Failed),
            message: Some(message.clone()),
            ..TaskRunStatus::default()
        },
        Outcome::Finished => TaskRunStatus::default(),
        Outcome::Job {
            state, superseded, ..
        } => job_status(
            same_run.then_some(&prev),
            observation,
            state,
            superseded,
            observation.life.as_ref(),
        ),
    };
    next.context_version = Some(observation.context_version);
    next.observed_generation = observation.generation;
    next.retries = observation.retries;
    next.retry_token = observation.retry_token.clone();
    let reason = succeeded_reason(&observation.outcome, &next, &prev, same_run);
    next.conditions = conditions(
        next.phase.unwrap_or_default(),
        reason,
        next.message.as_deref(),
        &prev.conditions,
        now,
    );
    if let Some(threshold) = observation.stall_after {
        mark_stall(&mut next, &prev, now, threshold);
    }
    next.last_updated = prev.last_updated.clone();
    if next != prev {
        next.last_updated = Some(now.to_string());
    }
    next
}

/// Whether `next` differs from what the TaskRun holds: the status write to skip otherwise.
pub fn needs_write(previous: Option<&TaskRunStatus>, next: &TaskRunStatus) -> bool {
    previous != Some(next)
}

/// A queued TaskRun's place (`queued: position 3 of 40 waiting; ...`) is written again at most
/// this often. Every start moves every waiting TaskRun up one place, and each write triggers
/// that TaskRun's reconcile: written on every move, the places of N waiting TaskRuns cost N
/// writes per start, N² in all.
pub const QUEUE_POSITION_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// `previous` and `next` are both Queued and differ only in the message: the place, or how full
/// the limit is.
fn only_queue_place_moved(previous: &TaskRunStatus, next: &TaskRunStatus) -> bool {
    let queued = |s: &TaskRunStatus| s.reason.as_deref() == Some(REASON_QUEUED);
    if !(queued(previous) && queued(next)) {
        return false;
    }
    let without_message = |s: &TaskRunStatus| {
        let mut s = s.clone();
        s.message = None;
        s.last_updated = None;
        for c in &mut s.conditions {
            c.message = None;
        }
        s
    };
    without_message(previous) == without_message(next)
}

/// `previous` was written less than [`QUEUE_POSITION_REFRESH`] before `now`: a moved queue place
/// waits for the periodic look ([`super::reconcile::REQUEUE_QUEUED`]).
fn written_within_refresh(previous: &TaskRunStatus, now: &str) -> bool {
    let written = previous
        .last_updated
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    match (written, now.parse::<Timestamp>()) {
        (Some(written), Ok(now)) => {
            now.as_millisecond() - written.as_millisecond()
                < QUEUE_POSITION_REFRESH.as_millis() as i64
        }
        _ => false,
    }
}

/// The event of a transition a person cares about: the Job started (was created), older Jobs
/// were superseded, the run Succeeded, Failed, or cannot start (AgentNotFound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub reason: EventReason,
    pub note: String,
    /// The Job the event is about.
    pub job: Option<String>,
}

/// What one reconcile does after looking: the status it arrives at, whether to write it, and at
/// most one event. Pure; the reconcile carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub status: TaskRunStatus,
    pub write: bool,
    pub transition: Option<Transition>,
    /// A Pending status is held back for [`PENDING_GRACE`]: look again then.
    pub deferred: bool,
    /// Of the write, only a queued task's place moved ([`only_queue_place_moved`]): a write the
    /// reconcile may also hold back for the controller-wide refresh budget.
    pub place_only: bool,
}

/// A Job younger than this that has not started is not reported as Pending yet: most start
/// within it, and then the first status written is Running. One that takes longer is reported
/// Pending when the grace is over (the reconcile looks again then).
pub const PENDING_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The one decision of a reconcile. A young Job that has not started gets no status yet (see
/// [`PENDING_GRACE`]), so a run writes its status once per real transition: Running, then
/// Succeeded or Failed; unless it superseded an older Job, which the status says at once.
pub fn decide(previous: Option<&TaskRunStatus>, observation: &Observation, now: &str) -> Decision {
    let status = task_run_status(previous, observation, now);
    let (superseded, created, young) = match &observation.outcome {
        Outcome::Job {
            superseded,
            created,
            young,
            ..
        } => (superseded.as_slice(), created.as_deref(), *young),
        _ => (&[][..], None, false),
    };
    let deferred = superseded.is_empty() && young && status.phase == Some(TaskPhase::Pending);
    let place_only = previous.is_some_and(|p| only_queue_place_moved(p, &status));
    let write = !deferred
        && needs_write(previous, &status)
        && !(place_only && previous.is_some_and(|p| written_within_refresh(p, now)));
    let job = &observation.job_name;
    let transition = if !superseded.is_empty() {
        Some(Transition {
            reason: EventReason::JobSuperseded,
            note: format!(
                "Stopped Job {} (still running): superseded by context version {}; {}",
                superseded.join(", "),
                observation.context_version,
                match created {
                    Some(_) => format!("created Job {job}"),
                    None => format!("Job {job} runs it"),
                }
            ),
            job: Some(job.clone()),
        })
    } else if let Some(agent) = created {
        Some(Transition {
            reason: EventReason::JobCreated,
            note: format!("Created Job {job} running agent {agent}"),
            job: Some(job.clone()),
        })
    } else if write && stalled(&status) && !previous.is_some_and(stalled) {
        Some(Transition {
            reason: EventReason::Stalled,
            note: format!("Stalled: {}", status.message.clone().unwrap_or_default()),
            job: status.job_name.clone(),
        })
    } else if write && newly_terminal(previous, &status) {
        let phase = status.phase.unwrap_or_default();
        let reason = match (&observation.outcome, phase) {
            (Outcome::AgentNotFound { .. }, _) => EventReason::AgentNotFound,
            (_, TaskPhase::Succeeded) => EventReason::Succeeded,
            _ => EventReason::Failed,
        };
        Some(Transition {
            reason,
            note: status.message.clone().unwrap_or_else(|| phase.to_string()),
            job: status.job_name.clone(),
        })
    } else {
        None
    };
    Decision {
        status,
        write,
        transition,
        deferred,
        place_only,
    }
}

/// Blocked and past the stall threshold: the Stalled condition is True while the run goes on.
pub fn stalled(status: &TaskRunStatus) -> bool {
    !status.phase.unwrap_or_default().is_terminal()
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == CONDITION_STALLED && c.status == STATUS_TRUE)
}

/// When a blocked run turns Stalled: `None` unless it is blocked and not Stalled yet.
pub fn stall_due(
    status: &TaskRunStatus,
    now: Timestamp,
    threshold: std::time::Duration,
) -> Option<std::time::Duration> {
    let phase = status.phase.unwrap_or_default();
    let reason = status.reason.as_deref().unwrap_or_default();
    if !is_blocking(phase, reason) || stalled(status) {
        return None;
    }
    let since: Timestamp = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_STALLED)?
        .last_transition_time
        .parse()
        .ok()?;
    let blocked = now
        .as_millisecond()
        .saturating_sub(since.as_millisecond())
        .max(0) as u64;
    Some(std::time::Duration::from_millis(
        (threshold.as_millis() as u64).saturating_sub(blocked),
    ))
}

/// The Stalled condition of a run that is blocked (Pending for a reason someone must fix): False
/// with lastTransitionTime when it became blocked, then True with the blocking reason once that
/// is `threshold` ago. A run that is not blocked keeps the kstatus meaning (True when Failed).
fn mark_stall(
    next: &mut TaskRunStatus,
    prev: &TaskRunStatus,
    now: &str,
    threshold: std::time::Duration,
) {
    let phase = next.phase.unwrap_or_default();
    let reason = next.reason.clone().unwrap_or_default();
    if !is_blocking(phase, &reason) {
        return;
    }
    let Ok(now_ts) = now.parse::<Timestamp>() else {
        return;
    };
    let prev_stalled = prev
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_STALLED);
    let was_blocked = prev.context_version == next.context_version
        && prev.job_name == next.job_name
        && is_blocking(
            prev.phase.unwrap_or_default(),
            prev.reason.as_deref().unwrap_or_default(),
        );
    let since = prev_stalled
        .filter(|_| was_blocked)
        .and_then(|c| c.last_transition_time.parse::<Timestamp>().ok());
    let Some(condition) = next
        .conditions
        .iter_mut()
        .find(|c| c.type_ == CONDITION_STALLED)
    else {
        return;
    };
    match stall(phase, &reason, since, now_ts, threshold) {
        Stall::Stalled { .. } => {
            condition.status = STATUS_TRUE.to_string();
            condition.reason = Some(reason);
            condition.last_transition_time = prev_stalled
                .filter(|c| was_blocked && c.status == STATUS_TRUE)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.to_string());
        }
        Stall::Blocked { since } => {
            condition.status = STATUS_FALSE.to_string();
            condition.last_transition_time = if was_blocked {
                prev_stalled
                    .map(|c| c.last_transition_time.clone())
                    .unwrap_or_else(|| format_time(since))
            } else {
                now.to_string()
            };
        }
        Stall::Clear => {}
    }
}

/// `next` is terminal and `previous` did not record this very run as terminal already.
fn newly_terminal(previous: Option<&TaskRunStatus>, next: &TaskRunStatus) -> bool {
    let was_terminal = previous.is_some_and(|p| {
        p.context_version == next.context_version
            && p.job_name == next.job_name
            && p.phase.is_some_and(TaskPhase::is_terminal)
    });
    next.phase.is_some_and(TaskPhase::is_terminal) && !was_terminal
}

fn rank(phase: TaskPhase) -> u8 {
    match phase {
        TaskPhase::Pending => 0,
        TaskPhase::Running => 1,
        TaskPhase::Succeeded | TaskPhase::Failed => 2,
    }
}

fn job_status(
    prev: Option<&TaskRunStatus>,
    observation: &Observation,
    state: &JobState,
    superseded: &[String],
    life: Option<&Lifecycle>,
) -> TaskRunStatus {
    let prev_phase = prev.and_then(|p| p.phase);
    // The Job decides a terminal phase; short of it, the Pods do (Running only while one runs).
    let seen = match life {
        // A cancel stops the Job; unless it had succeeded already, the run is Failed.
        Some(l) if l.reason == REASON_CANCELLED => TaskPhase::Failed,
        Some(l) if !state.phase.is_terminal() && !l.phase.is_terminal() => l.phase,
        _ => state.phase,
    };
    // Forward only: a Job between two pod attempts (no pod active) stays Running; but a
    // suspended one is Pending again (its Pods are stopped).
    let suspended = life.is_some_and(|l| l.reason == REASON_SUSPENDED && seen == l.phase);
    let phase = match prev_phase {
        Some(p) if rank(p) > rank(seen) && (!suspended || p.is_terminal()) => p,
        _ => seen,
    };
    let kept = Some(phase) == prev_phase && phase != seen;
    let attempts = state.attempts.max(prev.map(|p| p.attempts).unwrap_or(0));
    let job = &observation.job_name;
    let pod_reason = life.filter(|l| l.phase == phase && phase == TaskPhase::Pending);
    let message = if kept {
        prev.and_then(|p| p.message.clone())
    } else {
        Some(match phase {
            TaskPhase::Pending if !superseded.is_empty() => format!(
                "Job {job} replaces superseded Job {}; waiting for it to start",
                superseded.join(", ")
            ),
            TaskPhase::Pending => match pod_reason {
                Some(l) if l.reason != REASON_JOB_CREATED || l.pod_name.is_some() => {
                    l.message.clone()
                }
                _ => format!("Job {job} created; waiting for it to start"),
            },
            TaskPhase::Running => match life.and_then(|l| l.pod_name.as_deref()) {
                Some(pod) => format!("Job {job} is running (Pod {pod})"),
                None => format!("Job {job} is running"),
            },
            TaskPhase::Succeeded => match &state.message {
                Some(m) => format!("Job {job} succeeded ({m})"),
                None => format!("Job {job} succeeded"),
            },
            // The lifecycle's message names the last attempt's exit code and reason.
            TaskPhase::Failed => match life.filter(|l| l.phase == TaskPhase::Failed) {
                Some(l) => l.message.clone(),
                None => match &state.message {
                    Some(m) => format!("Job {job} failed: {m}"),
                    None => format!("Job {job} failed"),
                },
            },
        })
    };
    let reason = if kept {
        prev.and_then(|p| p.reason.clone())
    } else {
        Some(match (phase, pod_reason) {
            (TaskPhase::Pending, _) if !superseded.is_empty() => REASON_SUPERSEDED.to_string(),
            (TaskPhase::Pending, Some(l)) => l.reason.to_string(),
            (TaskPhase::Pending, None) => REASON_JOB_CREATED.to_string(),
            (TaskPhase::Failed, _) => match life.filter(|l| l.phase == TaskPhase::Failed) {
                Some(l) => l.reason.to_string(),
                None => state.reason.to_string(),
            },
            _ => state.reason.to_string(),
        })
    };
    // The Pod of the latest attempt and the agent's result outlive the Pods (TTL, GC).
    let pod_name = life
        .and_then(|l| l.pod_name.clone())
        .or_else(|| prev.and_then(|p| p.pod_name.clone()));
    let result = life
        .and_then(|l| l.result.clone())
        .or_else(|| prev.and_then(|p| p.result.clone()));
    TaskRunStatus {
        phase: Some(phase),
        reason,
        job_name: Some(observation.job_name.clone()),
        pod_name,
        result,
        config_map_name: Some(observation.config_map_name.clone()),
        attempts,
        message,
        start_time: state
            .start_time
            .clone()
            .or_else(|| prev.and_then(|p| p.start_time.clone())),
        completion_time: state
            .completion_time
            .clone()
            .or_else(|| prev.and_then(|p| p.completion_time.clone())),
        ..TaskRunStatus::default()
    }
}

/// The `Succeeded` condition's reason.
fn succeeded_reason(
    outcome: &Outcome,
    next: &TaskRunStatus,
    prev: &TaskRunStatus,
    same_run: bool,
) -> &'static str {
    let previous_reason = || {
        prev.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_SUCCEEDED)
            .and_then(|c| c.reason.as_deref())
            .and_then(known_reason)
    };
    match outcome {
        Outcome::AgentNotFound { .. } => REASON_AGENT_NOT_FOUND,
        Outcome::Finished if same_run => previous_reason().unwrap_or(REASON_SUCCEEDED),
        Outcome::Finished => REASON_PENDING,
        Outcome::Job { .. } if next.reason.as_deref() == Some(REASON_CANCELLED) => REASON_CANCELLED,
        Outcome::Job {
            state, superseded, ..
        } => {
            let phase = next.phase.unwrap_or_default();
            if phase != state.phase {
                // The phase was kept from before; so is its reason.
                return previous_reason().unwrap_or(REASON_RUNNING);
            }
            if phase == TaskPhase::Pending && !superseded.is_empty() {
                REASON_SUPERSEDED
            } else {
                state.reason
            }
        }
    }
}

fn known_reason(reason: &str) -> Option<&'static str> {
    [
        REASON_PENDING,
        REASON_RUNNING,
        REASON_SUCCEEDED,
        REASON_FAILED,
        REASON_BACKOFF_LIMIT_EXCEEDED,
        REASON_DEADLINE_EXCEEDED,
        REASON_SUPERSEDED,
        REASON_AGENT_NOT_FOUND,
        REASON_CANCELLED,
    ]
    .into_iter()
    .find(|r| *r == reason)
}

/// Ready / Reconciling / Stalled (kstatus) and Succeeded (Tekton), in that order.
fn conditions(
    phase: TaskPhase,
    reason: &'static str,
    message: Option<&str>,
    previous: &[TaskRunCondition],
    now: &str,
) -> Vec<TaskRunCondition> {
    let truth = |b: bool| if b { STATUS_TRUE } else { STATUS_FALSE };
    let succeeded = match phase {
        TaskPhase::Succeeded => STATUS_TRUE,
        TaskPhase::Failed => STATUS_FALSE,
        TaskPhase::Pending | TaskPhase::Running => STATUS_UNKNOWN,
    };
    [
        (CONDITION_READY, truth(phase == TaskPhase::Succeeded)),
        (CONDITION_RECONCILING, truth(!phase.is_terminal())),
        (CONDITION_STALLED, truth(phase == TaskPhase::Failed)),
        (CONDITION_SUCCEEDED, succeeded),
    ]
    .into_iter()
    .map(|(type_, status)| {
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.to_string());
        TaskRunCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time,
            reason: Some(reason.to_string()),
            message: message.map(str::to_string),
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const T0: &str = "2026-01-01T10:00:00Z";
    const T1: &str = "2026-01-01T10:01:00Z";
    const T2: &str = "2026-01-01T10:02:00Z";

    fn state(phase: TaskPhase, reason: &'static str, attempts: i32) -> JobState {
        JobState {
            phase,
            reason,
            message: match reason {
                REASON_BACKOFF_LIMIT_EXCEEDED => Some("BackoffLimitExceeded: limit".into()),
                REASON_SUCCEEDED => Some("CompletionsReached".into()),
                _ => None,
            },
            attempts,
            start_time: (phase != TaskPhase::Pending).then(|| T0.to_string()),
            completion_time: phase.is_terminal().then(|| T1.to_string()),
        }
    }

    fn obs(version: i64, outcome: Outcome) -> Observation {
        Observation {
            generation: Some(version),
            context_version: version,
            job_name: format!("web-42-v{version}"),
            config_map_name: format!("web-42-v{version}-files"),
            outcome,
            life: None,
            retries: 0,
            retry_token: None,
            stall_after: None,
        }
    }

    fn job(version: i64, phase: TaskPhase, reason: &'static str, attempts: i32) -> Observation {
        obs(
            version,
            Outcome::Job {
                state: state(phase, reason, attempts),
                superseded: vec![],
                created: None,
                young: false,
            },
        )
    }

    fn condition<'a>(s: &'a TaskRunStatus, type_: &str) -> &'a TaskRunCondition {
        s.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn statuses(s: &TaskRunStatus) -> [(&str, &str); 4] {
        [
            CONDITION_READY,
            CONDITION_RECONCILING,
            CONDITION_STALLED,
            CONDITION_SUCCEEDED,
        ]
        .map(|t| {
            let c = condition(s, t);
            (c.status.as_str(), c.reason.as_deref().unwrap_or(""))
        })
    }

    #[test]
    fn conditions_table() {
        use TaskPhase::*;
        // (observation, phase, [Ready, Reconciling, Stalled, Succeeded] as (status, reason))
        let cases = [
            (
                job(1, Pending, REASON_PENDING, 0),
                Pending,
                [
                    ("False", "Pending"),
                    ("True", "Pending"),
                    ("False", "Pending"),
                    ("Unknown", "Pending"),
                ],
            ),
            (
                job(1, Running, REASON_RUNNING, 1),
                Running,
                [
                    ("False", "Running"),
                    ("True", "Running"),
                    ("False", "Running"),
                    ("Unknown", "Running"),
                ],
            ),
            (
                job(1, Succeeded, REASON_SUCCEEDED, 1),
                Succeeded,
                [
                    ("True", "Succeeded"),
                    ("False", "Succeeded"),
                    ("False", "Succeeded"),
                    ("True", "Succeeded"),
                ],
            ),
            (
                job(1, Failed, REASON_BACKOFF_LIMIT_EXCEEDED, 3),
                Failed,
                [
                    ("False", "BackoffLimitExceeded"),
                    ("False", "BackoffLimitExceeded"),
                    ("True", "BackoffLimitExceeded"),
                    ("False", "BackoffLimitExceeded"),
                ],
            ),
            (
                job(1, Failed, REASON_DEADLINE_EXCEEDED, 1),
                Failed,
                [
                    ("False", "DeadlineExceeded"),
                    ("False", "DeadlineExceeded"),
                    ("True", "DeadlineExceeded"),
                    ("False", "DeadlineExceeded"),
                ],
            ),
            (
                obs(
                    1,
                    Outcome::AgentNotFound {
                        message: "agent \"x\" is not defined; known agents: codex".into(),
                    },
                ),
                Failed,
                [
                    ("False", "AgentNotFound"),
                    ("False", "AgentNotFound"),
                    ("True", "AgentNotFound"),
                    ("False", "AgentNotFound"),
                ],
            ),
            (
                obs(
                    2,
                    Outcome::Job {
                        state: state(Pending, REASON_PENDING, 0),
                        superseded: vec!["web-42-v1".into()],
                        created: Some("echo (local/shell)".into()),
                        young: true,
                    },
                ),
                Pending,
                [
                    ("False", "Superseded"),
                    ("True", "Superseded"),
                    ("False", "Superseded"),
                    ("Unknown", "Superseded"),
                ],
            ),
        ];
        for (i, (o, phase, want)) in cases.into_iter().enumerate() {
            let s = task_run_status(None, &o, T0);
            assert_eq!(s.phase, Some(phase), "case {i}");
            assert_eq!(statuses(&s), want, "case {i}");
            assert_eq!(s.context_version, Some(o.context_version), "case {i}");
            assert_eq!(s.observed_generation, o.generation, "case {i}");
            assert_eq!(s.last_updated.as_deref(), Some(T0), "case {i}");
        }
    }

    #[test]
    fn messages_name_the_job_and_the_reason() {
        use TaskPhase::*;
        let cases = [
            (
                job(1, Pending, REASON_PENDING, 0),
                "Job web-42-v1 created; waiting for it to start",
            ),
            (
                job(1, Running, REASON_RUNNING, 1),
                "Job web-42-v1 is running",
            ),
            (
                job(1, Succeeded, REASON_SUCCEEDED, 1),
                "Job web-42-v1 succeeded (CompletionsReached)",
            ),
            (
                job(1, Failed, REASON_BACKOFF_LIMIT_EXCEEDED, 3),
                "Job web-42-v1 failed: BackoffLimitExceeded: limit",
            ),
            (
                obs(
                    2,
                    Outcome::Job {
                        state: state(Pending, REASON_PENDING, 0),
                        superseded: vec!["web-42-v1".into()],
                        created: Some("echo (local/shell)".into()),
                        young: true,
                    },
                ),
                "Job web-42-v2 replaces superseded Job web-42-v1; waiting for it to start",
            ),
        ];
        for (o, want) in cases {
            let s = task_run_status(None, &o, T0);
            assert_eq!(s.message.as_deref(), Some(want));
            assert_eq!(
                condition(&s, CONDITION_SUCCEEDED).message.as_deref(),
                Some(want)
            );
        }
        let agent = task_run_status(
            None,
            &obs(
                1,
                Outcome::AgentNotFound {
                    message: "no agent".into(),
                },
            ),
            T0,
        );
        assert_eq!(
            (agent.job_name, agent.config_map_name),
            (None, None),
            "no Job for an unknown agent"
        );
    }

    #[test]
    fn no_flapping_and_attempts_only_grow_within_a_run() {
        use TaskPhase::*;
        let running = task_run_status(None, &job(1, Running, REASON_RUNNING, 1), T0);
        // The first pod failed and the next is not up yet: the Job reports no active pod.
        let between = task_run_status(Some(&running), &job(1, Pending, REASON_PENDING, 0), T1);
        assert_eq!(between.phase, Some(Running));
        assert_eq!(between.attempts, 1);
        assert_eq!(
            condition(&between, CONDITION_SUCCEEDED).reason.as_deref(),
            Some(REASON_RUNNING)
        );
        assert!(
            !needs_write(Some(&running), &between),
            "nothing but time changed"
        );
        assert_eq!(between.last_updated.as_deref(), Some(T0));

        let second = task_run_status(Some(&between), &job(1, Running, REASON_RUNNING, 2), T1);
        assert!(needs_write(Some(&between), &second));
        assert_eq!(second.attempts, 2);
        assert_eq!(second.last_updated.as_deref(), Some(T1));

        // A finished run never goes back, even if the Job is seen stale.
        let done = task_run_status(Some(&second), &job(1, Succeeded, REASON_SUCCEEDED, 2), T2);
        let stale = task_run_status(Some(&done), &job(1, Running, REASON_RUNNING, 1), T2);
        assert_eq!(stale, done);
    }

    #[test]
    fn last_transition_time_is_kept_while_a_condition_holds() {
        use TaskPhase::*;
        let pending = task_run_status(None, &job(1, Pending, REASON_PENDING, 0), T0);
        let running = task_run_status(Some(&pending), &job(1, Running, REASON_RUNNING, 1), T1);
        // Ready stayed False, Reconciling True, Stalled False, Succeeded Unknown: all keep T0.
        for c in &running.conditions {
            assert_eq!(c.last_transition_time, T0, "{}", c.type_);
        }
        let done = task_run_status(Some(&running), &job(1, Succeeded, REASON_SUCCEEDED, 1), T2);
        let ltt = |t| condition(&done, t).last_transition_time.as_str();
        assert_eq!(ltt(CONDITION_READY), T2);
        assert_eq!(ltt(CONDITION_RECONCILING), T2);
        assert_eq!(ltt(CONDITION_STALLED), T0);
        assert_eq!(ltt(CONDITION_SUCCEEDED), T2);
        assert_eq!(done.start_time.as_deref(), Some(T0));
        assert_eq!(done.completion_time.as_deref(), Some(T1));
    }

    #[test]
    fn a_new_context_version_starts_a_new_run() {
        use TaskPhase::*;
        let done = task_run_status(None, &job(1, Failed, REASON_BACKOFF_LIMIT_EXCEEDED, 3), T0);
        let v2 = task_run_status(Some(&done), &job(2, Pending, REASON_PENDING, 0), T1);
        assert_eq!(v2.phase, Some(Pending));
        assert_eq!(v2.attempts, 0);
        assert_eq!(v2.job_name.as_deref(), Some("web-42-v2"));
        assert_eq!(v2.completion_time, None);
        assert_eq!(v2.context_version, Some(2));
        assert_eq!(condition(&v2, CONDITION_STALLED).status, STATUS_FALSE);
        assert_eq!(condition(&v2, CONDITION_STALLED).last_transition_time, T1);
    }

    #[test]
    fn a_finished_job_that_is_gone_keeps_the_recorded_outcome() {
        use TaskPhase::*;
        let done = task_run_status(None, &job(1, Succeeded, REASON_SUCCEEDED, 1), T0);
        let gone = task_run_status(Some(&done), &obs(1, Outcome::Finished), T2);
        assert_eq!(gone, done);
        assert!(!needs_write(Some(&done), &gone));
    }

    #[test]
    fn the_same_observation_twice_needs_no_write() {
        use TaskPhase::*;
        for o in [
            job(1, Pending, REASON_PENDING, 0),
            job(1, Running, REASON_RUNNING, 1),
            job(1, Failed, REASON_DEADLINE_EXCEEDED, 1),
            obs(
                1,
                Outcome::AgentNotFound {
                    message: "m".into(),
                },
            ),
        ] {
            let first = task_run_status(None, &o, T0);
            let again = task_run_status(Some(&first), &o, T2);
            assert_eq!(again, first);
            assert!(!needs_write(Some(&first), &again));
            assert!(needs_write(None, &first));
        }
        // A new generation is a change worth writing.
        let first = task_run_status(None, &job(1, Running, REASON_RUNNING, 1), T0);
        let mut o = job(1, Running, REASON_RUNNING, 1);
        o.generation = Some(7);
        let next = task_run_status(Some(&first), &o, T1);
        assert!(needs_write(Some(&first), &next));
        assert_eq!(next.observed_generation, Some(7));
    }

    /// (case, previous, observation, write, event reason and note)
    type DecideCase<'a> = (
        &'a str,
        Option<&'a TaskRunStatus>,
        Observation,
        bool,
        Option<(EventReason, &'a str)>,
    );

    #[test]
    fn one_decision_per_reconcile_one_write_and_one_event_per_transition() {
        use TaskPhase::*;
        let created = |version, superseded: Vec<String>| {
            obs(
                version,
                Outcome::Job {
                    state: state(Pending, REASON_PENDING, 0),
                    superseded,
                    created: Some("echo (local/shell)".into()),
                    young: true,
                },
            )
        };
        let young_pending = || {
            obs(
                1,
                Outcome::Job {
                    state: state(Pending, REASON_PENDING, 0),
                    superseded: vec![],
                    created: None,
                    young: true,
                },
            )
        };
        let running = task_run_status(None, &job(1, Running, REASON_RUNNING, 1), T0);
        let done = task_run_status(Some(&running), &job(1, Succeeded, REASON_SUCCEEDED, 1), T1);
        let failed = task_run_status(
            Some(&running),
            &job(1, Failed, REASON_BACKOFF_LIMIT_EXCEEDED, 1),
            T1,
        );
        let not_found = obs(
            1,
            Outcome::AgentNotFound {
                message: "agent \"x\" is not defined".into(),
            },
        );
        let cases: Vec<DecideCase> = vec![
            (
                "created: no status until the Job reports, one JobCreated",
                None,
                created(1, vec![]),
                false,
                Some((
                    EventReason::JobCreated,
                    "Created Job web-42-v1 running agent echo (local/shell)",
                )),
            ),
            (
                "a young Job not started, seen again: still no status",
                None,
                young_pending(),
                false,
                None,
            ),
            (
                "a Job not started after the grace: Pending is written",
                None,
                job(1, Pending, REASON_PENDING, 0),
                true,
                None,
            ),
            (
                "first status of the Job: a write, no event",
                None,
                job(1, Running, REASON_RUNNING, 1),
                true,
                None,
            ),
            (
                "nothing changed: nothing",
                Some(&running),
                job(1, Running, REASON_RUNNING, 1),
                false,
                None,
            ),
            (
                "Succeeded: a write and one event",
                Some(&running),
                job(1, Succeeded, REASON_SUCCEEDED, 1),
                true,
                Some((
                    EventReason::Succeeded,
                    "Job web-42-v1 succeeded (CompletionsReached)",
                )),
            ),
            (
                "Failed: a write and one event",
                Some(&running),
                job(1, Failed, REASON_BACKOFF_LIMIT_EXCEEDED, 1),
                true,
                Some((
                    EventReason::Failed,
                    "Job web-42-v1 failed: BackoffLimitExceeded: limit",
                )),
            ),
            (
                "Succeeded seen again: nothing",
                Some(&done),
                job(1, Succeeded, REASON_SUCCEEDED, 1),
                false,
                None,
            ),
            (
                "Failed seen again: nothing",
                Some(&failed),
                job(1, Failed, REASON_BACKOFF_LIMIT_EXCEEDED, 1),
                false,
                None,
            ),
            (
                "superseded: the status says so at once, one event naming both Jobs",
                Some(&running),
                created(2, vec!["web-42-v1".into()]),
                true,
                Some((
                    EventReason::JobSuperseded,
                    "Stopped Job web-42-v1 (still running): superseded by context version 2; created Job web-42-v2",
                )),
            ),
            (
                "unknown agent: stalled, one event",
                None,
                not_found.clone(),
                true,
                Some((EventReason::AgentNotFound, "agent \"x\" is not defined")),
            ),
        ];
        for (case, previous, o, write, event) in cases {
            let d = decide(previous, &o, T2);
            assert_eq!(d.write, write, "{case}");
            assert_eq!(
                d.transition.as_ref().map(|t| (t.reason, t.note.as_str())),
                event,
                "{case}"
            );
            assert_eq!(d.status, task_run_status(previous, &o, T2), "{case}");
        }
        let stalled = decide(None, &not_found, T0).status;
        assert_eq!(decide(Some(&stalled), &not_found, T1).transition, None);
    }
    #[test]
    fn a_queued_place_is_written_again_at_most_every_refresh_interval() {
        use TaskPhase::*;
        let queued = |message: &str| {
            let mut o = job(1, Pending, REASON_PENDING, 0);
            let mut l = life(Pending, REASON_QUEUED, message);
            l.pod_name = None;
            o.life = Some(l);
            o
        };
        let third = queued("queued: position 3 of 3 waiting; agent a runs 2 of maxConcurrent 2");
        let second = queued("queued: position 2 of 2 waiting; agent a runs 2 of maxConcurrent 2");
        let first = decide(None, &third, T0);
        assert!(first.write, "the first Queued status is written");
        assert_eq!(first.status.reason.as_deref(), Some(REASON_QUEUED));
        // (case, now, observation, written)
        let cases = [
            ("the same place", T1, &third, false),
            (
                "a new place, 10 s later",
                "2026-01-01T10:00:10Z",
                &second,
                false,
            ),
            (
                "a new place, 29 s later",
                "2026-01-01T10:00:29Z",
                &second,
                false,
            ),
            (
                "a new place, 30 s later",
                "2026-01-01T10:00:30Z",
                &second,
                true,
            ),
            ("a new place, a minute later", T1, &second, true),
        ];
        for (case, now, o, written) in cases {
            let d = decide(Some(&first.status), o, now);
            assert_eq!(d.write, written, "{case}");
            assert_eq!(d.transition, None, "{case}");
        }
        // Anything but the place is written at once: the start (its Job created) ...
        let started = job(1, Pending, REASON_PENDING, 0);
        let mut running = job(1, Running, REASON_RUNNING, 1);
        running.life = Some(life(Running, REASON_RUNNING, "x"));
        for (case, o) in [("no longer queued", &started), ("running", &running)] {
            let d = decide(Some(&first.status), o, "2026-01-01T10:00:01Z");
            assert!(d.write, "{case}");
        }
        // ... and a new context version, queued again.
        let mut next_version =
            queued("queued: position 3 of 3 waiting; agent a runs 2 of maxConcurrent 2");
        next_version.context_version = 2;
        next_version.job_name = "web-42-v2".into();
        assert!(decide(Some(&first.status), &next_version, "2026-01-01T10:00:01Z").write);
        // A status with no readable time is refreshed.
        let mut undated = first.status.clone();
        undated.last_updated = None;
        assert!(decide(Some(&undated), &second, "2026-01-01T10:00:01Z").write);
    }

    fn life(phase: TaskPhase, reason: &'static str, message: &str) -> Lifecycle {
        Lifecycle {
            phase,
            reason,
            message: message.to_string(),
            pod_name: Some("web-42-v1-a".to_string()),
            result: (phase == TaskPhase::Succeeded).then(|| "done".to_string()),
        }
    }

    #[test]
    fn the_pods_decide_short_of_the_end_and_cancel_and_suspend_override() {
        use TaskPhase::*;
        // (previous phase, Job's phase, the Pods' view, phase, reason, message)
        let cases = [
            (
                None,
                Running,
                life(Pending, REASON_IMAGE_PULL_BACK_OFF, "Pod p cannot start"),
                Pending,
                REASON_IMAGE_PULL_BACK_OFF,
                "Pod p cannot start",
            ),
            (
                None,
                Running,
                life(Running, REASON_RUNNING, "x"),
                Running,
                REASON_RUNNING,
                "Job web-42-v1 is running (Pod web-42-v1-a)",
            ),
            // between attempts: forward only, Running is kept
            (
                Some(Running),
                Running,
                life(Pending, REASON_JOB_CREATED, "waiting"),
                Running,
                REASON_RUNNING,
                "Job web-42-v1 is running (Pod web-42-v1-a)",
            ),
            // a suspended Job is Pending again
            (
                Some(Running),
                Running,
                life(Pending, REASON_SUSPENDED, "Job web-42-v1 is suspended"),
                Pending,
                REASON_SUSPENDED,
                "Job web-42-v1 is suspended",
            ),
            (
                Some(Running),
                Running,
                life(Failed, REASON_CANCELLED, "cancelled by ana at T"),
                Failed,
                REASON_CANCELLED,
                "cancelled by ana at T",
            ),
            (
                Some(Running),
                Failed,
                life(
                    Failed,
                    REASON_BACKOFF_LIMIT_EXCEEDED,
                    "Job web-42-v1 failed: BackoffLimitExceeded; last attempt exited with code 3",
                ),
                Failed,
                REASON_BACKOFF_LIMIT_EXCEEDED,
                "Job web-42-v1 failed: BackoffLimitExceeded; last attempt exited with code 3",
            ),
            // the Job decides the end; the Pods' view gives the result
            (
                Some(Running),
                Succeeded,
                life(Succeeded, REASON_SUCCEEDED, "x"),
                Succeeded,
                REASON_SUCCEEDED,
                "Job web-42-v1 succeeded (CompletionsReached)",
            ),
        ];
        for (prev, job_phase, life, phase, reason, message) in cases {
            let reason_of = |p: TaskPhase| match p {
                Pending => REASON_PENDING,
                Running => REASON_RUNNING,
                Succeeded => REASON_SUCCEEDED,
                Failed => REASON_BACKOFF_LIMIT_EXCEEDED,
            };
            let previous = prev.map(|p| {
                let mut o = job(1, p, reason_of(p), 1);
                o.life = Some(self::life(p, reason_of(p), "before"));
                task_run_status(None, &o, T0)
            });
            let mut o = job(1, job_phase, reason_of(job_phase), 1);
            o.life = Some(life.clone());
            let next = task_run_status(previous.as_ref(), &o, T1);
            assert_eq!(
                (next.phase, next.reason.as_deref(), next.message.as_deref()),
                (Some(phase), Some(reason), Some(message)),
                "{prev:?} {job_phase:?} {life:?}"
            );
            assert_eq!(next.pod_name.as_deref(), Some("web-42-v1-a"));
            assert_eq!(next.result, life.result, "{life:?}");
        }
    }
    #[test]
    fn a_blocked_run_turns_stalled_once_after_the_threshold() {
        use TaskPhase::*;
        let observe = |l: Lifecycle, job_phase: TaskPhase| {
            let reason = if job_phase == Running {
                REASON_RUNNING
            } else {
                REASON_PENDING
            };
            let mut o = job(1, job_phase, reason, 0);
            o.life = Some(l);
            o.stall_after = Some(std::time::Duration::from_secs(60));
            o
        };
        let blocked = life(Pending, REASON_IMAGE_PULL_BACK_OFF, "Pod p cannot start");
        // (time, observation, Stalled (status, reason, lastTransitionTime), event)
        let steps = [
            (
                T0,
                observe(blocked.clone(), Pending),
                (STATUS_FALSE, REASON_PENDING, T0),
                None,
            ),
            (
                T1,
                observe(blocked.clone(), Pending),
                (STATUS_TRUE, REASON_IMAGE_PULL_BACK_OFF, T1),
                Some(EventReason::Stalled),
            ),
            (
                T2,
                observe(blocked.clone(), Pending),
                (STATUS_TRUE, REASON_IMAGE_PULL_BACK_OFF, T1),
                None,
            ),
            (
                T2,
                observe(life(Running, REASON_RUNNING, "x"), Running),
                (STATUS_FALSE, REASON_RUNNING, T2),
                None,
            ),
        ];
        let mut previous: Option<TaskRunStatus> = None;
        for (i, (now, o, want, event)) in steps.into_iter().enumerate() {
            let d = decide(previous.as_ref(), &o, now);
            let c = condition(&d.status, CONDITION_STALLED);
            assert_eq!(
                (
                    c.status.as_str(),
                    c.reason.as_deref().unwrap_or(""),
                    c.last_transition_time.as_str()
                ),
                want,
                "step {i}"
            );
            assert_eq!(d.transition.map(|t| t.reason), event, "step {i}");
            previous = Some(d.status);
        }
        let due = stall_due(
            &task_run_status(None, &observe(blocked, Pending), T0),
            T1.parse().unwrap(),
            std::time::Duration::from_secs(90),
        );
        assert_eq!(due, Some(std::time::Duration::from_secs(30)));
    }
}
