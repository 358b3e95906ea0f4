//! The local Job runner on the embedded API server: N Jobs in, time until every one is Complete
//! and the runner's API writes per Job out; in simulated mode (the benchmarks' runner) and with
//! real processes (`true`).
//!
//! `cargo bench --bench runner [-- <simulated jobs> <process jobs>]` (defaults 1000 and 100).

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube_envtest::runner::status::is_finished;
use kube_envtest::runner::{JobRunner, RunnerConfig, SimulatedOutcome};
use kube_envtest::{ApiServer, ApiServerConfig};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn job(name: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "agent", "image": "agent", "command": ["true"]}]
        }}}
    }))
    .expect("valid Job")
}

struct Figures {
    created: Duration,
    all_complete: Duration,
    status_writes: u64,
    job_writes: u64,
    pod_writes: u64,
}

async fn run(count: usize, config: RunnerConfig) -> Figures {
    let server = ApiServer::start(ApiServerConfig::default())
        .await
        .expect("the embedded API server starts");
    let client = server.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let before = server.request_stats();
    let runner = JobRunner::start(client.clone(), config);

    // Count completions from a watch, so that polling does not compete with the runner.
    let watch_jobs = jobs.clone();
    let done = tokio::spawn(async move {
        let mut finished = HashSet::new();
        let mut events = watcher(watch_jobs, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(job)) = events.next().await {
            if job.status.as_ref().is_some_and(is_finished) {
                finished.insert(job.metadata.name.unwrap_or_default());
                if finished.len() == count {
                    return Instant::now();
                }
            }
        }
        Instant::now()
    });

    let start = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                jobs.create(&PostParams::default(), &job(&format!("bench-{i}")))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("create Jobs");
    let created = start.elapsed();
    let finished_at = tokio::time::timeout(Duration::from_secs(600), done)
        .await
        .expect("every Job finishes within 10 minutes")
        .expect("watch task");
    let all_complete = finished_at - start;
    runner.shutdown().await;
    let stats = server.request_stats();
    let status_writes =
        stats.writes_to("jobs.batch/status") - before.writes_to("jobs.batch/status");
    let job_writes = stats.count("jobs.batch", "patch") - before.count("jobs.batch", "patch");
    let pod_writes = stats.writes_to("pods") + stats.writes_to("pods/status")
        - before.writes_to("pods")
        - before.writes_to("pods/status");
    server.shutdown().await;
    Figures {
        created,
        all_complete,
        status_writes,
        job_writes,
        pod_writes,
    }
}

fn print(label: &str, count: usize, f: &Figures) {
    let per_second = count as f64 / f.all_complete.as_secs_f64();
    println!(
        "{label}: {count} Jobs created in {:.2?}, all Complete after {:.2?} ({per_second:.0} Jobs/s); \
         runner writes per Job: {:.2} Job status + {:.2} Job (log-path annotation) + {:.2} Pod",
        f.created,
        f.all_complete,
        f.status_writes as f64 / count as f64,
        f.job_writes as f64 / count as f64,
        f.pod_writes as f64 / count as f64,
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let simulated = args.first().copied().unwrap_or(1000);
    let processes = args.get(1).copied().unwrap_or(100);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let delay = Duration::from_millis(100);
        let f = run(
            simulated,
            RunnerConfig::simulated(delay, SimulatedOutcome::Succeed),
        )
        .await;
        print(
            &format!("simulated runner (delay {delay:?})"),
            simulated,
            &f,
        );
        let logs = tempfile::tempdir().expect("log dir");
        let f = run(processes, RunnerConfig::new(logs.path())).await;
        print("process runner (`true`)", processes, &f);
    });
}
