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
async fn a_missing_config_map_fails_the_attempt_with_the_reason_in_the_log() {
    let Some(s) = setup("missing configmap").await else {
        return;
    };
    let runner = s.runner();
    s.create_job(
        "no-files",
        json!({"backoffLimit": 0, "template": {"spec": {
            "containers": [{"name": "agent", "command": ["true"],
                            "volumeMounts": [{"name": "task", "mountPath": "/task"}]}],
            "volumes": [{"name": "task", "configMap": {"name": "absent-files"}}]
        }}}),
    )
    .await;
    let job = s
        .wait_for("no-files", Duration::from_secs(20), |j| {
            has_condition(j, "Failed")
        })
        .await;
    let log = std::fs::read_to_string(log_path(&job)).expect("read log");
    assert!(
        log.contains("ConfigMap \"absent-files\" does not exist"),
        "{log}"
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
