//! The queue under load: 200 TaskRuns, 2 agents with `maxConcurrent: 5`, the simulated Job
//! runner taking 100 ms per Job, the controller in this process on the embedded API server.
//!
//! Prints the most Jobs of each agent active at once, as sampled from the API (a LIST of Jobs
//! every 20 ms; it must not exceed 5), the total time from the first TaskRun create until every
//! TaskRun is Succeeded, the ideal `200 × 100 ms / 10` and their ratio.
//!
//! Where the time goes: each Job's time from first seen in a sample to first seen finished
//! ("busy", the simulated run and the runner's status writes), and each slot's time between
//! two Jobs ("idle": from a Job's end through the controller to the next Job's creation).
//!
//! `cargo bench --bench queue`; `BENCH_QUEUE_TASKS=200` sets the number of TaskRuns,
//! `BENCH_QUEUE_DEBOUNCE_MS` the controller's debounce (default: `ControllerConfig`'s),
//! `BENCH_QUEUE_SAMPLE_MS` the pause between two samples (default 20; the samples cost CPU).

mod support;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube_envtest::runner::{JobRunner, RunnerConfig, SimulatedOutcome};
use kube_envtest::{ApiServer, ApiServerConfig};
use orchestrator::controller::{AgentProfiles, ControllerConfig, ControllerMetrics};
use orchestrator::crd::{MarkdownFile, TaskPhase, TaskRun, TaskRunSpec, with_finalizer};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "bench";
const JOB_TIME: Duration = Duration::from_millis(100);
const MAX_CONCURRENT: usize = 5;
const AGENTS: &str = "agents:\n  alpha:\n    image: local/simulated\n    command: [\"true\"]\n    maxConcurrent: 5\n  beta:\n    image: local/simulated\n    command: [\"true\"]\n    maxConcurrent: 5\n";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    // RUST_LOG=info shows each Job's creation by the controller and start by the runner.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let n: usize = std::env::var("BENCH_QUEUE_TASKS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200);
    let server = ApiServer::start(ApiServerConfig::default()).await?;
    let client = server.client();
    support::install_crd(&client).await?;
    let mut ns = Namespace::default();
    ns.metadata.name = Some(NS.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;

    let mut runner_config = RunnerConfig::simulated(JOB_TIME, SimulatedOutcome::Succeed);
    runner_config.namespace = Some(NS.into());
    let _runner = JobRunner::start(client.clone(), runner_config);

    let agents = AgentProfiles::parse(AGENTS, "bench agents")?;
    let mut registry = Registry::default();
    let metrics = Arc::new(ControllerMetrics::register(&mut registry));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = ControllerConfig::new(Some(NS.into()), agents);
    if let Ok(ms) = std::env::var("BENCH_QUEUE_DEBOUNCE_MS") {
        config.debounce = Duration::from_millis(ms.parse()?);
    }
    let debounce = config.debounce;
    let sample_every = Duration::from_millis(match std::env::var("BENCH_QUEUE_SAMPLE_MS") {
        Ok(ms) => ms.parse()?,
        Err(_) => 20,
    });
    let controller = tokio::spawn(orchestrator::controller::run_controller(
        client.clone(),
        config,
        metrics,
        async move {
            let _ = stopped.await;
        },
    ));

    let task_runs: Api<TaskRun> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let t0 = Instant::now();
    futures::stream::iter(1..=n as i64)
        .map(|id| {
            let api = task_runs.clone();
            async move { api.create(&PostParams::default(), &task_run(id)).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    let mut most: BTreeMap<String, usize> = BTreeMap::new();
    // Per Job: when a sample first showed it, and first showed it finished.
    let mut first_seen: BTreeMap<String, Duration> = BTreeMap::new();
    let mut done_seen: BTreeMap<String, Duration> = BTreeMap::new();
    let mut samples = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    let total = loop {
        let listed = jobs.list(&ListParams::default()).await?;
        samples += 1;
        let mut active: BTreeMap<String, usize> = BTreeMap::new();
        let seen_at = t0.elapsed();
        for job in &listed.items {
            let name = job.metadata.name.clone().unwrap_or_default();
            first_seen.entry(name.clone()).or_insert(seen_at);
            let finished = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")
                    })
                });
            if finished {
                done_seen.entry(name).or_insert(seen_at);
            } else {
                let agent = agent_of(job);
                *active.entry(agent).or_insert(0) += 1;
            }
        }
        for (agent, count) in active {
            let m = most.entry(agent).or_insert(0);
            *m = (*m).max(count);
        }
        let done = task_runs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(TaskPhase::Succeeded))
            .count();
        if done == n {
            break t0.elapsed();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} TaskRuns Succeeded after 300 s"
        );
        tokio::time::sleep(sample_every).await;
    };
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;

    let slots = 2 * MAX_CONCURRENT;
    let ideal = JOB_TIME * n.div_ceil(slots) as u32;
    println!(
        "queue benchmark: {n} TaskRuns, 2 agents with maxConcurrent {MAX_CONCURRENT}, simulated Jobs of {} ms, \
         controller in process on the embedded API server (shared, loaded machine: figures vary)",
        JOB_TIME.as_millis()
    );
    for (agent, m) in &most {
        println!(
            "  agent {agent}: at most {m} Jobs active at once (sampled {samples} times from the API; limit {MAX_CONCURRENT})"
        );
    }
    println!(
        "  total {:.2} s; ideal {n} × {} ms / {slots} = {:.2} s; ratio {:.2}",
        total.as_secs_f64(),
        JOB_TIME.as_millis(),
        ideal.as_secs_f64(),
        total.as_secs_f64() / ideal.as_secs_f64()
    );
    let busy: Vec<f64> = done_seen
        .iter()
        .filter_map(|(name, done)| Some((*done - *first_seen.get(name)?).as_secs_f64()))
        .collect();
    let busy_mean = busy.iter().sum::<f64>() / busy.len().max(1) as f64;
    // Each of the `slots` slots carries n / slots Jobs one after another.
    let per_job = total.as_secs_f64() * slots as f64 / n as f64;
    println!(
        "  per slot and Job: {:.0} ms, of which busy {:.0} ms (created → finished, as sampled every \
         {} ms + a LIST) and idle {:.0} ms (finished → the next Job created); debounce {} ms",
        per_job * 1000.0,
        busy_mean * 1000.0,
        sample_every.as_millis(),
        (per_job - busy_mean) * 1000.0,
        debounce.as_millis()
    );
    for (agent, m) in &most {
        anyhow::ensure!(
            *m <= MAX_CONCURRENT,
            "agent {agent} ran {m} Jobs at once, over maxConcurrent {MAX_CONCURRENT}"
        );
    }
    Ok(())
}

fn agent_of(job: &Job) -> String {
    let id: i64 = job
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(orchestrator::names::LABEL_TASK_ID))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    agent_for(id).to_string()
}

/// Odd tasks run on alpha, even ones on beta.
fn agent_for(id: i64) -> &'static str {
    if id % 2 == 1 { "alpha" } else { "beta" }
}

fn task_run(task_id: i64) -> TaskRun {
    let mut tr = TaskRun::new(
        &orchestrator::names::task_run_name(task_id),
        TaskRunSpec {
            task_id,
            service_name: "bench".into(),
            agent_name: agent_for(task_id).into(),
            context_version: 1,
            content_digest: String::new(),
            source_path: format!("tasks/{task_id}"),
            suspend: false,
            priority: 0,
            markdown_files: vec![MarkdownFile {
                filename: "prompt.md".into(),
                content: format!("# Task {task_id}\n"),
            }],
        },
    );
    tr.metadata.namespace = Some(NS.into());
    with_finalizer(&tr)
}
