//! The Job controller's bookkeeping, pure: a Job's limits and the outcomes of its attempts (with
//! their times) in, the next step and the `JobStatus` the Job controller would write out.
//!
//! Mirrors kube-controller-manager 1.31+ for a Job with one completion and parallelism 1:
//! `startTime` at the first attempt, `active`/`ready` while an attempt runs, `failed` counting
//! failed attempts, and on the end the pair of conditions the real controller leaves behind
//! (`SuccessCriteriaMet` + `Complete`, or `FailureTarget` + `Failed` with reason
//! `BackoffLimitExceeded` or `DeadlineExceeded`). `completionTime` is set only on success, as
//! the real controller does. `uncountedTerminatedPods` and `terminating` are not written.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const CONDITION_COMPLETE: &str = "Complete";
pub const CONDITION_FAILED: &str = "Failed";
pub const CONDITION_SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const CONDITION_FAILURE_TARGET: &str = "FailureTarget";

pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// The messages kube-controller-manager writes beside each reason.
pub const MESSAGE_COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";
pub const MESSAGE_BACKOFF_LIMIT_EXCEEDED: &str = "Job has reached the specified backoff limit";
pub const MESSAGE_DEADLINE_EXCEEDED: &str = "Job was active longer than specified deadline";

/// The API server's default for `spec.backoffLimit`.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// The parts of a Job's spec that decide when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Failed attempts allowed before the Job fails: `backoffLimit + 1` attempts in all.
    pub backoff_limit: i32,
    /// Seconds from `startTime` after which the Job fails with `DeadlineExceeded`.
    pub active_deadline_seconds: Option<i64>,
}

impl JobLimits {
    pub fn of(job: &Job) -> Self {
        let spec = job.spec.as_ref();
        JobLimits {
            backoff_limit: spec
                .and_then(|s| s.backoff_limit)
                .unwrap_or(DEFAULT_BACKOFF_LIMIT)
                .max(0),
            active_deadline_seconds: spec.and_then(|s| s.active_deadline_seconds),
        }
    }
}

/// How one attempt (one pod, in Kubernetes) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Exit code 0.
    Succeeded,
    /// Any other exit, a kill by signal, or a process that could not be started.
    Failed,
    /// Killed because the Job's `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// The Pod could not be created (`FailedCreate`): no attempt ran and none is counted; the
    /// Job controller tries again after a backoff.
    NotCreated,
}

pub const CONDITION_SUSPENDED: &str = "Suspended";
pub const REASON_JOB_SUSPENDED: &str = "JobSuspended";
pub const REASON_JOB_RESUMED: &str = "JobResumed";
pub const MESSAGE_JOB_SUSPENDED: &str = "Job suspended";
pub const MESSAGE_JOB_RESUMED: &str = "Job resumed";

/// How a Job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    Complete,
    BackoffLimitExceeded,
    DeadlineExceeded,
}

impl Terminal {
    /// The (interim, final) condition types, the reason and the message the controller writes.
    fn conditions(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Terminal::Complete => (
                CONDITION_SUCCESS_CRITERIA_MET,
                CONDITION_COMPLETE,
                REASON_COMPLETIONS_REACHED,
                MESSAGE_COMPLETIONS_REACHED,
            ),
            Terminal::BackoffLimitExceeded => (
                CONDITION_FAILURE_TARGET,
                CONDITION_FAILED,
                REASON_BACKOFF_LIMIT_EXCEEDED,
                MESSAGE_BACKOFF_LIMIT_EXCEEDED,
            ),
            Terminal::DeadlineExceeded => (
                CONDITION_FAILURE_TARGET,
                CONDITION_FAILED,
                REASON_DEADLINE_EXCEEDED,
                MESSAGE_DEADLINE_EXCEEDED,
            ),
        }
    }
}

/// What the runner does next with a Job that has not ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Start an attempt (the first one, or a retry).
    Start,
    /// Write the terminal status; run nothing more.
    Finish(Terminal),
}

/// Where a Job stands when the runner first sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Resume {
    /// A `Complete` or `Failed` condition is already True: never run it again.
    AlreadyFinished,
    /// Carry on from these counts.
    Continue(JobRun),
}

/// One Job's run so far: what the Job controller keeps in `status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRun {
    pub start_time: Option<Timestamp>,
    /// An attempt is running now (its Pod exists, whether or not its container started).
    pub active: bool,
    /// The active attempt's container runs (a waiting Pod is active but not ready).
    pub ready: bool,
    pub succeeded: i32,
    pub failed: i32,
    /// Pod creations refused in a row (FailedCreate), for the retry backoff.
    pub create_failures: i32,
    /// The `Suspended` condition: (suspended, since).
    pub suspended: Option<(bool, Timestamp)>,
    pub finished: Option<(Terminal, Timestamp)>,
}

impl JobRun {
    /// Picks a Job up from its live status, so that a restarted runner never runs a finished
    /// Job again. An attempt that was active when the previous runner stopped is not counted as
    /// failed (it was the runner's disruption, not the Job's fault, as a pod failure policy
    /// `Ignore` on `DisruptionTarget` treats it); the next attempt starts fresh, and
    /// `startTime`, and with it the deadline, is kept.
    pub fn resume(status: Option<&JobStatus>) -> Resume {
        let Some(status) = status else {
            return Resume::Continue(JobRun::default());
        };
        if is_finished(status) {
            return Resume::AlreadyFinished;
        }
        let suspended = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == CONDITION_SUSPENDED)
            .map(|c| {
                (
                    c.status == "True",
                    c.last_transition_time
                        .as_ref()
                        .map_or_else(Timestamp::now, |t| t.0),
                )
            });
        Resume::Continue(JobRun {
            start_time: status.start_time.as_ref().map(|t| t.0),
            succeeded: status.succeeded.unwrap_or(0).max(0),
            failed: status.failed.unwrap_or(0).max(0),
            suspended,
            ..JobRun::default()
        })
    }

    /// The instant the deadline passes, when the Job has one and has started.
    pub fn deadline(&self, limits: JobLimits) -> Option<Timestamp> {
        let seconds = limits.active_deadline_seconds?;
        let start = self.start_time?;
        start
            .checked_add(SignedDuration::from_secs(seconds.max(0)))
            .ok()
    }

    /// Whether to start another attempt or end the Job. A success ends it; then the deadline;
    /// then the backoff limit (a deadline kill on the last allowed attempt reads as
    /// `DeadlineExceeded`, which is what stopped it).
    pub fn next_step(&self, limits: JobLimits, now: Timestamp) -> Step {
        if self.succeeded > 0 {
            return Step::Finish(Terminal::Complete);
        }
        if self.deadline(limits).is_some_and(|d| now >= d) {
            return Step::Finish(Terminal::DeadlineExceeded);
        }
        if self.failed > limits.backoff_limit {
            return Step::Finish(Terminal::BackoffLimitExceeded);
        }
        Step::Start
    }

    /// The Job is synced for the first time (or again after a resume): `startTime` is set,
    /// and with it the deadline starts, before any Pod exists.
    pub fn begin(&mut self, now: Timestamp) {
        self.start_time.get_or_insert(now);
    }

    /// A Pod for the next attempt exists; `ready` when its container runs at once.
    pub fn start_attempt(&mut self, now: Timestamp, ready: bool) {
        self.start_time.get_or_insert(now);
        self.active = true;
        self.ready = ready;
    }

    pub fn end_attempt(&mut self, outcome: AttemptOutcome) {
        self.active = false;
        self.ready = false;
        match outcome {
            AttemptOutcome::Succeeded => self.succeeded += 1,
            AttemptOutcome::Failed | AttemptOutcome::DeadlineExceeded => self.failed += 1,
            AttemptOutcome::NotCreated => self.create_failures += 1,
        }
        if outcome != AttemptOutcome::NotCreated {
            self.create_failures = 0;
        }
    }

    /// Failures so far that the next attempt backs off for.
    pub fn retries(&self) -> i32 {
        self.failed + self.create_failures
    }

    /// `spec.suspend` turned true: the active Pod is gone (not counted as failed), and the
    /// deadline stops with `startTime` cleared, as the Job controller does.
    pub fn suspend(&mut self, now: Timestamp) {
        self.active = false;
        self.ready = false;
        self.start_time = None;
        if self.suspended.is_none_or(|(s, _)| !s) {
            self.suspended = Some((true, now));
        }
    }

    /// `spec.suspend` turned false again: `startTime` starts anew.
    pub fn resume_suspended(&mut self, now: Timestamp) {
        if self.suspended.is_some_and(|(s, _)| s) {
            self.suspended = Some((false, now));
            self.start_time = None;
        }
    }

    pub fn finish(&mut self, terminal: Terminal, now: Timestamp) {
        self.active = false;
        self.finished = Some((terminal, now));
    }

    /// The status the Job controller would write for this run.
    pub fn status(&self) -> JobStatus {
        let positive = |n: i32| (n > 0).then_some(n);
        let mut status = JobStatus {
            start_time: self.start_time.map(time),
            active: self.active.then_some(1),
            ready: Some(i32::from(self.active && self.ready)),
            succeeded: positive(self.succeeded),
            failed: positive(self.failed),
            ..JobStatus::default()
        };
        let mut conditions = Vec::new();
        if let Some((suspended, at)) = self.suspended {
            let (status, reason, message) = if suspended {
                ("True", REASON_JOB_SUSPENDED, MESSAGE_JOB_SUSPENDED)
            } else {
                ("False", REASON_JOB_RESUMED, MESSAGE_JOB_RESUMED)
            };
            conditions.push(JobCondition {
                type_: CONDITION_SUSPENDED.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_probe_time: Some(time(at)),
                last_transition_time: Some(time(at)),
            });
        }
        if let Some((terminal, at)) = self.finished {
            let (interim, last, reason, message) = terminal.conditions();
            let condition = |type_: &str| JobCondition {
                type_: type_.to_string(),
                status: "True".to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_probe_time: Some(time(at)),
                last_transition_time: Some(time(at)),
            };
            conditions.extend([condition(interim), condition(last)]);
            if terminal == Terminal::Complete {
                status.completion_time = Some(time(at));
            }
        }
        if !conditions.is_empty() {
            status.conditions = Some(conditions);
        }
        status
    }
}

/// Whether a Job carries a True `Complete` or `Failed` condition.
pub fn is_finished(status: &JobStatus) -> bool {
    status.conditions.iter().flatten().any(|c| {
        (c.type_ == CONDITION_COMPLETE || c.type_ == CONDITION_FAILED) && c.status == "True"
    })
}

/// The Job's status after a sequence of events, deciding after each attempt as the runner does.
/// Each attempt's outcome is recorded at its end time; the Job ends at the first event after
/// which the decision is `Finish`.
pub fn status_after(limits: JobLimits, events: &[RunEvent]) -> JobStatus {
    let mut run = JobRun::default();
    for event in events {
        if run.finished.is_some() {
            break;
        }
        match *event {
            RunEvent::Started(at) => run.start_attempt(at, true),
            RunEvent::Ended(outcome, at) => {
                run.end_attempt(outcome);
                if let Step::Finish(terminal) = run.next_step(limits, at) {
                    run.finish(terminal, at);
                }
            }
        }
    }
    run.status()
}

/// One step of a Job's life, with its time.
#[derive(Clone, Copy, Debug)]
pub enum RunEvent {
    Started(Timestamp),
    Ended(AttemptOutcome, Timestamp),
}

/// Kubernetes serialises times at one-second precision; truncating here makes what we write
/// equal what we read back.
fn time(at: Timestamp) -> Time {
    Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttemptOutcome::*;
    use RunEvent::*;
    use pretty_assertions::assert_eq;

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("valid time")
    }

    fn limits(backoff_limit: i32, deadline: Option<i64>) -> JobLimits {
        JobLimits {
            backoff_limit,
            active_deadline_seconds: deadline,
        }
    }

    /// (type, reason) of each condition, in order.
    fn conditions(status: &JobStatus) -> Vec<(String, String)> {
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
            .collect()
    }

    struct Case {
        name: &'static str,
        limits: JobLimits,
        events: Vec<RunEvent>,
        active: Option<i32>,
        ready: Option<i32>,
        succeeded: Option<i32>,
        failed: Option<i32>,
        completion: Option<i64>,
        conditions: &'static [(&'static str, &'static str)],
    }

    #[test]
    fn status_follows_the_attempts_as_the_job_controller_writes_it() {
        let cases = [
            Case {
                name: "not started",
                limits: limits(6, None),
                events: vec![],
                active: None,
                ready: Some(0),
                succeeded: None,
                failed: None,
                completion: None,
                conditions: &[],
            },
            Case {
                name: "running",
                limits: limits(6, None),
                events: vec![Started(t(0))],
                active: Some(1),
                ready: Some(1),
                succeeded: None,
                failed: None,
                completion: None,
                conditions: &[],
            },
            Case {
                name: "first attempt succeeds",
                limits: limits(6, None),
                events: vec![Started(t(0)), Ended(Succeeded, t(5))],
                active: None,
                ready: Some(0),
                succeeded: Some(1),
                failed: None,
                completion: Some(5),
                conditions: &[
                    ("SuccessCriteriaMet", "CompletionsReached"),
                    ("Complete", "CompletionsReached"),
                ],
            },
            Case {
                name: "one failure, then a running retry",
                limits: limits(2, None),
                events: vec![Started(t(0)), Ended(Failed, t(1)), Started(t(2))],
                active: Some(1),
                ready: Some(1),
                succeeded: None,
                failed: Some(1),
                completion: None,
                conditions: &[],
            },
            Case {
                name: "succeeds on the second attempt",
                limits: limits(2, None),
                events: vec![
                    Started(t(0)),
                    Ended(Failed, t(1)),
                    Started(t(2)),
                    Ended(Succeeded, t(3)),
                ],
                active: None,
                ready: Some(0),
                succeeded: Some(1),
                failed: Some(1),
                completion: Some(3),
                conditions: &[
                    ("SuccessCriteriaMet", "CompletionsReached"),
                    ("Complete", "CompletionsReached"),
                ],
            },
            Case {
                name: "backoffLimit 2: three failed attempts",
                limits: limits(2, None),
                events: vec![
                    Started(t(0)),
                    Ended(Failed, t(1)),
                    Started(t(2)),
                    Ended(Failed, t(3)),
                    Started(t(4)),
                    Ended(Failed, t(5)),
                ],
                active: None,
                ready: Some(0),
                succeeded: None,
                failed: Some(3),
                completion: None,
                conditions: &[
                    ("FailureTarget", "BackoffLimitExceeded"),
                    ("Failed", "BackoffLimitExceeded"),
                ],
            },
            Case {
                name: "backoffLimit 0: one failure ends it",
                limits: limits(0, None),
                events: vec![Started(t(0)), Ended(Failed, t(1))],
                active: None,
                ready: Some(0),
                succeeded: None,
                failed: Some(1),
                completion: None,
                conditions: &[
                    ("FailureTarget", "BackoffLimitExceeded"),
                    ("Failed", "BackoffLimitExceeded"),
                ],
            },
            Case {
                name: "killed at the deadline",
                limits: limits(6, Some(1)),
                events: vec![Started(t(0)), Ended(DeadlineExceeded, t(1))],
                active: None,
                ready: Some(0),
                succeeded: None,
                failed: Some(1),
                completion: None,
                conditions: &[
                    ("FailureTarget", "DeadlineExceeded"),
                    ("Failed", "DeadlineExceeded"),
                ],
            },
            Case {
                name: "deadline kill on the last allowed attempt reads as DeadlineExceeded",
                limits: limits(0, Some(10)),
                events: vec![Started(t(0)), Ended(DeadlineExceeded, t(10))],
                active: None,
                ready: Some(0),
                succeeded: None,
                failed: Some(1),
                completion: None,
                conditions: &[
                    ("FailureTarget", "DeadlineExceeded"),
                    ("Failed", "DeadlineExceeded"),
                ],
            },
            Case {
                name: "a failure after the deadline passed is DeadlineExceeded",
                limits: limits(6, Some(10)),
                events: vec![
                    Started(t(0)),
                    Ended(Failed, t(4)),
                    Started(t(5)),
                    Ended(Failed, t(12)),
                ],
                active: None,
                ready: Some(0),
                succeeded: None,
                failed: Some(2),
                completion: None,
                conditions: &[
                    ("FailureTarget", "DeadlineExceeded"),
                    ("Failed", "DeadlineExceeded"),
                ],
            },
            Case {
                name: "events after the end change nothing",
                limits: limits(0, None),
                events: vec![
                    Started(t(0)),
                    Ended(Failed, t(1)),
                    Started(t(2)),
                    Ended(Succeeded, t(3)),
                ],
                active: None,
                ready: Some(0),
                succeeded: None,
                failed: Some(1),
                completion: None,
                conditions: &[
                    ("FailureTarget", "BackoffLimitExceeded"),
                    ("Failed", "BackoffLimitExceeded"),
                ],
            },
        ];
        for case in cases {
            let status = status_after(case.limits, &case.events);
            let started = case.events.first().map(|_| time(t(0)));
            assert_eq!(status.start_time, started, "{}: startTime", case.name);
            assert_eq!(status.active, case.active, "{}: active", case.name);
            assert_eq!(status.ready, case.ready, "{}: ready", case.name);
            assert_eq!(status.succeeded, case.succeeded, "{}: succeeded", case.name);
            assert_eq!(status.failed, case.failed, "{}: failed", case.name);
            assert_eq!(
                status.completion_time,
                case.completion.map(|s| time(t(s))),
                "{}: completionTime",
                case.name
            );
            let expected: Vec<(String, String)> = case
                .conditions
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(conditions(&status), expected, "{}: conditions", case.name);
        }
    }

    #[test]
    fn terminal_conditions_carry_the_controllers_messages_and_end_time() {
        let status = status_after(limits(0, None), &[Started(t(0)), Ended(Failed, t(7))]);
        for c in status.conditions.iter().flatten() {
            assert_eq!(c.status, "True");
            assert_eq!(c.message.as_deref(), Some(MESSAGE_BACKOFF_LIMIT_EXCEEDED));
            assert_eq!(c.last_transition_time, Some(time(t(7))));
            assert_eq!(c.last_probe_time, Some(time(t(7))));
        }
        assert!(is_finished(&status));
        assert!(!is_finished(&status_after(
            limits(0, None),
            &[Started(t(0))]
        )));
    }

    #[test]
    fn resume_never_reruns_a_finished_job_and_keeps_counts_and_start_time() {
        let done = status_after(limits(0, None), &[Started(t(0)), Ended(Succeeded, t(1))]);
        assert_eq!(JobRun::resume(Some(&done)), Resume::AlreadyFinished);
        let failed = status_after(limits(0, None), &[Started(t(0)), Ended(Failed, t(1))]);
        assert_eq!(JobRun::resume(Some(&failed)), Resume::AlreadyFinished);

        // Interrupted while the second attempt ran: the interruption is not a failure.
        let interrupted = status_after(
            limits(3, Some(60)),
            &[Started(t(0)), Ended(Failed, t(1)), Started(t(2))],
        );
        let Resume::Continue(run) = JobRun::resume(Some(&interrupted)) else {
            panic!("an unfinished Job continues");
        };
        assert_eq!(run.failed, 1);
        assert!(!run.active);
        assert_eq!(run.start_time, Some(t(0)));
        assert_eq!(run.deadline(limits(3, Some(60))), Some(t(60)));
        assert_eq!(run.next_step(limits(3, Some(60)), t(30)), Step::Start);
        assert_eq!(
            run.next_step(limits(3, Some(60)), t(60)),
            Step::Finish(Terminal::DeadlineExceeded)
        );
        assert_eq!(JobRun::resume(None), Resume::Continue(JobRun::default()));
    }

    #[test]
    fn limits_default_as_the_api_server_defaults_them() {
        let job = Job::default();
        assert_eq!(JobLimits::of(&job), limits(DEFAULT_BACKOFF_LIMIT, None));
    }
}
