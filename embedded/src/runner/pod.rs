//! The Pod that stands for one local attempt, pure: a Job and an attempt's state in, the Pod
//! object and its status patches out, so that `kubectl get pods` shows what the runner runs.
//!
//! Labelled and owned as the Job controller labels and owns its pods (`job-name`,
//! `controller-uid` and their `batch.kubernetes.io/` forms; a controller owner reference to the
//! Job), so deleting the Job garbage-collects them.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// The node name the local runner's pods report.
pub const NODE_NAME: &str = "orchestrator-local-runner";

/// The Pod to create for an attempt (`generateName: <job>-`).
pub fn pod_for(job: &Job) -> Value {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| &s.template);
    let mut labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (key, value) in [
        ("batch.kubernetes.io/job-name", &name),
        ("job-name", &name),
        ("batch.kubernetes.io/controller-uid", &uid),
        ("controller-uid", &uid),
    ] {
        labels.insert(key.to_string(), value.clone());
    }
    let mut spec = template
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({"containers": []}));
    spec["nodeName"] = json!(NODE_NAME);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{name}-"),
            "namespace": job.metadata.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    })
}

/// Annotations on a runner Pod that locate its container's log, for `pods/log`: the log file,
/// and the byte range of this attempt in it (the end is set when the attempt ends).
pub const ANNOTATION_POD_LOG_PATH: &str = "kube-envtest.io/log-path";
pub const ANNOTATION_POD_LOG_START: &str = "kube-envtest.io/log-start";
pub const ANNOTATION_POD_LOG_END: &str = "kube-envtest.io/log-end";

/// The kubelet's waiting reasons the runner reports.
pub const REASON_CONTAINER_CREATING: &str = "ContainerCreating";
pub const REASON_CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";

/// How far the attempt has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// The Pod exists, its container has not started (`ContainerCreating`,
    /// `CreateContainerConfigError`): phase Pending.
    Waiting {
        since: Timestamp,
        reason: &'static str,
        message: Option<String>,
    },
    Running {
        started: Timestamp,
    },
    Exited {
        started: Timestamp,
        finished: Timestamp,
        /// `None` when killed by a signal (reported as 137, as the kubelet reports SIGKILL).
        exit_code: Option<i32>,
        /// The termination message (the file at `terminationMessagePath`, or the log's end).
        message: Option<String>,
    },
    /// The process never started (no command, missing ConfigMap, program not found).
    NotStarted {
        at: Timestamp,
    },
}

/// The status merge patch for the Pod.
pub fn pod_status_patch(job: &Job, state: PodState) -> Value {
    let container = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first());
    let name = container.map(|c| c.name.clone()).unwrap_or_default();
    let image = container.and_then(|c| c.image.clone()).unwrap_or_default();
    let time = |t: Timestamp| {
        Timestamp::from_second(t.as_second())
            .unwrap_or(t)
            .to_string()
    };
    let (phase, ready, start, container_state) = match state {
        PodState::Waiting {
            since,
            reason,
            message,
        } => {
            let mut waiting = json!({"reason": reason});
            if let Some(m) = message {
                waiting["message"] = json!(m);
            }
            ("Pending", false, since, json!({ "waiting": waiting }))
        }
        PodState::Running { started } => (
            "Running",
            true,
            started,
            json!({"running": {"startedAt": time(started)}}),
        ),
        PodState::Exited {
            started,
            finished,
            exit_code,
            message,
        } => {
            let code = exit_code.unwrap_or(137);
            let mut terminated = json!({
                "exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": time(started),
                "finishedAt": time(finished),
            });
            if let Some(m) = message.filter(|m| !m.is_empty()) {
                terminated["message"] = json!(m);
            }
            (
                if code == 0 { "Succeeded" } else { "Failed" },
                false,
                started,
                json!({ "terminated": terminated }),
            )
        }
        PodState::NotStarted { at } => (
            "Failed",
            false,
            at,
            json!({"terminated": {"exitCode": 128, "reason": "StartError",
                                  "startedAt": time(at), "finishedAt": time(at)}}),
        ),
    };
    let ready_status = if ready { "True" } else { "False" };
    let started = container_state.get("waiting").is_none() && phase == "Running";
    json!({"status": {
        "phase": phase,
        "startTime": time(start),
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": time(start)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": time(start)},
            {"type": "ContainersReady", "status": ready_status, "lastTransitionTime": time(start)},
            {"type": "Ready", "status": ready_status, "lastTransitionTime": time(start)},
        ],
        "containerStatuses": [{
            "name": name,
            "image": image,
            "imageID": "",
            "ready": ready,
            "started": started,
            "restartCount": 0,
            "state": container_state,
        }],
    }})
}

/// The kubelet's limits on a termination message: 4096 bytes from the file; on fallback, the
/// last 80 lines of the log, at most 2048 bytes.
pub const MAX_TERMINATION_MESSAGE_BYTES: usize = 4096;
pub const FALLBACK_LOG_LINES: usize = 80;
pub const FALLBACK_LOG_BYTES: usize = 2048;

/// The termination message as the kubelet reads it: the last 4096 bytes of the file; when that
/// is empty, the container failed and the policy is `FallbackToLogsOnError`, the end of the log.
pub fn termination_message(
    file: &[u8],
    log: &[u8],
    failed: bool,
    fallback_to_logs: bool,
) -> String {
    let tail = |bytes: &[u8], max: usize| {
        let cut = bytes.len().saturating_sub(max);
        String::from_utf8_lossy(&bytes[cut..]).into_owned()
    };
    if !file.is_empty() {
        return tail(file, MAX_TERMINATION_MESSAGE_BYTES);
    }
    if !(failed && fallback_to_logs) {
        return String::new();
    }
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(FALLBACK_LOG_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    tail(&log[start..], FALLBACK_LOG_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1-v1", "namespace": "tasks", "uid": "u-1"},
            "spec": {"template": {
                "metadata": {"labels": {"task-id": "1"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1", "command": ["true"]}]}
            }}
        }))
        .expect("job")
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    #[test]
    fn the_pod_is_labelled_and_owned_like_a_job_controller_pod() {
        let pod = pod_for(&job());
        assert_eq!(pod["metadata"]["generateName"], "web-1-v1-");
        assert_eq!(pod["metadata"]["namespace"], "tasks");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["job-name"], "web-1-v1");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "web-1-v1");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels["task-id"], "1", "template labels are kept");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Job");
        assert_eq!(owner["uid"], "u-1");
        assert_eq!(owner["controller"], true);
        assert_eq!(pod["spec"]["nodeName"], NODE_NAME);
        assert_eq!(pod["spec"]["containers"][0]["image"], "agent:1");
    }

    #[test]
    fn pod_phases_follow_the_process() {
        for (state, phase, ready, code) in [
            (PodState::Running { started: t(0) }, "Running", true, None),
            (
                PodState::Exited {
                    started: t(0),
                    finished: t(2),
                    exit_code: Some(0),
                    message: None,
                },
                "Succeeded",
                false,
                Some(0),
            ),
            (
                PodState::Exited {
                    started: t(0),
                    finished: t(2),
                    exit_code: Some(3),
                    message: None,
                },
                "Failed",
                false,
                Some(3),
            ),
            (
                PodState::Exited {
                    started: t(0),
                    finished: t(2),
                    exit_code: None,
                    message: None,
                },
                "Failed",
                false,
                Some(137),
            ),
            (
                PodState::NotStarted { at: t(0) },
                "Failed",
                false,
                Some(128),
            ),
        ] {
            let patch = pod_status_patch(&job(), state.clone());
            let status = &patch["status"];
            assert_eq!(status["phase"], phase, "{state:?}");
            assert_eq!(status["containerStatuses"][0]["ready"], ready, "{state:?}");
            assert_eq!(
                status["containerStatuses"][0]["state"]["terminated"]["exitCode"].as_i64(),
                code.map(i64::from),
                "{state:?}"
            );
            assert_eq!(status["startTime"], "2027-01-15T08:00:00Z");
        }
        let waiting = pod_status_patch(
            &job(),
            PodState::Waiting {
                since: t(0),
                reason: REASON_CREATE_CONTAINER_CONFIG_ERROR,
                message: Some("secret \"x\" not found".into()),
            },
        );
        assert_eq!(waiting["status"]["phase"], "Pending");
        assert_eq!(
            waiting["status"]["containerStatuses"][0]["state"]["waiting"],
            json!({"reason": "CreateContainerConfigError", "message": "secret \"x\" not found"})
        );
    }

    #[test]
    fn termination_messages_are_read_as_the_kubelet_reads_them() {
        let big = vec![b'x'; 5000];
        assert_eq!(termination_message(&big, b"", false, false).len(), 4096);
        assert_eq!(termination_message(b"done", b"log", true, true), "done");
        assert_eq!(termination_message(b"", b"log\n", true, false), "");
        assert_eq!(
            termination_message(b"", b"log\n", false, true),
            "",
            "only on failure"
        );
        let log: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let msg = termination_message(b"", log.as_bytes(), true, true);
        assert!(msg.starts_with("line 21\n"), "the last 80 lines: {msg:?}");
        assert!(msg.ends_with("line 100\n"));
        let long = "y".repeat(3000);
        assert_eq!(
            termination_message(b"", long.as_bytes(), true, true).len(),
            2048
        );
    }
}
