//! Crash safety, with real processes: `orchestrator run` SIGKILLed at several points of a first
//! sync against a persistent embedded API server (`orchestrator apiserver --data-dir`) and
//! restarted; and the API server SIGKILLed and restarted (same port, same data) under a running
//! `run`. Each ends with one TaskRun per task, one Job per TaskRun and version, no object that
//! got a second uid (deleted and created again), within a stated bound.
//!
//! `orchestrator apiserver` runs no Jobs, so Jobs stay created and not started: what is checked
//! is what the sync and the controller wrote, which is what a crash could duplicate.

mod crash_support;
mod sync_repo;

use crash_support::{
    ApiServerProcess, Observer, Progress, grouped_warnings, level_of, log_lines, log_since,
    sigkill, spawn_run, spawn_run_with, task_repo,
};
use std::time::{Duration, Instant};

/// Tasks of the first sync that `run` is killed in (more writes: more places to be killed).
const TASKS_RUN_KILLED: i64 = 150;
/// From the last start of `run` to every TaskRun with its Job, on a loaded 2-core CI machine.
const CONVERGE_AFTER_RUN_RESTART: Duration = Duration::from_secs(30);
/// From the API server's restart to every TaskRun with its Job, on a loaded 2-core CI machine
/// (measured: a few seconds; watches relist at most 2 s apart, reconciles retry at most 2 s
/// apart while the server is unreachable).
const CONVERGE_AFTER_SERVER_RESTART: Duration = Duration::from_secs(30);
/// WARN and ERROR lines `run` may log from the API server's kill to convergence, whatever the
/// number of TaskRuns: a "lost" line per component (controller, sync) and at most a few
/// from writes that were under way when the server died (docs/operations.md, "API server
/// outages").
const MAX_OUTAGE_WARNINGS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_killed_at_several_points_of_a_first_sync_converges_without_duplicates() {
    let repo = task_repo(TASKS_RUN_KILLED);
    let work = tempfile::tempdir().unwrap();
    let server = ApiServerProcess::start(&work.path().join("data"), 0).await;
    let client = server.client().await;
    let mut observer = Observer::new(TASKS_RUN_KILLED);
    let log = work.path().join("run.log");

    // Kill points: after this share of the first sync's writes (TaskRuns, then Jobs), each one
    // further than where the killed run before it got.
    let total = 2 * TASKS_RUN_KILLED as usize;
    let mut kills = Vec::new();
    for share in [
        0.01, 0.05, 0.1, 0.18, 0.25, 0.33, 0.4, 0.48, 0.55, 0.63, 0.7, 0.78, 0.85, 0.92, 0.97,
    ] {
        let at = ((total as f64 * share) as usize).max(1);
        let before = observer.observe(&client).await.expect("the server answers");
        if before.steps() >= at {
            continue;
        }
        let mut run = spawn_run(&repo, &server.kubeconfig, work.path(), &log);
        let (_, reached) = observer
            .until(&client, Duration::from_secs(30), |p| p.steps() >= at)
            .await;
        sigkill(&mut run);
        let reached = reached.expect("the server answers");
        assert!(
            reached.steps() >= at,
            "the run got to {reached:?}, not {at} writes"
        );
        kills.push((at, reached.steps()));
    }
    // Each killed run gets somewhat past its kill point before the SIGKILL lands (the observer
    // polls), so how many points remain depends on the machine's speed: at least three.
    assert!(kills.len() >= 3, "killed at {kills:?}");

    let mut run = spawn_run(&repo, &server.kubeconfig, work.path(), &log);
    let (took, last) = observer
        .until(&client, CONVERGE_AFTER_RUN_RESTART, Progress::converged)
        .await;
    // A second look a sync interval later: nothing more is created or replaced.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = observer.observe(&client).await.expect("the server answers");
    sigkill(&mut run);
    let last = last.expect("the server answers");
    eprintln!(
        "crash test: {} kills of run (at writes {kills:?} of {total}), converged {took:?} after the last start: {last:?}",
        kills.len()
    );
    assert!(
        last.converged(),
        "not converged within {CONVERGE_AFTER_RUN_RESTART:?}: {last:?}"
    );
    assert_eq!(settled, last, "stays as it converged");
    assert_eq!(last.jobs as i64, TASKS_RUN_KILLED, "one Job per TaskRun");
    assert_eq!(last.duplicate_jobs, 0);
    assert_eq!(observer.second_uids, Vec::<String>::new());
}

/// What one API-server outage under a running `run` came to.
struct Outage {
    tasks: i64,
    killed_at: Progress,
    converged_after_restart: Duration,
    /// Every line `run` logged from the kill to convergence, and the WARN and ERROR ones.
    lines: usize,
    warnings: usize,
    grouped: Vec<(usize, String)>,
}

/// Where in the first sync the API server is killed.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// Once the sync has written a TaskRun: the sync's applies are cut.
    TaskRunsWritten,
    /// Once the controller has created a Job: its reconciles and events are cut.
    JobsCreated,
}

impl KillPoint {
    fn reached(self, p: &Progress) -> bool {
        match self {
            KillPoint::TaskRunsWritten => p.task_runs >= 1,
            KillPoint::JobsCreated => p.jobs >= 1,
        }
    }
}

/// `run` on `tasks` tasks; the API server SIGKILLed at `kill`, down 2 s, restarted on the same
/// port and data. Asserts what must hold whatever the size: `run`
/// survives, converges within the bound, one Job per TaskRun and version, no second uid,
/// nothing changes a sync interval later.
async fn outage_under_run(tasks: i64, kill: KillPoint) -> Outage {
    let repo = task_repo(tasks);
    let work = tempfile::tempdir().unwrap();
    let mut server = ApiServerProcess::start(&work.path().join("data"), 0).await;
    let client = server.client().await;
    let mut observer = Observer::new(tasks);
    let log = work.path().join("run.log");
    let mut run = spawn_run(&repo, &server.kubeconfig, work.path(), &log);

    let (_, before) = observer
        .until(&client, Duration::from_secs(30), |p| kill.reached(p))
        .await;
    let killed_at = before.expect("the server answers");
    let lines_before = log_lines(&log);
    server.kill_and_restart(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    let client = server.client().await;
    let (_, last) = observer
        .until(&client, CONVERGE_AFTER_SERVER_RESTART, Progress::converged)
        .await;
    let took = restarted.elapsed();
    let outage_log = log_since(&log, lines_before);
    if let Some(dir) = std::env::var_os("CRASH_TEST_LOG_DIR") {
        // For a person reading what an outage logged: run's log, and where the outage began.
        let _ = std::fs::copy(
            &log,
            std::path::Path::new(&dir).join(format!("run-{tasks}.log")),
        );
        eprintln!("run-{tasks}.log: the outage starts after line {lines_before}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = observer.observe(&client).await.expect("the server answers");
    let still_running = run.try_wait().unwrap().is_none();
    sigkill(&mut run);
    let last = last.expect("the server answers");
    let outage = Outage {
        tasks,
        killed_at,
        converged_after_restart: took,
        lines: outage_log.len(),
        warnings: outage_log
            .iter()
            .filter(|l| matches!(level_of(l), "ERROR" | "WARN"))
            .count(),
        grouped: grouped_warnings(&outage_log),
    };
    eprintln!(
        "crash test: {tasks} tasks, API server killed at {kill:?}, {killed_at:?}, down 2 s; converged {took:?} after the restart; run logged {} lines meanwhile, {} of them WARN or ERROR: {:#?}",
        outage.lines, outage.warnings, outage.grouped
    );
    assert!(still_running, "run survives the outage without a restart");
    assert!(
        last.converged(),
        "not converged within {CONVERGE_AFTER_SERVER_RESTART:?}: {last:?}"
    );
    assert_eq!(settled, last);
    assert_eq!(last.jobs as i64, tasks);
    assert_eq!(last.duplicate_jobs, 0);
    assert_eq!(observer.second_uids, Vec::<String>::new());
    outage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_killed_and_restarted_under_a_running_run_converges_without_duplicates() {
    // Two sizes, one after the other, at two points of the first sync: what is logged about
    // the outage must not grow with the number of TaskRuns (before, every failed reconcile, apply
    // and event logged its own line).
    for kill in [KillPoint::TaskRunsWritten, KillPoint::JobsCreated] {
        let small = outage_under_run(20, kill).await;
        let large = outage_under_run(100, kill).await;
        for outage in [&small, &large] {
            assert!(
                outage.warnings <= MAX_OUTAGE_WARNINGS,
                "{} tasks, killed at {kill:?}: {} WARN/ERROR lines during the outage, at most {MAX_OUTAGE_WARNINGS} wanted: {:#?}",
                outage.tasks,
                outage.warnings,
                outage.grouped
            );
        }
        // The killed sync may have had a few more writes in flight at 100 tasks, no more.
        assert!(
            large.warnings <= small.warnings + 3,
            "WARN/ERROR lines grow with TaskRuns (killed at {kill:?}): {} at {} tasks, {} at {}: {:#?}",
            small.warnings,
            small.tasks,
            large.warnings,
            large.tasks,
            large.grouped
        );
        eprintln!(
            "outage lines, killed at {kill:?}: {} tasks {} ({} WARN/ERROR, at {:?}, converged {:?}); {} tasks {} ({} WARN/ERROR, at {:?}, converged {:?})",
            small.tasks,
            small.lines,
            small.warnings,
            small.killed_at,
            small.converged_after_restart,
            large.tasks,
            large.lines,
            large.warnings,
            large.killed_at,
            large.converged_after_restart,
        );
    }
}

/// `GET /readyz` of `addr`: the status code and the answer (0 and empty when nothing answers).
async fn readyz(addr: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, answer)
}

/// Polls `/readyz` until `want(code, answer)` or `within` passed; the last answer either way.
async fn readyz_until(
    addr: &str,
    within: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> (bool, String) {
    let deadline = Instant::now() + within;
    loop {
        let (code, answer) = readyz(addr).await;
        if want(code, &answer) {
            return (true, answer);
        }
        if Instant::now() > deadline {
            return (false, answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A load balancer or the kubelet sees an API-server outage on `/readyz` of `run --api` (check
/// `cluster`) while it lasts, and the process ready again once the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_an_api_server_outage_while_it_lasts() {
    let repo = task_repo(3);
    let work = tempfile::tempdir().unwrap();
    let mut server = ApiServerProcess::start(&work.path().join("data"), 0).await;
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let log = work.path().join("run.log");
    let mut run = spawn_run_with(
        &repo,
        &server.kubeconfig,
        work.path(),
        &log,
        &["--api", "--api-addr", &addr],
    );
    let (ready, answer) = readyz_until(&addr, Duration::from_secs(60), |code, _| code == 200).await;
    assert!(ready, "ready before the outage: {answer}");
    assert!(answer.contains("\"cluster\":true"), "{answer}");

    server.kill();
    let (seen, answer) = readyz_until(&addr, Duration::from_secs(15), |code, answer| {
        code == 503 && answer.contains("\"cluster\":false")
    })
    .await;
    assert!(seen, "/readyz reports the outage: {answer}");

    server.restart().await;
    let (ready, answer) = readyz_until(&addr, Duration::from_secs(30), |code, _| code == 200).await;
    assert!(ready, "ready again after the restart: {answer}");
    sigkill(&mut run);
}
