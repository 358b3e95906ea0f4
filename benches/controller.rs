//! 1,000 TaskRuns through the controller on the embedded API server with the simulated Job
//! runner. Prints the time until every Job exists and until every TaskRun is Succeeded, the API
//! writes per TaskRun (by resource, from the server's request counts) and the controller's peak
//! memory. The controller runs as its own process (`orchestrator controller`) so that its peak
//! RSS (VmHWM) is its own, not the server's or the runner's.
//!
//! `cargo bench --bench controller`; `BENCH_TASKRUNS=N` changes the size.

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use kube_envtest::runner::{JobRunner, RunnerConfig, SimulatedOutcome};
use kube_envtest::{ApiServer, ApiServerConfig};
use orchestrator::crd::{MarkdownFile, TaskPhase, TaskRun, TaskRunSpec};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const NS: &str = "bench";
const AGENTS: &str = "agents:\n  sim:\n    image: local/simulated\n    command: [\"true\"]\n";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_TASKRUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = ApiServer::start(ApiServerConfig {
        watch_history: 200_000,
        ..ApiServerConfig::default()
    })
    .await?;
    let client = server.client();
    install_crd(&client).await?;
    let mut ns = Namespace::default();
    ns.metadata.name = Some(NS.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let tmp = tempfile::tempdir()?;
    let kubeconfig = tmp.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig)?;
    let agents = tmp.path().join("agents.yaml");
    std::fs::write(&agents, AGENTS)?;

    let mut runner_config =
        RunnerConfig::simulated(Duration::from_millis(200), SimulatedOutcome::Succeed);
    runner_config.namespace = Some(NS.into());
    let runner = JobRunner::start(client.clone(), runner_config);

    let metrics_port = free_port()?;
    let mut controller = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["controller", "--namespace", NS, "--concurrency", "32"])
        .arg("--agents")
        .arg(&agents)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .spawn()?;
    let pid = controller.id();
    let started = Instant::now();
    while scrape(metrics_port).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("the controller did not serve /metrics within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = vm_kib(pid, "VmRSS:");

    let task_runs: Api<TaskRun> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let before = server.request_stats();
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = task_runs.clone();
            async move {
                api.create(&PostParams::default(), &task_run(i as i64 + 1))
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let created = t0.elapsed();

    let mut all_jobs = None;
    let mut all_done = None;
    let deadline = Duration::from_secs(600);
    while all_done.is_none() {
        if t0.elapsed() > deadline {
            anyhow::bail!("not every TaskRun Succeeded within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if all_jobs.is_none() && jobs.list(&ListParams::default()).await?.items.len() >= n {
            all_jobs = Some(t0.elapsed());
        }
        let list = task_runs.list(&ListParams::default()).await?;
        let succeeded = list
            .items
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(TaskPhase::Succeeded))
            .count();
        if succeeded >= n {
            all_done = Some(t0.elapsed());
            all_jobs.get_or_insert(t0.elapsed());
        }
    }
    // Let trailing reconciles (after the last status write) settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = server.request_stats().since(&before);
    let peak = vm_kib(pid, "VmHWM:");
    let metrics = scrape(metrics_port).unwrap_or_default();
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = controller.wait();
    runner.shutdown().await;

    let per = |resource: &str| writes.writes_to(resource) as f64 / n as f64;
    let finalizer = per("taskruns.orchestrator.io") - 1.0; // minus the bench's own create
    let status = per("taskruns.orchestrator.io/status");
    let config_maps = per("configmaps");
    let job_writes = per("jobs.batch");
    let events = per("events.events.k8s.io") + per("events");
    let objects = finalizer + status + config_maps + job_writes;
    println!("controller benchmark: {n} TaskRuns, simulated runner (200 ms per Job)");
    println!(
        "  created {n} TaskRuns in            {:>8.2} s",
        created.as_secs_f64()
    );
    println!(
        "  every Job exists after            {:>8.2} s",
        all_jobs.unwrap_or_default().as_secs_f64()
    );
    println!(
        "  every TaskRun Succeeded after     {:>8.2} s  ({:.0} TaskRuns/s)",
        all_done.unwrap_or_default().as_secs_f64(),
        n as f64 / all_done.unwrap_or_default().as_secs_f64()
    );
    println!("  controller writes per TaskRun:");
    println!("    TaskRun (finalizer)             {finalizer:>8.2}");
    println!("    TaskRun status                  {status:>8.2}");
    println!("    ConfigMap                       {config_maps:>8.2}");
    println!("    Job                             {job_writes:>8.2}");
    println!(
        "    = objects                       {objects:>8.2}  (target <= 5: {:.2}x of target)",
        objects / 5.0
    );
    println!("    events                          {events:>8.2}");
    println!(
        "    total with events               {:>8.2}",
        objects + events
    );
    println!(
        "  runner Job status writes per TaskRun {:>5.2}",
        per("jobs.batch/status")
    );
    println!(
        "  reads per TaskRun (get+list)      {:>8.2}",
        (writes.by_verb.get("get").copied().unwrap_or(0)
            + writes.by_verb.get("list").copied().unwrap_or(0)) as f64
            / n as f64
    );
    println!(
        "  controller peak memory (VmHWM)    {:>8.1} MiB  (idle {:.1} MiB; target <= 150 MiB: {:.2}x of target)",
        peak as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        peak as f64 / 1024.0 / 150.0
    );
    for series in [
        "controller_jobs_created_total",
        "taskrun_total",
        "controller_reconcile_duration_seconds_count",
        "controller_reconcile_duration_seconds_sum",
    ] {
        if let Some(line) = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{series} ")))
        {
            println!("  {line}");
        }
    }
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("controller_reconcile_errors_total{"))
    {
        println!("  {line}");
    }
    Ok(())
}

fn task_run(task_id: i64) -> TaskRun {
    let mut tr = TaskRun::new(
        &orchestrator::names::task_run_name(task_id),
        TaskRunSpec {
            task_id,
            service_name: "bench".into(),
            agent_name: "sim".into(),
            context_version: 1,
            content_digest: String::new(),
            source_path: format!("tasks/{task_id}"),
            suspend: false,
            priority: 0,
            markdown_files: vec![MarkdownFile {
                filename: "prompt.md".into(),
                content: format!("# Task {task_id}\n\n{}\n", "Do the thing. ".repeat(40)),
            }],
        },
    );
    tr.metadata.namespace = Some(NS.into());
    tr
}

async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &orchestrator::crd::task_run_crd())
        .await?;
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(
            crds,
            "taskruns.orchestrator.io",
            conditions::is_crd_established(),
        ),
    )
    .await??;
    let api: Api<TaskRun> = Api::all(client.clone());
    for _ in 0..100 {
        if api.list(&ListParams::default().limit(1)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("TaskRuns are not served after the CRD is Established")
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// GET /metrics over plain HTTP/1.0.
fn scrape(port: u16) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// A `Vm*:` line of /proc/<pid>/status, in KiB.
fn vm_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
