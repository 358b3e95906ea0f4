//! Operations on a run (not content): the `orchestrator.io/retry` and `orchestrator.io/cancel`
//! annotations of a TaskRun and its status in, what the controller must do about them out. Pure.
//!
//! - `orchestrator.io/retry=<token>`: any token the TaskRun's status has not recorded in
//!   `status.retryToken` asks for one more attempt of the same contextVersion, once the current
//!   one has finished. Attempt N (N ≥ 2) runs as Job `<service>-<id>-v<version>-r<N>`.
//! - `orchestrator.io/cancel=<who>@<RFC 3339 time>`: stops the attempt that was running at that
//!   time; phase Failed, reason Cancelled. A later retry starts a new attempt, which the old
//!   cancel no longer touches.
//!
//! Neither ever changes `spec.contextVersion`, and the sync, whose server-side apply body never
//! holds these keys, never removes them.

use super::lifecycle::Cancel;
use crate::crd::{TaskPhase, TaskRunStatus};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

pub const ANNOTATION_RETRY: &str = "orchestrator.io/retry";
pub const ANNOTATION_CANCEL: &str = "orchestrator.io/cancel";

/// What a retry annotation asks of the controller now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// No annotation, or its token is the one already carried out.
    Nothing,
    /// A new token, but the current attempt has not finished: carried out when it has.
    Wait { token: String },
    /// Start attempt `attempt` (a new Job); then record `token` and `retries`.
    Retry {
        token: String,
        attempt: u32,
        retries: i32,
    },
}

/// The attempt a TaskRun's status describes: 1 plus the retries carried out.
pub fn current_attempt(status: Option<&TaskRunStatus>) -> u32 {
    1 + status.map(|s| s.retries.max(0) as u32).unwrap_or(0)
}

pub fn retry_decision(
    annotations: Option<&BTreeMap<String, String>>,
    status: Option<&TaskRunStatus>,
) -> RetryDecision {
    let Some(token) = annotations
        .and_then(|a| a.get(ANNOTATION_RETRY))
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    else {
        return RetryDecision::Nothing;
    };
    if status.and_then(|s| s.retry_token.as_deref()) == Some(token) {
        return RetryDecision::Nothing;
    }
    let finished = status
        .and_then(|s| s.phase)
        .is_some_and(TaskPhase::is_terminal);
    if !finished {
        return RetryDecision::Wait {
            token: token.to_string(),
        };
    }
    let retries = status.map(|s| s.retries.max(0)).unwrap_or(0) + 1;
    RetryDecision::Retry {
        token: token.to_string(),
        attempt: 1 + retries as u32,
        retries,
    }
}

/// Which attempt of the current content version the controller runs, and the retry bookkeeping
/// the status records for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptPlan {
    /// 1 for the first run, N for the (N-1)th retry: names the Job ([`crate::names::attempt_job_name`]).
    pub attempt: u32,
    pub retries: i32,
    pub retry_token: Option<String>,
    /// This reconcile starts a retry: a cancel of the earlier attempt does not apply to it.
    pub retried: bool,
}

/// `previous` is the TaskRun's status, `current` whether it describes the spec's contextVersion.
/// A new version starts at attempt 1 (its retries count from 0) but keeps the last token carried
/// out, so an annotation left on the TaskRun is not taken for a new request.
pub fn plan_attempt(
    annotations: Option<&BTreeMap<String, String>>,
    previous: Option<&TaskRunStatus>,
    current: bool,
) -> AttemptPlan {
    let carried = previous.and_then(|s| s.retry_token.clone());
    if !current {
        return AttemptPlan {
            attempt: 1,
            retries: 0,
            retry_token: carried,
            retried: false,
        };
    }
    match retry_decision(annotations, previous) {
        RetryDecision::Retry {
            token,
            attempt,
            retries,
        } => AttemptPlan {
            attempt,
            retries,
            retry_token: Some(token),
            retried: true,
        },
        RetryDecision::Nothing | RetryDecision::Wait { .. } => AttemptPlan {
            attempt: current_attempt(previous),
            retries: previous.map(|s| s.retries.max(0)).unwrap_or(0),
            retry_token: carried,
            retried: false,
        },
    }
}

/// Why a retry or cancel is refused, before any annotation is written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OperationRefused {
    #[error(
        "{task} is {phase}; only a finished task can be retried: wait for it, or cancel it first (orchestrator cancel {task})"
    )]
    NotFinished { task: String, phase: String },
    #[error(
        "{task} Succeeded; retry it anyway with --force (API: ?force=true), which runs the agent again on the same content"
    )]
    Succeeded { task: String },
    #[error("{task} has already finished ({phase}); there is nothing to cancel")]
    AlreadyFinished { task: String, phase: String },
}

/// Whether `orchestrator retry` may ask for a retry of a TaskRun in `phase`.
pub fn check_retry(
    task: &str,
    phase: Option<TaskPhase>,
    force: bool,
) -> Result<(), OperationRefused> {
    match phase {
        Some(TaskPhase::Failed) => Ok(()),
        Some(TaskPhase::Succeeded) if force => Ok(()),
        Some(TaskPhase::Succeeded) => Err(OperationRefused::Succeeded {
            task: task.to_string(),
        }),
        other => Err(OperationRefused::NotFinished {
            task: task.to_string(),
            phase: other.unwrap_or_default().to_string(),
        }),
    }
}

/// Whether `orchestrator cancel` may cancel a TaskRun in `phase`.
pub fn check_cancel(task: &str, phase: Option<TaskPhase>) -> Result<(), OperationRefused> {
    match phase {
        Some(p) if p.is_terminal() => Err(OperationRefused::AlreadyFinished {
            task: task.to_string(),
            phase: p.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A fresh retry token: the time, to the millisecond, so that two retries differ.
pub fn retry_token(now: Timestamp) -> String {
    now.strftime("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// `<who>@<RFC 3339 time>`.
pub fn cancel_value(who: &str, now: Timestamp) -> String {
    format!("{}@{}", who.trim(), super::job_phase::format_time(now))
}

/// `who@time`, split at the last `@` so that `ana@example.com@2026-…` keeps the e-mail.
pub fn parse_cancel(value: &str) -> Option<Cancel> {
    let (by, at) = value.trim().rsplit_once('@')?;
    at.parse::<Timestamp>().ok()?;
    Some(Cancel {
        by: if by.is_empty() { "someone" } else { by }.to_string(),
        at: at.to_string(),
    })
}

/// The cancel on a TaskRun that applies to its current attempt, whose Job was created at
/// `attempt_created` (`None`: no Job yet). A cancel older than the attempt belongs to an earlier
/// one (a retry came after it).
pub fn cancel_applies(
    annotations: Option<&BTreeMap<String, String>>,
    attempt_created: Option<Timestamp>,
) -> Option<Cancel> {
    let cancel = parse_cancel(annotations?.get(ANNOTATION_CANCEL)?)?;
    let at: Timestamp = cancel.at.parse().ok()?;
    match attempt_created {
        Some(created) if created > at => None,
        _ => Some(cancel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn status(phase: TaskPhase, retries: i32, token: Option<&str>) -> TaskRunStatus {
        TaskRunStatus {
            phase: Some(phase),
            retries,
            retry_token: token.map(str::to_string),
            ..TaskRunStatus::default()
        }
    }

    #[test]
    fn a_retry_token_maps_to_one_new_attempt() {
        use TaskPhase::*;
        let retry = |t: &str, attempt, retries| RetryDecision::Retry {
            token: t.into(),
            attempt,
            retries,
        };
        // (annotation, status, decision)
        let cases = [
            (None, Some(status(Failed, 0, None)), RetryDecision::Nothing),
            (
                Some("  "),
                Some(status(Failed, 0, None)),
                RetryDecision::Nothing,
            ),
            (Some("t1"), Some(status(Failed, 0, None)), retry("t1", 2, 1)),
            (
                Some("t1"),
                Some(status(Succeeded, 0, None)),
                retry("t1", 2, 1),
            ),
            (
                Some("t1"),
                Some(status(Failed, 1, Some("t1"))),
                RetryDecision::Nothing,
            ),
            (
                Some("t2"),
                Some(status(Failed, 1, Some("t1"))),
                retry("t2", 3, 2),
            ),
            (
                Some("t2"),
                Some(status(Running, 1, Some("t1"))),
                RetryDecision::Wait { token: "t2".into() },
            ),
            (Some("t1"), None, RetryDecision::Wait { token: "t1".into() }),
        ];
        for (token, status, want) in cases {
            let a = token.map(|t| annotations(&[(ANNOTATION_RETRY, t)]));
            assert_eq!(
                retry_decision(a.as_ref(), status.as_ref()),
                want,
                "{token:?} {status:?}"
            );
        }
        assert_eq!(current_attempt(None), 1);
        assert_eq!(current_attempt(Some(&status(Failed, 2, Some("x")))), 3);
    }

    #[test]
    fn what_retry_and_cancel_refuse() {
        use TaskPhase::*;
        let cases: [(Option<TaskPhase>, bool, Result<(), &str>); 6] = [
            (Some(Failed), false, Ok(())),
            (Some(Succeeded), true, Ok(())),
            (
                Some(Succeeded),
                false,
                Err(
                    "task-42 Succeeded; retry it anyway with --force (API: ?force=true), which runs the agent again on the same content",
                ),
            ),
            (
                Some(Running),
                true,
                Err(
                    "task-42 is Running; only a finished task can be retried: wait for it, or cancel it first (orchestrator cancel task-42)",
                ),
            ),
            (
                None,
                false,
                Err(
                    "task-42 is Pending; only a finished task can be retried: wait for it, or cancel it first (orchestrator cancel task-42)",
                ),
            ),
            (
                Some(Pending),
                true,
                Err(
                    "task-42 is Pending; only a finished task can be retried: wait for it, or cancel it first (orchestrator cancel task-42)",
                ),
            ),
        ];
        for (phase, force, want) in cases {
            let got = check_retry("task-42", phase, force).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{phase:?} force={force}");
        }
        assert!(check_cancel("task-42", Some(Running)).is_ok());
        assert!(check_cancel("task-42", Some(Pending)).is_ok());
        assert_eq!(
            check_cancel("task-42", Some(Failed))
                .unwrap_err()
                .to_string(),
            "task-42 has already finished (Failed); there is nothing to cancel"
        );
    }

    #[test]
    fn cancel_values_round_trip_and_apply_to_the_attempt_they_saw() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let value = cancel_value("ana@example.com", t("2026-01-01T10:02:00.5Z"));
        assert_eq!(value, "ana@example.com@2026-01-01T10:02:00Z");
        assert_eq!(
            parse_cancel(&value),
            Some(Cancel {
                by: "ana@example.com".into(),
                at: "2026-01-01T10:02:00Z".into()
            })
        );
        for bad in ["", "ana", "ana@yesterday", "@"] {
            assert_eq!(parse_cancel(bad), None, "{bad}");
        }
        let a = annotations(&[(ANNOTATION_CANCEL, &value)]);
        // (Job of the current attempt created at, applies)
        let cases = [
            (None, true),
            (Some("2026-01-01T10:00:00Z"), true),
            (Some("2026-01-01T10:02:00Z"), true),
            (Some("2026-01-01T10:03:00Z"), false),
        ];
        for (created, applies) in cases {
            assert_eq!(
                cancel_applies(Some(&a), created.map(t)).is_some(),
                applies,
                "{created:?}"
            );
        }
        assert_eq!(cancel_applies(None, None), None);
        let token = retry_token(t("2026-01-01T10:02:00.123Z"));
        assert_eq!(token, "20260101T100200.123Z");
    }
    #[test]
    fn attempt_plans() {
        let status = |phase, retries, token: Option<&str>| TaskRunStatus {
            phase: Some(phase),
            retries,
            retry_token: token.map(str::to_string),
            ..TaskRunStatus::default()
        };
        let plan = |attempt, retries, token: Option<&str>, retried| AttemptPlan {
            attempt,
            retries,
            retry_token: token.map(str::to_string),
            retried,
        };
        let asked = annotations(&[(ANNOTATION_RETRY, "t2")]);
        let cases = [
            // (annotations, status, current, plan)
            (None, None, false, plan(1, 0, None, false)),
            (
                None,
                Some(status(TaskPhase::Failed, 0, None)),
                true,
                plan(1, 0, None, false),
            ),
            (
                Some(&asked),
                Some(status(TaskPhase::Failed, 0, None)),
                true,
                plan(2, 1, Some("t2"), true),
            ),
            (
                Some(&asked),
                Some(status(TaskPhase::Failed, 1, Some("t1"))),
                true,
                plan(3, 2, Some("t2"), true),
            ),
            // carried out already: stays on the attempt it started
            (
                Some(&asked),
                Some(status(TaskPhase::Running, 1, Some("t2"))),
                true,
                plan(2, 1, Some("t2"), false),
            ),
            // asked while running: waits for the attempt to finish
            (
                Some(&asked),
                Some(status(TaskPhase::Running, 0, None)),
                true,
                plan(1, 0, None, false),
            ),
            // a new version: attempt 1 again, the token carried out is kept
            (
                Some(&asked),
                Some(status(TaskPhase::Failed, 1, Some("t2"))),
                false,
                plan(1, 0, Some("t2"), false),
            ),
        ];
        for (annotations, status, current, want) in cases {
            assert_eq!(
                plan_attempt(annotations, status.as_ref(), current),
                want,
                "{annotations:?} {status:?} {current}"
            );
        }
    }
}
