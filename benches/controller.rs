//! TaskRuns through the controller on the embedded API server with the simulated Job runner, at
//! each size of `BENCH_TASKRUNS` (a comma-separated list; default `1000,10000`), against the
//! same server's cost for the minimum raw writes of that many TaskRuns.
//!
//! What is timed, per size:
//! - the controller run: the bench creates the TaskRuns as the sync does (with the finalizer)
//!   on a fresh server with the simulated runner, then spawns the controller process
//!   (`orchestrator controller`); the clock starts at that spawn, so the controller's start-up
//!   and its initial listing are inside it, and stops when every Job exists and when every
//!   TaskRun is Succeeded. The bench's TaskRun creates are outside the clock.
//!   `BENCH_CONTROLLER_CLOCK=create` times as earlier rounds did: the controller starts first,
//!   idle, and the clock starts at the first of the bench's creates, which then run alongside
//!   the controller and count against it.
//! - the raw-write baseline: a fresh server of the same configuration with the TaskRuns already
//!   in place; per TaskRun a ConfigMap create, a Job create and two status applies, by one
//!   client with the controller's concurrency; no watchers, no runner.
//!
//! It prints both times, TaskRuns per second, their ratio (target <= 2.0), the writes the server
//! had taken when every Job existed (by kind: what competed with the starts), the API requests per
//! TaskRun by resource (the server's request counts from the controller's spawn on: its initial
//! listings count), and the controller's peak memory. The controller runs as its own process,
//! so its VmHWM is its own, not the server's or the runner's. The bench follows progress
//! through two watches (Jobs, TaskRuns) opened before the clock starts, so it adds no GET or
//! LIST while it waits; the server serves them during the run, and the simulated runner's Job
//! and Pod writes (2 per TaskRun) too, neither of which the baseline has.
//!
//! `cargo bench --bench controller`; `BENCH_TASKRUNS=1000,10000` (or one size).
//! `BENCH_CONTROLLER_MAX_RUNNING=N` runs the controller with `--max-running N`, so every
//! TaskRun passes the queue.
//! `BENCH_CONTROLLER_HEAPTRACK=/tmp/ctl` runs the controller under heaptrack's preload library
//! (raw data to `/tmp/ctl.<size>`; read it with
//! `heaptrack_interpret < /tmp/ctl.N | gzip > ctl.gz; heaptrack_print ctl.gz`).

mod support;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use kube_envtest::runner::{JobRunner, RunnerConfig, SimulatedOutcome};
use kube_envtest::{ApiServer, ApiServerConfig, RequestStats, RunningApiServer};
use orchestrator::controller::children::{build_config_map, build_job, owner_reference};
use orchestrator::controller::job_phase::JobState;
use orchestrator::controller::reasons;
use orchestrator::controller::status::{Observation, Outcome, task_run_status};
use orchestrator::controller::{AgentProfiles, DEFAULT_CONCURRENCY};
use orchestrator::crd::{MarkdownFile, TaskPhase, TaskRun, TaskRunSpec, with_finalizer};
use orchestrator::names::{FIELD_MANAGER_CONTROLLER, LABEL_MANAGED_BY, MANAGED_BY};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "bench";
const AGENTS: &str = "agents:\n  sim:\n    image: local/simulated\n    command: [\"true\"]\n";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

struct Figures {
    n: usize,
    all_jobs: Duration,
    all_done: Duration,
    baseline: Duration,
}

async fn bench() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("BENCH_TASKRUNS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    println!(
        "controller benchmark: simulated runner (200 ms per Job), controller concurrency {DEFAULT_CONCURRENCY}; \
         shared machine, {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let clock = Clock::from_env()?;
    println!("controller runs: {}", clock.describe());
    let mut all = Vec::new();
    for n in sizes {
        let baseline = raw_baseline(n).await?;
        let figures = controller_run(n, baseline, clock).await?;
        all.push(figures);
    }
    if let (Some(small), Some(large)) = (all.first(), all.last())
        && large.n > small.n
    {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "{} / {} TaskRuns: every Job exists {:.2}x, every TaskRun Succeeded {:.2}x as long \
             (linear would be {:.0}x; target <= 12)",
            large.n,
            small.n,
            ratio(large.all_jobs, small.all_jobs),
            ratio(large.all_done, small.all_done),
            large.n as f64 / small.n as f64,
        );
        println!(
            "  raw-write baseline {:.2}x as long",
            ratio(large.baseline, small.baseline)
        );
    }
    Ok(())
}

async fn start_server() -> anyhow::Result<RunningApiServer> {
    let server = ApiServer::start(ApiServerConfig {
        watch_history: 1_000_000,
        ..ApiServerConfig::default()
    })
    .await?;
    let client = server.client();
    support::install_crd(&client).await?;
    let mut ns = Namespace::default();
    ns.metadata.name = Some(NS.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(server)
}

async fn create_task_runs(api: &Api<TaskRun>, n: usize) -> anyhow::Result<Vec<TaskRun>> {
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &task_run(i as i64 + 1))
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|r| r.map_err(anyhow::Error::from))
        .collect()
}

/// The minimum the server must do for `n` TaskRuns: per TaskRun a ConfigMap create, a Job
/// create and two status applies (Running, Succeeded), the same objects the controller writes,
/// `DEFAULT_CONCURRENCY` TaskRuns at a time.
async fn raw_baseline(n: usize) -> anyhow::Result<Duration> {
    let server = start_server().await?;
    let client = server.client();
    let task_runs: Api<TaskRun> = Api::namespaced(client.clone(), NS);
    let created = create_task_runs(&task_runs, n).await?;
    let agents = AgentProfiles::parse(AGENTS, "bench agents")?;
    let profile = agents.resolve("sim")?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
        ..PostParams::default()
    };
    let apply = PatchParams::apply(FIELD_MANAGER_CONTROLLER).force();
    let t0 = Instant::now();
    let results = futures::stream::iter(created.iter())
        .map(|tr| {
            let (config_maps, jobs, task_runs) = (&config_maps, &jobs, &task_runs);
            let (post, apply, profile) = (&post, &apply, &profile);
            async move {
                let owner = owner_reference(tr)?;
                config_maps
                    .create(post, &build_config_map(tr, &owner))
                    .await?;
                let job = build_job(tr, profile, &owner);
                let job_name = job.name_any();
                jobs.create(post, &job).await?;
                let mut previous = None;
                for phase in [TaskPhase::Running, TaskPhase::Succeeded] {
                    let observation = Observation {
                        generation: tr.metadata.generation,
                        context_version: tr.spec.context_version,
                        job_name: job_name.clone(),
                        config_map_name: format!("{job_name}-files"),
                        outcome: Outcome::Job {
                            state: JobState {
                                phase,
                                reason: if phase == TaskPhase::Running {
                                    reasons::REASON_RUNNING
                                } else {
                                    reasons::REASON_SUCCEEDED
                                },
                                message: None,
                                attempts: 1,
                                start_time: Some("2026-01-01T10:00:00Z".into()),
                                completion_time: None,
                            },
                            superseded: vec![],
                            created: None,
                            young: false,
                        },
                        life: None,
                        retries: 0,
                        retry_token: None,
                        stall_after: None,
                    };
                    let status =
                        task_run_status(previous.as_ref(), &observation, "2026-01-01T10:00:00Z");
                    let body = serde_json::json!({
                        "apiVersion": TaskRun::api_version(&()),
                        "kind": TaskRun::kind(&()),
                        "status": status,
                    });
                    task_runs
                        .patch_status(&tr.name_any(), apply, &Patch::Apply(&body))
                        .await?;
                    previous = Some(status);
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(DEFAULT_CONCURRENCY as usize)
        .collect::<Vec<_>>()
        .await;
    let took = t0.elapsed();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    server.shutdown().await;
    Ok(took)
}

/// When the count of distinct names seen reaches `n`, the time since `t0` (set when the clock
/// starts).
#[derive(Default)]
struct Progress {
    t0: Option<Instant>,
    jobs: HashSet<String>,
    succeeded: HashSet<String>,
    first_job: Option<Duration>,
    all_jobs: Option<Duration>,
    all_done: Option<Duration>,
}

impl Progress {
    fn since_t0(&self) -> Option<Duration> {
        self.t0.map(|t0| t0.elapsed())
    }
}

/// Where the clock of a controller run starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// The TaskRuns exist (created as the sync does, with the finalizer) before the controller
    /// starts; the clock starts when its process is spawned, so its start-up and its initial
    /// listing of the TaskRuns are timed, as the baseline's clock starts with its TaskRuns in
    /// place. The default.
    FromControllerStart,
    /// The controller runs idle first; the clock starts at the first TaskRun create and the
    /// bench's creates run alongside the controller (the measurement of earlier rounds:
    /// `BENCH_CONTROLLER_CLOCK=create`).
    FromFirstCreate,
}

impl Clock {
    fn from_env() -> anyhow::Result<Clock> {
        match std::env::var("BENCH_CONTROLLER_CLOCK").as_deref() {
            Err(_) | Ok("") | Ok("start") => Ok(Clock::FromControllerStart),
            Ok("create") => Ok(Clock::FromFirstCreate),
            Ok(other) => anyhow::bail!(
                "BENCH_CONTROLLER_CLOCK={other}: expected `start` (the default) or `create`"
            ),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Clock::FromControllerStart => {
                "TaskRuns created before the controller starts; clock from the controller's spawn"
            }
            Clock::FromFirstCreate => {
                "TaskRuns created while the controller runs; clock from the first create"
            }
        }
    }
}

async fn controller_run(n: usize, baseline: Duration, clock: Clock) -> anyhow::Result<Figures> {
    let server = start_server().await?;
    let client = server.client();
    let tmp = tempfile::tempdir()?;
    let kubeconfig = tmp.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig)?;
    let agents = tmp.path().join("agents.yaml");
    std::fs::write(&agents, AGENTS)?;

    let mut runner_config =
        RunnerConfig::simulated(Duration::from_millis(200), SimulatedOutcome::Succeed);
    runner_config.namespace = Some(NS.into());
    let runner = JobRunner::start(client.clone(), runner_config);

    let task_runs: Api<TaskRun> = Api::namespaced(client.clone(), NS);
    let mut created = None;
    if clock == Clock::FromControllerStart {
        let t_create = Instant::now();
        create_task_runs(&task_runs, n).await?;
        created = Some(t_create.elapsed());
    }

    // Progress through two watches: Jobs by name (metadata only: the bench's own decoding of
    // every Job would take CPU from the server it shares a process with), TaskRuns Succeeded.
    let progress = Arc::new(Mutex::new(Progress::default()));
    let jobs_api: Api<PartialObjectMeta<Job>> = Api::namespaced(client.clone(), NS);
    let job_watch = {
        let progress = progress.clone();
        let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
        tokio::spawn(
            watcher(jobs_api, config)
                .applied_objects()
                .for_each(move |job| {
                    if let Ok(job) = job {
                        let mut p = progress.lock().unwrap();
                        p.jobs.insert(job.name_any());
                        if p.first_job.is_none() {
                            p.first_job = p.since_t0();
                        }
                        if p.jobs.len() >= n && p.all_jobs.is_none() {
                            p.all_jobs = p.since_t0();
                        }
                    }
                    std::future::ready(())
                }),
        )
    };
    let task_run_watch = {
        let progress = progress.clone();
        tokio::spawn(
            watcher(task_runs.clone(), watcher::Config::default())
                .applied_objects()
                .for_each(move |tr| {
                    if let Ok(tr) = tr
                        && tr.status.as_ref().and_then(|s| s.phase) == Some(TaskPhase::Succeeded)
                    {
                        let mut p = progress.lock().unwrap();
                        p.succeeded.insert(tr.name_any());
                        if p.succeeded.len() >= n && p.all_done.is_none() {
                            p.all_done = p.since_t0();
                        }
                    }
                    std::future::ready(())
                }),
        )
    };
    // Let the progress watches list before anything is timed.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let metrics_port = free_port()?;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command
        .args(["controller", "--namespace", NS])
        .arg("--agents")
        .arg(&agents)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn");
    // The queue's cost: every TaskRun passes the queue when a running limit is set.
    if let Ok(max) = std::env::var("BENCH_CONTROLLER_MAX_RUNNING") {
        command.args(["--max-running", &max]);
    }
    // A heap profile of the controller alone (its VmHWM then includes heaptrack's own).
    if let Ok(raw) = std::env::var("BENCH_CONTROLLER_HEAPTRACK") {
        command
            .env("LD_PRELOAD", "/usr/lib/heaptrack/libheaptrack_preload.so")
            .env("DUMP_HEAPTRACK_OUTPUT", format!("{raw}.{n}"));
    }
    // Every request from here on is counted, the controller's initial listings included.
    let before = server.request_stats();
    let mut controller = command.spawn()?;
    if clock == Clock::FromControllerStart {
        progress.lock().unwrap().t0 = Some(Instant::now());
    }
    let pid = controller.id();
    let started = Instant::now();
    while scrape(metrics_port).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("the controller did not serve /metrics within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let serving = started.elapsed();
    if clock == Clock::FromFirstCreate {
        // Give the controller's watches their initial (empty) listings.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rss_serving = vm_kib(pid, "VmRSS:");
    if clock == Clock::FromFirstCreate {
        let t_create = Instant::now();
        progress.lock().unwrap().t0 = Some(t_create);
        create_task_runs(&task_runs, n).await?;
        created = Some(t_create.elapsed());
    }

    let deadline = Duration::from_secs(1800);
    // The server's requests when every Job first exists (to within the 100 ms poll): how much
    // of the other writes (status, events, the runner's) came before the last Job.
    let mut at_all_jobs = None;
    let (first_job, all_jobs, all_done) = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let p = progress.lock().unwrap();
        if at_all_jobs.is_none() && p.all_jobs.is_some() {
            at_all_jobs = Some(server.request_stats().since(&before));
        }
        if let (Some(f), Some(j), Some(d)) = (p.first_job, p.all_jobs, p.all_done) {
            break (f, j, d);
        }
        if p.since_t0().is_some_and(|t| t > deadline) {
            anyhow::bail!(
                "after {deadline:?}: {} Jobs, {} TaskRuns Succeeded of {n}",
                p.jobs.len(),
                p.succeeded.len()
            );
        }
    };
    // Let trailing reconciles (after the last status write) settle before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = server.request_stats().since(&before);
    let peak = vm_kib(pid, "VmHWM:");
    let cpu = cpu_seconds(pid);
    let metrics = scrape(metrics_port).unwrap_or_default();
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = controller.wait();
    job_watch.abort();
    task_run_watch.abort();
    runner.shutdown().await;
    server.shutdown().await;

    print_figures(&Run {
        n,
        clock,
        created: created.unwrap_or_default(),
        serving,
        first_job,
        all_jobs,
        all_done,
        baseline,
        stats: &stats,
        at_all_jobs: &at_all_jobs.unwrap_or_default(),
        peak_kib: peak,
        cpu,
        serving_kib: rss_serving,
        metrics: &metrics,
    });
    Ok(Figures {
        n,
        all_jobs,
        all_done,
        baseline,
    })
}

/// What one controller run measured.
struct Run<'a> {
    n: usize,
    clock: Clock,
    created: Duration,
    /// From the spawn until /metrics answered.
    serving: Duration,
    first_job: Duration,
    all_jobs: Duration,
    all_done: Duration,
    baseline: Duration,
    stats: &'a RequestStats,
    peak_kib: u64,
    serving_kib: u64,
    metrics: &'a str,
    at_all_jobs: &'a RequestStats,
    /// The controller process's CPU time over the run, seconds.
    cpu: f64,
}

fn print_figures(run: &Run) {
    let Run {
        n,
        clock,
        created,
        serving,
        first_job,
        all_jobs,
        all_done,
        baseline,
        stats,
        peak_kib,
        serving_kib,
        metrics,
        at_all_jobs,
        cpu,
    } = *run;
    let per = |resource: &str| stats.writes_to(resource) as f64 / n as f64;
    let reads = |resource: &str| {
        (stats.count(resource, "get") + stats.count(resource, "list")) as f64 / n as f64
    };
    // Minus the bench's own creates where they fall inside the counted requests.
    let finalizer = per("taskruns.orchestrator.io")
        - match clock {
            Clock::FromControllerStart => 0.0,
            Clock::FromFirstCreate => 1.0,
        };
    let status = per("taskruns.orchestrator.io/status");
    let config_maps = per("configmaps");
    // The runner patches each Job once (its log-path annotation); the controller creates it.
    let job_creates = stats.count("jobs.batch", "create") as f64 / n as f64;
    let events = per("events.events.k8s.io") + per("events");
    let objects = finalizer + status + config_maps + job_creates;
    // The simulated runner reads nothing: every GET and LIST here is the controller's.
    let controller_reads = reads("taskruns.orchestrator.io")
        + reads("jobs.batch")
        + reads("configmaps")
        + reads("pods");
    let secs = |d: Duration| d.as_secs_f64();
    println!("{n} TaskRuns ({})", clock.describe());
    println!(
        "  created {n} TaskRuns in              {:>8.2} s{}",
        secs(created),
        match clock {
            Clock::FromControllerStart => " (before the clock starts)",
            Clock::FromFirstCreate => " (inside the clock, alongside the controller)",
        }
    );
    println!(
        "  controller serves /metrics after    {:>8.2} s  (from its spawn); first Job after {:.2} s",
        secs(serving),
        secs(first_job)
    );
    println!(
        "  every Job exists after              {:>8.2} s  ({:.2}x the raw-write baseline; target <= 2.0)",
        secs(all_jobs),
        secs(all_jobs) / secs(baseline)
    );
    println!(
        "  every TaskRun Succeeded after       {:>8.2} s  ({:.0} TaskRuns/s; {:.2}x the baseline)",
        secs(all_done),
        n as f64 / secs(all_done),
        secs(all_done) / secs(baseline)
    );
    println!(
        "  raw-write baseline (4 writes each)  {:>8.2} s  ({:.0} writes/s, concurrency {DEFAULT_CONCURRENCY})",
        secs(baseline),
        4.0 * n as f64 / secs(baseline)
    );
    println!(
        "  objects written per TaskRun         {objects:>8.2}  (target <= 4: finalizer {finalizer:.2}, status {status:.2}, ConfigMap {config_maps:.2}, Job {job_creates:.2})"
    );
    println!("  events per TaskRun                  {events:>8.2}  (target <= 2)");
    println!(
        "  reads per TaskRun (get+list)        {controller_reads:>8.2}  (target <= 0.1; ConfigMaps {:.2}, Jobs {:.2}: GETs after a create answered 409)",
        reads("configmaps"),
        reads("jobs.batch")
    );
    println!(
        "  runner writes per TaskRun           {:>8.2}  (Jobs and Pods, for comparison)",
        stats.count("jobs.batch", "patch") as f64 / n as f64
            + per("jobs.batch/status")
            + per("pods")
            + per("pods/status")
    );
    let before_all_jobs = |resource: &str| at_all_jobs.writes_to(resource) as f64 / n as f64;
    println!(
        "  writes before every Job existed     {:>8.2}  per TaskRun (status {:.2}, events {:.2}, runner {:.2}, ConfigMap+Job {:.2})",
        at_all_jobs.writes() as f64 / n as f64,
        before_all_jobs("taskruns.orchestrator.io/status"),
        before_all_jobs("events.events.k8s.io") + before_all_jobs("events"),
        at_all_jobs.count("jobs.batch", "patch") as f64 / n as f64
            + before_all_jobs("jobs.batch/status")
            + before_all_jobs("pods")
            + before_all_jobs("pods/status"),
        before_all_jobs("configmaps") + at_all_jobs.count("jobs.batch", "create") as f64 / n as f64,
    );
    println!(
        "  controller peak memory (VmHWM)      {:>8.1} MiB  (own process; {:.1} MiB when /metrics first answered; target <= 150 MiB at 10,000)",
        peak_kib as f64 / 1024.0,
        serving_kib as f64 / 1024.0
    );
    let value = |series: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    };
    let count = value("orchestrator_controller_reconcile_duration_seconds_count");
    let sum = value("orchestrator_controller_reconcile_duration_seconds_sum");
    println!(
        "  reconciles                          {count:>8.0}  ({:.2} per TaskRun, {:.1} ms average, {:.0} failed)",
        count / n as f64,
        1000.0 * sum / count.max(1.0),
        value("orchestrator_controller_reconcile_duration_seconds_count{result=\"error\"}")
    );
    println!(
        "  controller CPU time                 {cpu:>8.2} s  ({:.2} ms per TaskRun; until every TaskRun Succeeded and 3 s more)",
        1000.0 * cpu / n as f64
    );
    println!(
        "  reports left for later              {:>8.2}  per TaskRun (while others waited to start)",
        value("orchestrator_controller_reports_deferred_total") / n as f64
    );
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
    // As the sync applies it when a controller runs.
    with_finalizer(&tr)
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
/// User plus system CPU time of process `pid` so far, in seconds (from `/proc/<pid>/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

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
