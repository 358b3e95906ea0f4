use super::*;
use serde_json::{Value, json};

fn job(status: Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": "web-42-v1"},
        "spec": {"template": {}},
        "status": status,
    }))
    .unwrap()
}

fn suspended_job() -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": "web-42-v1"},
        "spec": {"template": {}, "suspend": true},
        "status": {},
    }))
    .unwrap()
}

fn pod(name: &str, created: &str, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": created},
        "status": status,
    }))
    .unwrap()
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"phase": "Pending", "containerStatuses": [{
        "name": "agent", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}}
    }]})
}

fn terminated(phase: &str, code: i32, reason: &str, message: Option<&str>) -> Value {
    json!({"phase": phase, "containerStatuses": [{
        "name": "agent", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}
    }]})
}

fn event(type_: &str, reason: &str, message: &str) -> JobEvent {
    JobEvent {
        reason: reason.into(),
        message: message.into(),
        type_: type_.into(),
    }
}

struct Case {
    name: &'static str,
    suspend: bool,
    cancel: Option<Cancel>,
    queued: Option<QueueSlot>,
    job: Option<Job>,
    pods: Vec<Pod>,
    events: Vec<JobEvent>,
    want: (TaskPhase, &'static str, &'static str),
    want_pod: Option<&'static str>,
    want_result: Option<&'static str>,
}

fn case(name: &'static str, want: (TaskPhase, &'static str, &'static str)) -> Case {
    Case {
        name,
        suspend: false,
        cancel: None,
        queued: None,
        job: None,
        pods: vec![],
        events: vec![],
        want,
        want_pod: None,
        want_result: None,
    }
}

#[test]
fn phase_reason_and_message_from_job_pods_and_events() {
    use TaskPhase::*;
    let failed_job = job(
        json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True",
        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
    );
    let cases = vec![
        Case {
            queued: Some(QueueSlot {
                position: 3,
                waiting: 7,
                limit: "agent claude-code runs 5 of maxConcurrent 5".into(),
            }),
            ..case(
                "over the agent's limit: queued with its position, no Job",
                (
                    Pending,
                    "Queued",
                    "queued: position 3 of 7 waiting; agent claude-code runs 5 of maxConcurrent 5",
                ),
            )
        },
        case(
            "no Job yet, nothing holds it back",
            (Pending, "Pending", "no Job yet; the controller creates it"),
        ),
        Case {
            suspend: true,
            ..case(
                "suspend: true before any Job",
                (
                    Pending,
                    "Suspended",
                    "no Job runs: task.yaml says suspend: true; remove it (in a commit) to resume",
                ),
            )
        },
        Case {
            suspend: true,
            job: Some(job(json!({"active": 1, "ready": 1}))),
            ..case(
                "suspend: true on a running Job",
                (
                    Pending,
                    "Suspended",
                    "Job web-42-v1 is suspended: task.yaml says suspend: true; remove it (in a commit) to resume",
                ),
            )
        },
        Case {
            job: Some(suspended_job()),
            ..case(
                "a Job suspended by hand",
                (
                    Pending,
                    "Suspended",
                    "Job web-42-v1 is suspended: task.yaml says suspend: true; remove it (in a commit) to resume",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            events: vec![
                event("Normal", "SuccessfulCreate", "ignored"),
                event(
                    "Warning",
                    "FailedCreate",
                    "Error creating: pods \"web-42-v1-x\" is forbidden: error looking up service account tasks/agent: serviceaccount \"agent\" not found",
                ),
            ],
            ..case(
                "missing ServiceAccount: the Job controller's FailedCreate event",
                (
                    Pending,
                    "FailedCreate",
                    "Job web-42-v1 cannot create its Pod: Error creating: pods \"web-42-v1-x\" is forbidden: error looking up service account tasks/agent: serviceaccount \"agent\" not found",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
            )],
            want_pod: Some("web-42-v1-a"),
            ..case(
                "no node fits: Unschedulable, not Running although the Job is active",
                (
                    Pending,
                    "Unschedulable",
                    "Pod web-42-v1-a cannot be scheduled: 0/3 nodes are available: 3 Insufficient cpu.",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                waiting("ImagePullBackOff", "Back-off pulling image \"img:9\""),
            )],
            want_pod: Some("web-42-v1-a"),
            ..case(
                "image pull back-off",
                (
                    Pending,
                    "ImagePullBackOff",
                    "Pod web-42-v1-a cannot start: ImagePullBackOff: Back-off pulling image \"img:9\"",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                waiting("ErrImagePull", "rpc error: not found"),
            )],
            want_pod: Some("web-42-v1-a"),
            ..case(
                "image pull error",
                (
                    Pending,
                    "ErrImagePull",
                    "Pod web-42-v1-a cannot start: ErrImagePull: rpc error: not found",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                waiting(
                    "CreateContainerConfigError",
                    "secret \"agent-credentials\" not found",
                ),
            )],
            want_pod: Some("web-42-v1-a"),
            ..case(
                "missing Secret: CreateContainerConfigError with its message",
                (
                    Pending,
                    "CreateContainerConfigError",
                    "Pod web-42-v1-a cannot start: CreateContainerConfigError: secret \"agent-credentials\" not found",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                waiting("ContainerCreating", ""),
            )],
            want_pod: Some("web-42-v1-a"),
            ..case(
                "container creating: Pending, not blocked",
                (
                    Pending,
                    "JobCreated",
                    "Job web-42-v1 created; Pod web-42-v1-a is starting",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            ..case(
                "Job active with no Pod and no event yet",
                (
                    Pending,
                    "JobCreated",
                    "Job web-42-v1 created; waiting for its Pod",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1, "ready": 1}))),
            ..case(
                "Job ready ≥ 1: Running",
                (Running, "Running", "Job web-42-v1 is running (Pod its Pod)"),
            )
        },
        Case {
            job: Some(job(json!({"active": 1}))),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                json!({"phase": "Running"}),
            )],
            want_pod: Some("web-42-v1-a"),
            ..case(
                "Pod phase Running: Running",
                (
                    Running,
                    "Running",
                    "Job web-42-v1 is running (Pod web-42-v1-a)",
                ),
            )
        },
        Case {
            job: Some(job(json!({"active": 1, "failed": 1}))),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                terminated("Failed", 1, "Error", Some("tests failed")),
            )],
            want_pod: Some("web-42-v1-a"),
            want_result: Some("tests failed"),
            ..case(
                "between attempts: the failed one is named",
                (
                    Pending,
                    "JobCreated",
                    "Job web-42-v1: last attempt (Pod web-42-v1-a) exited with code 1 (Error): tests failed; waiting for the next attempt",
                ),
            )
        },
        Case {
            job: Some(job(
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
            )),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                terminated("Succeeded", 0, "Completed", Some("opened PR #12\n")),
            )],
            want_pod: Some("web-42-v1-a"),
            want_result: Some("opened PR #12"),
            ..case(
                "Complete: Succeeded with the result",
                (Succeeded, "Succeeded", "Job web-42-v1 succeeded"),
            )
        },
        Case {
            job: Some(failed_job.clone()),
            pods: vec![
                pod(
                    "web-42-v1-b",
                    "2026-01-01T10:01:00Z",
                    terminated("Failed", 137, "OOMKilled", None),
                ),
                pod(
                    "web-42-v1-a",
                    "2026-01-01T10:00:00Z",
                    terminated("Failed", 1, "Error", Some("first")),
                ),
            ],
            want_pod: Some("web-42-v1-b"),
            ..case(
                "BackoffLimitExceeded names the last attempt's exit code and reason",
                (
                    Failed,
                    "BackoffLimitExceeded",
                    "Job web-42-v1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit; last attempt (Pod web-42-v1-b) exited with code 137 (OOMKilled)",
                ),
            )
        },
        Case {
            job: Some(failed_job.clone()),
            pods: vec![pod(
                "web-42-v1-a",
                "2026-01-01T10:00:00Z",
                terminated(
                    "Failed",
                    2,
                    "Error",
                    Some("line 1\nnpm ERR! missing script: test\n"),
                ),
            )],
            want_pod: Some("web-42-v1-a"),
            want_result: Some("line 1\nnpm ERR! missing script: test"),
            ..case(
                "FallbackToLogsOnError: the log tail is the result, its last line in the message",
                (
                    Failed,
                    "BackoffLimitExceeded",
                    "Job web-42-v1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit; last attempt (Pod web-42-v1-a) exited with code 2 (Error): npm ERR! missing script: test",
                ),
            )
        },
        Case {
            job: Some(job(
                json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]}),
            )),
            ..case(
                "DeadlineExceeded",
                (
                    Failed,
                    "DeadlineExceeded",
                    "Job web-42-v1 failed: DeadlineExceeded: Job was active longer than specified deadline",
                ),
            )
        },
        Case {
            cancel: Some(Cancel {
                by: "ana".into(),
                at: "2026-01-01T10:02:00Z".into(),
            }),
            job: Some(job(json!({"active": 1, "ready": 1}))),
            ..case(
                "cancel of a running Job",
                (
                    Failed,
                    "Cancelled",
                    "cancelled by ana at 2026-01-01T10:02:00Z",
                ),
            )
        },
        Case {
            cancel: Some(Cancel {
                by: "ana".into(),
                at: "2026-01-01T10:02:00Z".into(),
            }),
            job: Some(failed_job),
            ..case(
                "cancel wins over the failure it caused",
                (
                    Failed,
                    "Cancelled",
                    "cancelled by ana at 2026-01-01T10:02:00Z",
                ),
            )
        },
        Case {
            cancel: Some(Cancel {
                by: "ana".into(),
                at: "2026-01-01T10:02:00Z".into(),
            }),
            job: Some(job(
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
            )),
            ..case(
                "a Job that finished first stays Succeeded",
                (Succeeded, "Succeeded", "Job web-42-v1 succeeded"),
            )
        },
    ];
    for c in &cases {
        let got = lifecycle(&LifecycleInput {
            suspend: c.suspend,
            cancel: c.cancel.as_ref(),
            queued: c.queued.as_ref(),
            job: c.job.as_ref(),
            pods: &c.pods,
            events: &c.events,
        });
        assert_eq!(
            (got.phase, got.reason, got.message.as_str()),
            c.want,
            "{}",
            c.name
        );
        assert_eq!(got.pod_name.as_deref(), c.want_pod, "{}", c.name);
        assert_eq!(got.result.as_deref(), c.want_result, "{}", c.name);
    }
}

#[test]
fn results_are_cut_to_four_kib_at_a_character_boundary() {
    let cases = [
        ("short".to_string(), "short".to_string()),
        ("x".repeat(4096), "x".repeat(4096)),
    ];
    for (input, want) in cases {
        assert_eq!(fit_result(&input), want);
    }
    let long = "é".repeat(3000); // 6000 bytes
    let cut = fit_result(&long);
    assert!(cut.len() <= MAX_RESULT_BYTES, "{}", cut.len());
    assert!(cut.ends_with(" […]"));
}

#[test]
fn stalled_after_the_threshold_only_for_blocking_reasons() {
    use TaskPhase::*;
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let five = Duration::from_secs(300);
    let since = t("2026-01-01T10:00:00Z");
    // (phase, reason, blocked since, now, want)
    let cases = [
        (
            Pending,
            "ImagePullBackOff",
            None,
            "2026-01-01T10:00:00Z",
            Stall::Blocked { since },
        ),
        (
            Pending,
            "ImagePullBackOff",
            Some(since),
            "2026-01-01T10:04:59Z",
            Stall::Blocked { since },
        ),
        (
            Pending,
            "ErrImagePull",
            Some(since),
            "2026-01-01T10:05:00Z",
            Stall::Stalled { since },
        ),
        (
            Pending,
            "FailedCreate",
            Some(since),
            "2026-01-01T11:00:00Z",
            Stall::Stalled { since },
        ),
        (
            Pending,
            "JobCreated",
            Some(since),
            "2026-01-01T10:06:00Z",
            Stall::Stalled { since },
        ),
        (
            Pending,
            "Queued",
            Some(since),
            "2026-01-01T12:00:00Z",
            Stall::Clear,
        ),
        (
            Pending,
            "Suspended",
            Some(since),
            "2026-01-01T12:00:00Z",
            Stall::Clear,
        ),
        (
            Running,
            "Running",
            Some(since),
            "2026-01-01T12:00:00Z",
            Stall::Clear,
        ),
        (
            Failed,
            "BackoffLimitExceeded",
            Some(since),
            "2026-01-01T12:00:00Z",
            Stall::Clear,
        ),
    ];
    for (phase, reason, blocked, now, want) in cases {
        assert_eq!(
            stall(phase, reason, blocked, t(now), five),
            want,
            "{reason} at {now}"
        );
    }
    // A per-profile threshold.
    assert_eq!(
        stall(
            Pending,
            "Unschedulable",
            Some(since),
            t("2026-01-01T10:00:30Z"),
            Duration::from_secs(30)
        ),
        Stall::Stalled { since }
    );
}
