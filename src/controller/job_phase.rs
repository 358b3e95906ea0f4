//! How a Job is doing: a Job in, the task phase, reason, message, attempts and times out.
//! Pure, like gitops-engine's per-kind health functions.

use super::reasons;
use crate::crd::TaskPhase;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the controller reads off one Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    pub phase: TaskPhase,
    /// One of the `Succeeded` condition reasons in [`reasons`].
    pub reason: &'static str,
    /// The reason and message of the Job's terminal condition, when there is one.
    pub message: Option<String>,
    /// Pods the Job has started: succeeded + failed + active. A task with backoffLimit 2 that
    /// keeps failing ends with 3 attempts.
    pub attempts: i32,
    pub start_time: Option<String>,
    pub completion_time: Option<String>,
}

/// The phase comes from the Job's conditions: Complete → Succeeded, Failed → Failed (reason
/// BackoffLimitExceeded or DeadlineExceeded when the Job says so), otherwise Running once a pod
/// has been started and Pending before.
pub fn job_phase(job: &Job) -> JobState {
    let status = job.status.clone().unwrap_or_default();
    let attempts =
        status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0) + status.active.unwrap_or(0);
    let terminal = ending_condition(&status).map(|c| match c.type_.as_str() {
        "Complete" => (TaskPhase::Succeeded, reasons::REASON_SUCCEEDED, c),
        _ => (
            TaskPhase::Failed,
            match c.reason.as_deref() {
                Some("BackoffLimitExceeded") => reasons::REASON_BACKOFF_LIMIT_EXCEEDED,
                Some("DeadlineExceeded") => reasons::REASON_DEADLINE_EXCEEDED,
                _ => reasons::REASON_FAILED,
            },
            c,
        ),
    });
    let (phase, reason, message) = match terminal {
        Some((phase, reason, c)) => (
            phase,
            reason,
            condition_message(c.reason.as_deref(), c.message.as_deref()),
        ),
        None if attempts > 0 => (TaskPhase::Running, reasons::REASON_RUNNING, None),
        None => (TaskPhase::Pending, reasons::REASON_PENDING, None),
    };
    JobState {
        phase,
        reason,
        message,
        attempts,
        start_time: status.start_time.as_ref().map(rfc3339),
        completion_time: status.completion_time.as_ref().map(rfc3339),
    }
}

/// Whether a Job holds a queue slot: neither suspended nor ended. The one rule for the queue's
/// entries and for cached Jobs.
pub fn holds_slot(suspended: Option<bool>, status: Option<&JobStatus>) -> bool {
    !suspended.unwrap_or(false) && status.is_none_or(|s| ending_condition(s).is_none())
}

/// The condition that ends a Job: the first `Complete` or `Failed` that is `True`.
pub fn ending_condition(status: &JobStatus) -> Option<&JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))
}

fn condition_message(reason: Option<&str>, message: Option<&str>) -> Option<String> {
    match (reason, message) {
        (Some(r), Some(m)) if !m.is_empty() => Some(format!("{r}: {m}")),
        (Some(r), _) => Some(r.to_string()),
        (None, Some(m)) => Some(m.to_string()),
        (None, None) => None,
    }
}

/// Kubernetes' own format for metav1.Time: seconds, UTC, `Z`.
pub fn rfc3339(t: &Time) -> String {
    format_time(t.0)
}

pub fn format_time(t: k8s_openapi::jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    pub(crate) fn job(
        active: i32,
        succeeded: i32,
        failed: i32,
        condition: Option<(&str, &str, &str)>,
    ) -> Job {
        let t = |s: &str| Time(s.parse().unwrap());
        Job {
            status: Some(JobStatus {
                active: (active > 0).then_some(active),
                succeeded: (succeeded > 0).then_some(succeeded),
                failed: (failed > 0).then_some(failed),
                start_time: Some(t("2026-01-01T10:00:00.250Z")),
                completion_time: condition
                    .filter(|c| c.0 == "Complete")
                    .map(|_| t("2026-01-01T10:05:00Z")),
                conditions: condition.map(|(type_, reason, message)| {
                    vec![JobCondition {
                        type_: type_.into(),
                        status: "True".into(),
                        reason: Some(reason.into()),
                        message: Some(message.into()),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn phase_table() {
        use TaskPhase::*;
        let cases = [
            (
                job(0, 0, 0, None),
                Pending,
                reasons::REASON_PENDING,
                0,
                None,
            ),
            (
                job(1, 0, 0, None),
                Running,
                reasons::REASON_RUNNING,
                1,
                None,
            ),
            // Between two attempts no pod is active: still Running, not back to Pending.
            (
                job(0, 0, 1, None),
                Running,
                reasons::REASON_RUNNING,
                1,
                None,
            ),
            (
                job(0, 1, 0, Some(("Complete", "CompletionsReached", ""))),
                Succeeded,
                reasons::REASON_SUCCEEDED,
                1,
                Some("CompletionsReached"),
            ),
            (
                job(
                    0,
                    0,
                    3,
                    Some((
                        "Failed",
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                    )),
                ),
                Failed,
                reasons::REASON_BACKOFF_LIMIT_EXCEEDED,
                3,
                Some("BackoffLimitExceeded: Job has reached the specified backoff limit"),
            ),
            (
                job(
                    0,
                    0,
                    1,
                    Some((
                        "Failed",
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                    )),
                ),
                Failed,
                reasons::REASON_DEADLINE_EXCEEDED,
                1,
                Some("DeadlineExceeded: Job was active longer than specified deadline"),
            ),
            (
                job(
                    0,
                    0,
                    1,
                    Some(("Failed", "PodFailurePolicy", "container exited 42")),
                ),
                Failed,
                reasons::REASON_FAILED,
                1,
                Some("PodFailurePolicy: container exited 42"),
            ),
            // Conditions that are not terminal do not decide the phase.
            (
                job(1, 0, 0, Some(("Suspended", "x", ""))),
                Running,
                reasons::REASON_RUNNING,
                1,
                None,
            ),
        ];
        for (i, (job, phase, reason, attempts, message)) in cases.into_iter().enumerate() {
            let s = job_phase(&job);
            assert_eq!(s.phase, phase, "case {i}");
            assert_eq!(s.reason, reason, "case {i}");
            assert_eq!(s.attempts, attempts, "case {i}");
            assert_eq!(s.message.as_deref(), message, "case {i}");
            assert_eq!(
                s.start_time.as_deref(),
                Some("2026-01-01T10:00:00Z"),
                "case {i}"
            );
        }
        let done = job_phase(&job(0, 1, 0, Some(("Complete", "CompletionsReached", ""))));
        assert_eq!(
            done.completion_time.as_deref(),
            Some("2026-01-01T10:05:00Z")
        );
        let fresh = job_phase(&Job::default());
        assert_eq!(
            (fresh.phase, fresh.attempts, fresh.start_time),
            (Pending, 0, None)
        );
    }
}
