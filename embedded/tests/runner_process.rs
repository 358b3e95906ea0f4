//! The local Job runner on the embedded API server, driven only through kube-rs: Jobs in,
//! local processes, log files and Job status out. Needs the local runner, so it skips (with a
//! printed reason) when tests/support hands out a real cluster.

mod support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use kube_envtest::runner::ANNOTATION_LOG_PATH;
use kube_envtest::runner::process::group_alive;
use kube_envtest::runner::{JobRunner, RunnerConfig, RunnerHandle};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A namespace of its own, a runner watching only it, and a log directory.
struct Setup {
    client: Client,
    jobs: Api<Job>,
    namespace: String,
    logs: tempfile::TempDir,
    _cluster: support::TestCluster,
}

async fn setup(test: &str) -> Option<Setup> {
    let cluster = support::cluster().await;
    if !cluster.is_embedded() {
        eprintln!("skipping {test}: the local Job runner only runs against the embedded server");
        return None;
    }
    Some(Setup {
        jobs: cluster.api(),
        client: cluster.client.clone(),
        namespace: cluster.namespace.clone(),
        logs: tempfile::tempdir().expect("log dir"),
        _cluster: cluster,
    })
}

impl Setup {
    fn config(&self) -> RunnerConfig {
        RunnerConfig {
            namespace: Some(self.namespace.clone()),
            retry_backoff: Duration::from_millis(100),
            ..RunnerConfig::new(self.logs.path())
        }
    }

    fn runner(&self) -> RunnerHandle {
        JobRunner::start(self.client.clone(), self.config())
    }

    async fn create_job(&self, name: &str, spec: serde_json::Value) -> Job {
        let mut spec = spec;
        spec["template"]["spec"]["restartPolicy"] = json!("Never");
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }))
        .expect("valid Job");
        self.jobs
            .create(&PostParams::default(), &job)
            .await
            .expect("create Job")
    }

    /// Polls the Job until `done` holds or `timeout` passes.
    async fn wait_for(&self, name: &str, timeout: Duration, done: impl Fn(&Job) -> bool) -> Job {
        let start = Instant::now();
        loop {
            let job = self.jobs.get(name).await.expect("get Job");
            if done(&job) {
                return job;
            }
            assert!(
                start.elapsed() < timeout,
                "Job {name} did not get there within {timeout:?}; last status: {:?}",
                job.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The phases of the Pods that mirror the Job's attempts (`kubectl get pods -l job-name=`).
    async fn pod_phases(&self, job: &str) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        pods.list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .expect("list Pods")
            .items
            .into_iter()
            .map(|p| p.status.and_then(|s| s.phase).unwrap_or_default())
            .collect()
    }

    /// The Job's Pods.
    async fn pods(&self, job: &str) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        pods.list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .expect("list Pods")
            .items
    }

    /// Waits until the Job's Pod waits (phase Pending); its (reason, message).
    async fn wait_for_pod_waiting(&self, job: &str, timeout: Duration) -> (String, String) {
        let start = Instant::now();
        loop {
            for pod in self.pods(job).await {
                let status = pod.status.unwrap_or_default();
                let waiting = status
                    .container_statuses
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|c| c.state.and_then(|s| s.waiting));
                if let (Some("Pending"), Some(w)) = (status.phase.as_deref(), waiting) {
                    return (w.reason.unwrap_or_default(), w.message.unwrap_or_default());
                }
            }
            assert!(start.elapsed() < timeout, "no Pod of {job} is waiting");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_log(&self, name: &str, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(path) = self
                .jobs
                .get(name)
                .await
                .expect("get Job")
                .metadata
                .annotations
                .and_then(|a| a.get(ANNOTATION_LOG_PATH).cloned())
            {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                if log.contains(text) {
                    return log;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "the log of Job {name} never showed {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A container running `sh -c script`. Kubernetes reduces `$$` to `$` in commands (its `$(VAR)`
/// escape), so the shell's own pid is written `$$$$`.
fn shell(script: &str) -> serde_json::Value {
    json!({"name": "agent", "image": "busybox", "command": ["sh", "-c", script]})
}

/// (type, reason) of each True condition.
fn conditions(job: &Job) -> Vec<(String, String)> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.status == "True")
        .map(|c| (c.type_, c.reason.unwrap_or_default()))
        .collect()
}

fn has_condition(job: &Job, type_: &str) -> bool {
    conditions(job).iter().any(|(t, _)| t == type_)
}

fn log_path(job: &Job) -> PathBuf {
    PathBuf::from(
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_LOG_PATH))
            .expect("the runner records the log path on the Job"),
    )
}

fn pid_in(log: &str) -> i32 {
    log.lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the process printed its pid: {log:?}"))
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[tokio::test]
async fn a_job_that_exits_0_is_complete_with_its_output_in_the_log_file() {
    let Some(s) = setup("success").await else {
        return;
    };
    let runner = s.runner();
    s.create_job(
        "ok",
        json!({"template": {"spec": {"containers": [shell("echo hello-from-job; echo oops >&2")]}}}),
    )
    .await;
    let job = s
        .wait_for("ok", Duration::from_secs(20), |j| {
            has_condition(j, "Complete")
        })
        .await;
    let status = job.status.clone().expect("status");
    assert_eq!(status.succeeded, Some(1));
    assert_eq!(status.failed, None);
    assert_eq!(status.active, None);
    assert_eq!(status.ready, Some(0));
    let (start, end) = (
        status.start_time.expect("startTime").0,
        status.completion_time.expect("completionTime").0,
    );
    assert!(start <= end);
    assert_eq!(
        conditions(&job),
        vec![
            pair("SuccessCriteriaMet", "CompletionsReached"),
            pair("Complete", "CompletionsReached")
        ]
    );
    let path = log_path(&job);
    assert!(path.starts_with(s.logs.path()), "{}", path.display());
    let log = std::fs::read_to_string(&path).expect("read log");
    assert!(log.contains("hello-from-job\n"), "{log}");
    assert!(
        log.contains("oops\n"),
        "stderr goes to the same file: {log}"
    );
    assert_eq!(s.pod_phases("ok").await, vec!["Succeeded".to_string()]);
    let mut s = s;
    if let Some(out) = s
        ._cluster
        .kubectl(&["get", "pods", "-l", "job-name=ok"])
        .await
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("ok-"),
            "kubectl get pods: {text}"
        );
        println!("{text}");
    }
    runner.shutdown().await;
}

#[tokio::test]
async fn a_failing_job_is_retried_up_to_its_backoff_limit_then_failed() {
    let Some(s) = setup("failure with retries").await else {
        return;
    };
    let runner = s.runner();
    s.create_job(
        "fails",
        json!({"backoffLimit": 2, "template": {"spec": {"containers": [shell("echo ran-once; exit 1")]}}}),
    )
    .await;
    let job = s
        .wait_for("fails", Duration::from_secs(20), |j| {
            has_condition(j, "Failed")
        })
        .await;
    let status = job.status.clone().expect("status");
    assert_eq!(
        status.failed,
        Some(3),
        "backoffLimit 2 means three attempts"
    );
    assert_eq!(status.succeeded, None);
    assert_eq!(status.active, None);
    assert_eq!(
        status.completion_time, None,
        "only a success sets completionTime"
    );
    assert_eq!(
        conditions(&job),
        vec![
            pair("FailureTarget", "BackoffLimitExceeded"),
            pair("Failed", "BackoffLimitExceeded")
        ]
    );
    let log = std::fs::read_to_string(log_path(&job)).expect("read log");
    assert_eq!(log.matches("ran-once").count(), 3, "{log}");
    assert_eq!(s.pod_phases("fails").await, vec!["Failed".to_string(); 3]);
    runner.shutdown().await;
}

#[tokio::test]
async fn a_job_past_its_deadline_is_killed_and_failed() {
    let Some(s) = setup("deadline").await else {
        return;
    };
    let runner = s.runner();
    let started = Instant::now();
    s.create_job(
        "slow",
        json!({"activeDeadlineSeconds": 1, "backoffLimit": 3,
               "template": {"spec": {"containers": [shell("echo pid=$$$$; exec sleep 30")]}}}),
    )
    .await;
    let log = s
        .wait_for_log("slow", "pid=", Duration::from_secs(10))
        .await;
    let pid = pid_in(&log);
    let job = s
        .wait_for("slow", Duration::from_secs(10), |j| {
            has_condition(j, "Failed")
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        conditions(&job),
        vec![
            pair("FailureTarget", "DeadlineExceeded"),
            pair("Failed", "DeadlineExceeded")
        ]
    );
    let status = job.status.expect("status");
    assert_eq!(
        status.failed,
        Some(1),
        "the killed attempt counts as failed"
    );
    assert_eq!(status.active, None);
    assert!(!group_alive(pid), "the process group is gone");
    runner.shutdown().await;
}

#[tokio::test]
async fn deleting_a_job_kills_its_process() {
    let Some(s) = setup("deletion").await else {
        return;
    };
    let runner = s.runner();
    s.create_job(
        "doomed",
        json!({"template": {"spec": {"containers": [shell("echo pid=$$$$; sleep 30 & wait")]}}}),
    )
    .await;
    let log = s
        .wait_for_log("doomed", "pid=", Duration::from_secs(10))
        .await;
    let pid = pid_in(&log);
    assert!(group_alive(pid));
    s.jobs
        .delete("doomed", &DeleteParams::background())
        .await
        .expect("delete Job");
    let start = Instant::now();
    while group_alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the process outlived its Job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.shutdown().await;
}

#[tokio::test]
async fn mounted_config_maps_and_env_from_secrets_reach_the_process() {
    let Some(s) = setup("configmap volume").await else {
        return;
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.namespace);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "web-42-v1-files"},
        "data": {"prompt.md": "# Build the login page\n", "acceptance.md": "# Done when it logs in\n"}
    }))
    .expect("configmap");
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-token"},
        "data": {"token": "czNjcmV0"}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
    let runner = s.runner();
    s.create_job(
        "reads-files",
        json!({"template": {"spec": {
            "containers": [{
                "name": "agent", "image": "agent",
                "command": ["sh", "-c"],
                "args": ["cat $TASK_DIR/*.md; cat /workspace/task/prompt.md; echo token=$TOKEN; pwd"],
                "workingDir": "/workspace/task",
                "env": [
                    {"name": "TASK_DIR", "value": "/workspace/task"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "agent-token", "key": "token"}}}
                ],
                "volumeMounts": [{"name": "task", "mountPath": "/workspace/task"}]
            }],
            "volumes": [{"name": "task", "configMap": {"name": "web-42-v1-files"}}]
        }}}),
    )
    .await;
    let job = s
        .wait_for("reads-files", Duration::from_secs(20), |j| {
            has_condition(j, "Complete") || has_condition(j, "Failed")
        })
        .await;
    let log = std::fs::read_to_string(log_path(&job)).expect("read log");
    assert!(has_condition(&job, "Complete"), "{log}");
    assert_eq!(log.matches("# Build the login page").count(), 2, "{log}");
    assert!(log.contains("# Done when it logs in"), "{log}");
    assert!(log.contains("token=s3cret"), "{log}");
    assert!(
        log.lines().any(|l| l.ends_with("/workspace/task")),
        "the working directory is the local mount: {log}"
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn a_missing_config_map_volume_keeps_the_pod_creating_until_the_deadline() {
    let Some(s) = setup("missing configmap").await else {
        return;
    };
    let runner = s.runner();
    s.create_job(
        "no-files",
        json!({"backoffLimit": 0, "activeDeadlineSeconds": 3, "template": {"spec": {
            "containers": [{"name": "agent", "command": ["true"],
                            "volumeMounts": [{"name": "task", "mountPath": "/task"}]}],
            "volumes": [{"name": "task", "configMap": {"name": "absent-files"}}]
        }}}),
    )
    .await;
    // As on a kubelet: the Pod waits in ContainerCreating; the Job does not fail at once.
    let waiting = s
        .wait_for_pod_waiting("no-files", Duration::from_secs(20))
        .await;
    assert_eq!(waiting.0, "ContainerCreating");
    let job = s
        .wait_for("no-files", Duration::from_secs(20), |j| {
            has_condition(j, "Failed")
        })
        .await;
    assert_eq!(
        conditions(&job),
        vec![
            pair("FailureTarget", "DeadlineExceeded"),
            pair("Failed", "DeadlineExceeded")
        ]
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn a_restarted_runner_never_reruns_a_finished_job_and_restarts_an_interrupted_one() {
    let Some(s) = setup("restart").await else {
        return;
    };
    let first = s.runner();
    s.create_job(
        "finished",
        json!({"template": {"spec": {"containers": [shell("echo finished-run")]}}}),
    )
    .await;
    s.wait_for("finished", Duration::from_secs(20), |j| {
        has_condition(j, "Complete")
    })
    .await;
    s.create_job(
        "interrupted",
        json!({"backoffLimit": 0, "template": {"spec": {"containers": [shell("echo began; sleep 1; echo ended")]}}}),
    )
    .await;
    s.wait_for_log("interrupted", "began", Duration::from_secs(10))
        .await;
    first.shutdown().await;

    let second = s.runner();
    let job = s
        .wait_for("interrupted", Duration::from_secs(20), |j| {
            has_condition(j, "Complete")
        })
        .await;
    let status = job.status.clone().expect("status");
    assert_eq!(
        status.failed, None,
        "an interruption by the runner is not a failure"
    );
    let log = std::fs::read_to_string(log_path(&job)).expect("read log");
    assert_eq!(log.matches("began").count(), 2, "{log}");
    assert_eq!(log.matches("ended").count(), 1, "{log}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let finished = s.jobs.get("finished").await.expect("get Job");
    let log = std::fs::read_to_string(log_path(&finished)).expect("read log");
    assert_eq!(log.matches("finished-run").count(), 1, "{log}");
    second.shutdown().await;
}

#[tokio::test]
async fn a_missing_secret_is_create_container_config_error_until_it_appears() {
    let Some(s) = setup("missing secret").await else {
        return;
    };
    let runner = s.runner();
    s.create_job(
        "needs-secret",
        json!({"backoffLimit": 0, "template": {"spec": {"containers": [{
            "name": "agent", "command": ["sh", "-c", "echo token=$TOKEN"],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "t"}}}]
        }]}}}),
    )
    .await;
    let (reason, message) = s
        .wait_for_pod_waiting("needs-secret", Duration::from_secs(20))
        .await;
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(message, "secret \"late\" not found");
    // A waiting Pod is active, not ready, as the Job controller counts it.
    let job = s
        .wait_for("needs-secret", Duration::from_secs(10), |j| {
            j.status.as_ref().and_then(|st| st.active) == Some(1)
        })
        .await;
    assert_eq!(job.status.as_ref().and_then(|st| st.ready), Some(0));
    assert!(!has_condition(&job, "Failed"), "no instant failure");

    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.namespace);
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "late"}, "stringData": {"t": "s3"}}))
            .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let job = s
        .wait_for("needs-secret", Duration::from_secs(20), |j| {
            has_condition(j, "Complete")
        })
        .await;
    let log = std::fs::read_to_string(log_path(&job)).unwrap();
    assert!(log.contains("token=s3"), "{log}");
    runner.shutdown().await;
}

#[tokio::test]
async fn a_pod_that_cannot_be_created_leaves_the_job_active_with_failed_create_events() {
    use k8s_openapi::api::core::v1::Event;
    let Some(s) = setup("failed create").await else {
        return;
    };
    let runner = s.runner();
    let marker = s.logs.path().join("ran");
    s.create_job(
        "no-sa",
        json!({"backoffLimit": 0, "activeDeadlineSeconds": 4, "template": {"spec": {
            "serviceAccountName": "missing-sa",
            "containers": [shell(&format!("touch {}", marker.display()))]}}}),
    )
    .await;
    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.namespace);
    let start = Instant::now();
    let event = loop {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=no-sa"))
            .await
            .unwrap();
        if let Some(e) = list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedCreate"))
        {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no FailedCreate event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains("serviceaccount \"missing-sa\" not found"),
        "{message}"
    );
    let job = s.jobs.get("no-sa").await.unwrap();
    assert!(!has_condition(&job, "Failed"), "no instant failure");
    assert!(s.pods("no-sa").await.is_empty(), "no Pod");
    let job = s
        .wait_for("no-sa", Duration::from_secs(20), |j| {
            has_condition(j, "Failed")
        })
        .await;
    assert_eq!(
        conditions(&job).last(),
        Some(&pair("Failed", "DeadlineExceeded"))
    );
    assert_eq!(job.status.as_ref().and_then(|st| st.failed), None);
    assert!(!marker.exists(), "no process ran");
    runner.shutdown().await;
}

/// The terminated state of the Job's (only) Pod, once it has one.
async fn terminated(s: &Setup, job: &str) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    let start = Instant::now();
    loop {
        if let Some(t) = s.pods(job).await.into_iter().find_map(|p| {
            p.status?
                .container_statuses?
                .into_iter()
                .next()?
                .state?
                .terminated
        }) {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{job} never terminated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_termination_message_lands_on_the_pod_as_the_kubelet_puts_it() {
    let Some(s) = setup("termination message").await else {
        return;
    };
    let runner = s.runner();
    // The default path, rewritten in the command; a custom path, found through the env var;
    // a failure with FallbackToLogsOnError and an empty file; an oversized message.
    s.create_job(
        "default-path",
        json!({"template": {"spec": {"containers": [shell("echo all done > /dev/termination-log")]}}}),
    )
    .await;
    s.create_job(
        "custom-path",
        json!({"template": {"spec": {"containers": [{
            "name": "agent", "command": ["sh", "-c", "printf 'result: 42' > \"$TERMINATION_MESSAGE_PATH\""],
            "terminationMessagePath": "/results/message"}]}}}),
    )
    .await;
    s.create_job(
        "fallback",
        json!({"backoffLimit": 0, "template": {"spec": {"containers": [{
            "name": "agent", "command": ["sh", "-c", "echo first; echo it broke; exit 3"],
            "terminationMessagePolicy": "FallbackToLogsOnError"}]}}}),
    )
    .await;
    s.create_job(
        "oversized",
        json!({"template": {"spec": {"containers": [shell(
            "yes | head -c 6000 > /dev/termination-log"
        )]}}}),
    )
    .await;
    assert_eq!(
        terminated(&s, "default-path").await.message.as_deref(),
        Some("all done\n")
    );
    assert_eq!(
        terminated(&s, "custom-path").await.message.as_deref(),
        Some("result: 42")
    );
    let failed = terminated(&s, "fallback").await;
    assert_eq!(failed.exit_code, 3);
    assert_eq!(failed.message.as_deref(), Some("first\nit broke\n"));
    let big = terminated(&s, "oversized")
        .await
        .message
        .unwrap_or_default();
    assert_eq!(big.len(), 4096, "the kubelet keeps 4096 bytes");
    runner.shutdown().await;
}

#[tokio::test]
async fn suspending_a_job_kills_it_and_resuming_runs_it_again() {
    use kube::api::{Patch, PatchParams};
    let Some(s) = setup("suspend").await else {
        return;
    };
    let runner = s.runner();
    let second = s.logs.path().join("second-run");
    // The first run waits; the second (after the resume) finishes. The marker is written before
    // the pid is printed, so a suspend right after the print cannot catch the first run before it.
    let script = format!(
        "if [ -e {0} ]; then exit 0; fi; touch {0}; echo pid=$$$$; sleep 60",
        second.display()
    );
    s.create_job(
        "pausable",
        json!({"template": {"spec": {"containers": [shell(&script)]}}}),
    )
    .await;
    let log = s
        .wait_for_log("pausable", "pid=", Duration::from_secs(20))
        .await;
    let pid = pid_in(&log);
    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    s.jobs
        .patch(
            "pausable",
            &PatchParams::default(),
            &Patch::Merge(suspend(true)),
        )
        .await
        .unwrap();
    let job = s
        .wait_for("pausable", Duration::from_secs(20), |j| {
            has_condition(j, "Suspended")
        })
        .await;
    assert_eq!(conditions(&job), vec![pair("Suspended", "JobSuspended")]);
    assert_eq!(job.status.as_ref().and_then(|st| st.active), None);
    assert_eq!(
        job.status.as_ref().and_then(|st| st.failed),
        None,
        "not a failure"
    );
    let start = Instant::now();
    while group_alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the process group is killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.jobs
        .patch(
            "pausable",
            &PatchParams::default(),
            &Patch::Merge(suspend(false)),
        )
        .await
        .unwrap();
    let job = s
        .wait_for("pausable", Duration::from_secs(20), |j| {
            has_condition(j, "Complete")
        })
        .await;
    let suspended = job
        .status
        .and_then(|st| st.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Suspended")
        .expect("the Suspended condition stays, False");
    assert_eq!(
        (suspended.status.as_str(), suspended.reason.as_deref()),
        ("False", Some("JobResumed"))
    );

    // A Job created suspended starts nothing.
    s.create_job(
        "born-suspended",
        json!({"suspend": true, "template": {"spec": {"containers": [shell("echo never")]}}}),
    )
    .await;
    s.wait_for("born-suspended", Duration::from_secs(20), |j| {
        has_condition(j, "Suspended")
    })
    .await;
    assert!(s.pods("born-suspended").await.is_empty());
    runner.shutdown().await;
}

#[tokio::test]
async fn pod_logs_are_served_from_the_runner_log_files() {
    use futures::{AsyncBufReadExt, TryStreamExt};
    use kube::api::LogParams;
    let Some(mut s) = setup("pod logs").await else {
        return;
    };
    let runner = s.runner();
    s.create_job(
        "talks",
        json!({"template": {"spec": {"containers": [shell("echo one; echo two; echo three")]}}}),
    )
    .await;
    // Another Job whose Pod `kubectl logs job/talks` must not pick.
    s.create_job(
        "other",
        json!({"template": {"spec": {"containers": [shell("echo other-output")]}}}),
    )
    .await;
    for name in ["talks", "other"] {
        s.wait_for(name, Duration::from_secs(20), |j| {
            has_condition(j, "Complete")
        })
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let pod = s.pods("talks").await.remove(0).metadata.name.unwrap();
    let all = pods.logs(&pod, &LogParams::default()).await.unwrap();
    assert_eq!(
        all, "one\ntwo\nthree\n",
        "the container's output, nothing of the runner"
    );
    let tail = pods
        .logs(
            &pod,
            &LogParams {
                tail_lines: Some(2),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, "two\nthree\n");

    // Following a running container streams until it ends.
    s.create_job(
        "slow",
        json!({"template": {"spec": {"containers": [shell("echo start; sleep 1; echo end")]}}}),
    )
    .await;
    s.wait_for_log("slow", "start", Duration::from_secs(20))
        .await;
    let slow_pod = s.pods("slow").await.remove(0).metadata.name.unwrap();
    let lines: Vec<String> = pods
        .log_stream(
            &slow_pod,
            &LogParams {
                follow: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap()
        .lines()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(lines, ["start", "end"]);

    if let Some(out) = s._cluster.kubectl(&["logs", "job/talks", "--tail=1"]).await {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "three\n");
    }
    if let Some(out) = s._cluster.kubectl(&["logs", "job/other"]).await {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "other-output\n");
    }
    s.create_job(
        "followed",
        json!({"template": {"spec": {"containers": [shell("sleep 1; echo late")]}}}),
    )
    .await;
    s.wait_for_log("followed", "attempt 1", Duration::from_secs(20))
        .await;
    if let Some(out) = s
        ._cluster
        .kubectl(&["logs", "--follow", "job/followed"])
        .await
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
    }
    if let Some(out) = s._cluster.kubectl(&["get", "jobs"]).await {
        let text = String::from_utf8_lossy(&out.stdout);
        let header = text.lines().next().unwrap_or_default();
        let columns: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(
            columns,
            ["NAME", "COMPLETIONS", "DURATION", "AGE"],
            "{text}"
        );
        let talks = text
            .lines()
            .find(|l| l.starts_with("talks "))
            .unwrap_or_default();
        assert!(talks.split_whitespace().nth(1) == Some("1/1"), "{text}");
        println!("{text}");
    }
    runner.shutdown().await;
}
