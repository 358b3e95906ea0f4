//! The simulated Job runner on the embedded API server: Jobs in, no processes, and the Job
//! status a real run would leave after the configured delay and outcome. Needs the local
//! runner, so it skips (with a printed reason) when tests/support hands out a real cluster.

mod support;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube_envtest::runner::ANNOTATION_LOG_PATH;
use kube_envtest::runner::{JobRunner, RunnerConfig, SimulatedOutcome};
use serde_json::json;
use std::time::{Duration, Instant};

fn job(name: &str, backoff_limit: i32) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "agent", "image": "agent", "command": ["false"]}]
        }}}
    }))
    .expect("valid Job")
}

fn condition(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
}

/// Lists until every Job has a terminal condition, or panics after `timeout`.
async fn wait_all_finished(jobs: &Api<Job>, count: usize, timeout: Duration) -> Vec<Job> {
    let start = Instant::now();
    loop {
        let list = jobs.list(&ListParams::default()).await.expect("list Jobs");
        let done = list.items.iter().filter(|j| condition(j).is_some()).count();
        if done == count {
            return list.items;
        }
        assert!(
            start.elapsed() < timeout,
            "{done} of {count} Jobs finished within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn simulated_jobs_complete_after_the_delay_without_running_anything() {
    let cluster = support::cluster().await;
    if !cluster.is_embedded() {
        eprintln!("skipping: the simulated runner only runs against the embedded server");
        return;
    }
    let client = cluster.client.clone();
    let ns = cluster.namespace.clone();
    let jobs: Api<Job> = cluster.api();
    let delay = Duration::from_millis(300);
    let runner = JobRunner::start(
        client.clone(),
        RunnerConfig {
            namespace: Some(ns.clone()),
            ..RunnerConfig::simulated(delay, SimulatedOutcome::Succeed)
        },
    );
    let start = Instant::now();
    let count = 100;
    join_all((0..count).map(|i| {
        let jobs = jobs.clone();
        async move {
            jobs.create(&PostParams::default(), &job(&format!("sim-{i}"), 0))
                .await
                .expect("create Job")
        }
    }))
    .await;
    let finished = wait_all_finished(&jobs, count, Duration::from_secs(30)).await;
    assert!(
        start.elapsed() >= delay,
        "nothing finishes before the delay"
    );
    for j in &finished {
        // The command is `false`: had it run, the Job would have failed.
        assert_eq!(
            condition(j),
            Some(("Complete".to_string(), "CompletionsReached".to_string()))
        );
        let status = j.status.as_ref().expect("status");
        assert_eq!(status.succeeded, Some(1));
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        assert!(
            j.metadata
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key(ANNOTATION_LOG_PATH)),
            "no log file in simulated mode"
        );
    }
    runner.shutdown().await;
}

#[tokio::test]
async fn simulated_failures_use_up_the_backoff_limit() {
    let cluster = support::cluster().await;
    if !cluster.is_embedded() {
        eprintln!("skipping: the simulated runner only runs against the embedded server");
        return;
    }
    let client = cluster.client.clone();
    let ns = cluster.namespace.clone();
    let jobs: Api<Job> = cluster.api();
    let runner = JobRunner::start(
        client.clone(),
        RunnerConfig {
            namespace: Some(ns.clone()),
            retry_backoff: Duration::from_millis(50),
            ..RunnerConfig::simulated(Duration::from_millis(50), SimulatedOutcome::Fail)
        },
    );
    jobs.create(&PostParams::default(), &job("sim-fail", 2))
        .await
        .expect("create Job");
    let finished = wait_all_finished(&jobs, 1, Duration::from_secs(20)).await;
    assert_eq!(
        condition(&finished[0]),
        Some(("Failed".to_string(), "BackoffLimitExceeded".to_string()))
    );
    assert_eq!(finished[0].status.as_ref().and_then(|s| s.failed), Some(3));
    runner.shutdown().await;
}
