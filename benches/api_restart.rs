//! API-server restart benchmark: `orchestrator run` on a repository of N tasks against
//! `orchestrator apiserver --data-dir` (both in their own processes). Per trial, first the
//! undisturbed time (from starting `run` to every TaskRun with its Job), then the same workload
//! with the API server SIGKILLed part-way, kept down 2–5 s and started again on the same port and
//! data; the time from that restart to convergence, its ratio to the undisturbed time (target:
//! at most 2), and the lines `run` logged from the kill to convergence, by level.
//!
//! `cargo bench --bench api_restart`. API_RESTART_TASKS=500 (the default),
//! API_RESTART_TRIALS=4; API_RESTART_VERBOSE=1 also prints the WARN and ERROR lines of each
//! outage, grouped. `orchestrator apiserver` runs no Jobs: converged means every TaskRun and its
//! Job exist, which is the part an outage interrupts.

#[path = "../tests/crash_support/mod.rs"]
mod crash_support;
#[path = "../tests/sync_repo/mod.rs"]
mod sync_repo;

use crash_support::{
    ApiServerProcess, Observer, Progress, grouped_warnings, lines_by_level, log_lines, log_since,
    sigkill, spawn_run, task_repo,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use sync_repo::TaskRepo;

/// The longest a run may take to converge before the trial is given up.
const GIVE_UP: Duration = Duration::from_secs(300);
/// Between two looks of the observer: lists of every TaskRun, Job and ConfigMap cost the
/// server (and the shared machine) something.
const POLL: Duration = Duration::from_millis(100);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// From starting `run` on a fresh server to convergence.
async fn undisturbed(repo: &TaskRepo, tasks: i64) -> Duration {
    let work = tempfile::tempdir().expect("a temp dir");
    let server = ApiServerProcess::start(&work.path().join("data"), 0).await;
    let client = server.client().await;
    let mut observer = Observer::new(tasks);
    observer.poll = POLL;
    let log = work.path().join("run.log");
    let started = Instant::now();
    let mut run = spawn_run(repo, &server.kubeconfig, work.path(), &log);
    let (_, last) = observer.until(&client, GIVE_UP, Progress::converged).await;
    let took = started.elapsed();
    sigkill(&mut run);
    let last = last.expect("the server answers");
    assert!(
        last.converged(),
        "undisturbed run did not converge: {last:?}"
    );
    took
}

/// What one outage came to.
struct Outage {
    killed_at: Progress,
    down_for: Duration,
    converged_after_restart: Duration,
    levels: BTreeMap<String, usize>,
    grouped: Vec<(usize, String)>,
}

/// `run` on a fresh server; the server SIGKILLed once `kill_at` TaskRun and Job writes are seen,
/// down `down_for`, restarted on the same port and data.
async fn outage(repo: &TaskRepo, tasks: i64, kill_at: usize, down_for: Duration) -> Outage {
    let work = tempfile::tempdir().expect("a temp dir");
    let mut server = ApiServerProcess::start(&work.path().join("data"), 0).await;
    let client = server.client().await;
    let mut observer = Observer::new(tasks);
    observer.poll = POLL;
    let log = work.path().join("run.log");
    let mut run = spawn_run(repo, &server.kubeconfig, work.path(), &log);
    let (_, before) = observer
        .until(&client, GIVE_UP, |p| p.steps() >= kill_at)
        .await;
    let killed_at = before.expect("the server answers");
    let lines_before = log_lines(&log);
    server.kill_and_restart(down_for).await;
    let restarted = Instant::now();
    let client = server.client().await;
    let (_, last) = observer.until(&client, GIVE_UP, Progress::converged).await;
    let took = restarted.elapsed();
    let still_running = run.try_wait().ok().flatten().is_none();
    sigkill(&mut run);
    let last = last.expect("the server answers");
    assert!(still_running, "run survives the outage");
    assert!(
        last.converged(),
        "not converged within {GIVE_UP:?}: {last:?}"
    );
    assert_eq!(last.duplicate_jobs, 0, "one Job per TaskRun and version");
    assert_eq!(observer.second_uids, Vec::<String>::new());
    Outage {
        killed_at,
        down_for,
        converged_after_restart: took,
        levels: lines_by_level(&log, lines_before),
        grouped: grouped_warnings(&log_since(&log, lines_before)),
    }
}

fn levels(levels: &BTreeMap<String, usize>) -> String {
    ["ERROR", "WARN", "INFO", "DEBUG", "other"]
        .iter()
        .map(|l| format!("{l} {}", levels.get(*l).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn bench() {
    let tasks = env_number("API_RESTART_TASKS", 500) as i64;
    let trials = env_number("API_RESTART_TRIALS", 4) as usize;
    let verbose = std::env::var_os("API_RESTART_VERBOSE").is_some();
    let repo = task_repo(tasks);
    println!(
        "api_restart: {tasks} tasks, {trials} trials; load average {} (shared machine)",
        load_average()
    );
    let mut ratios = Vec::new();
    for trial in 0..trials {
        // Kill points spread over the first sync's TaskRun and Job writes; outages of 2 to 5 s.
        let share = [0.2, 0.45, 0.7, 0.9][trial % 4];
        let kill_at = ((2 * tasks) as f64 * share) as usize;
        let down_for = Duration::from_secs(2 + (trial % 4) as u64);
        let base = undisturbed(&repo, tasks).await;
        let outage = outage(&repo, tasks, kill_at, down_for).await;
        let ratio = outage.converged_after_restart.as_secs_f64() / base.as_secs_f64();
        ratios.push(ratio);
        println!(
            "trial {}: undisturbed {:.2} s; killed at {} TaskRuns + {} Jobs, down {} s; converged {:.2} s after the restart; ratio {:.2}; run logged from the kill to convergence: {}",
            trial + 1,
            base.as_secs_f64(),
            outage.killed_at.task_runs,
            outage.killed_at.jobs,
            outage.down_for.as_secs(),
            outage.converged_after_restart.as_secs_f64(),
            ratio,
            levels(&outage.levels),
        );
        if verbose {
            for (n, line) in &outage.grouped {
                println!("    {n:>5} × {line}");
            }
        }
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "api_restart: ratio (convergence after restart / undisturbed) median {:.2}, worst {:.2} (target ≤ 2); load average {}",
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1],
        load_average()
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(bench());
}
