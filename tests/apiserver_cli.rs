//! Using the embedded cluster by hand, as docs/embedded-cluster.md shows it: the real binary,
//! `orchestrator apiserver --runner` in one process and `orchestrator run --kubeconfig` in
//! another; `run --embedded` writing a kubeconfig and printing the `export KUBECONFIG=` line;
//! and the warning when the server has no runner.

mod sync_repo;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use sync_repo::TaskRepo;

const AGENTS: &str = r#"defaults:
  activeDeadlineSeconds: 30
  backoffLimit: 0
agents:
  claude-code:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "task $TASK_ID done"']
"#;

fn repo_with_two_tasks() -> TaskRepo {
    let repo = TaskRepo::new();
    std::fs::write(repo.path().join("agents.yaml"), AGENTS).unwrap();
    repo.write_task(1, "first");
    repo.write_task(2, "second");
    repo.commit("two tasks");
    repo
}

fn orchestrator() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    c.env("RUST_LOG", "warn").env_remove("KUBECONFIG");
    c
}

/// Kills the child (started by this test) when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines of `from` until one satisfies `want`, for at most a minute (so that a missing
/// line fails the test instead of hanging it); every line read so far on failure.
fn read_until(
    from: impl std::io::Read + Send + 'static,
    want: impl Fn(&str) -> bool + Send + 'static,
) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if want(&line) {
                let _ = tx.send(Ok(line));
                return;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| Err("nothing within 60 s".to_string()))
}

#[test]
fn run_embedded_writes_a_kubeconfig_and_prints_the_export_line() {
    let repo = repo_with_two_tasks();
    let data = tempfile::tempdir().unwrap();
    let out = orchestrator()
        .args(["run", "--embedded", "--embedded-data-dir"])
        .arg(data.path())
        .arg("--repo")
        .arg(repo.path())
        .args(["--path", sync_repo::TASKS, "--until-done", "--agents"])
        .arg(repo.path().join("agents.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig = data.path().canonicalize().unwrap().join("kubeconfig");
    assert!(
        stdout.contains(&format!("export KUBECONFIG={}\n", kubeconfig.display())),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains("server: https://127.0.0.1:"), "{text}");

    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("embedded.yaml");
    let out = orchestrator()
        .args(["run", "--embedded", "--kubeconfig-out"])
        .arg(&file)
        .arg("--repo")
        .arg(repo.path())
        .args(["--path", sync_repo::TASKS, "--until-done", "--agents"])
        .arg(repo.path().join("agents.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(file.is_file(), "--kubeconfig-out names the file");
    assert!(String::from_utf8_lossy(&out.stdout).contains("export KUBECONFIG="));
}

#[test]
fn apiserver_with_runner_in_one_process_runs_the_jobs_of_run_in_another() {
    let repo = repo_with_two_tasks();
    let data = tempfile::tempdir().unwrap();
    let mut server = Running(
        orchestrator()
            .args(["apiserver", "--port", "0", "--runner", "--data-dir"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = server.0.stdout.take().unwrap();
    let export = read_until(stdout, |l| l.starts_with("export KUBECONFIG="))
        .expect("the server prints the export line");
    let kubeconfig = export.trim_start_matches("export KUBECONFIG=").to_string();

    let out = orchestrator()
        .args(["run", "--kubeconfig", &kubeconfig, "--repo"])
        .arg(repo.path())
        .args(["--path", sync_repo::TASKS, "--until-done", "--agents"])
        .arg(repo.path().join("agents.yaml"))
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("task-1   1        Succeeded"), "{text}");
    assert!(!text.contains("no local Job runner"), "{text}");
    drop(server);
}

#[test]
fn run_against_an_apiserver_without_a_runner_warns_that_no_jobs_will_run() {
    let repo = repo_with_two_tasks();
    let data = tempfile::tempdir().unwrap();
    let mut server = Running(
        orchestrator()
            .args(["apiserver", "--port", "0", "--data-dir"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = server.0.stdout.take().unwrap();
    let export = read_until(stdout, |l| l.starts_with("export KUBECONFIG="))
        .expect("the server prints the export line");
    let kubeconfig = export.trim_start_matches("export KUBECONFIG=").to_string();
    let mut run = Running(
        orchestrator()
            .args(["run", "--kubeconfig", &kubeconfig, "--repo"])
            .arg(repo.path())
            .args(["--path", sync_repo::TASKS, "--agents"])
            .arg(repo.path().join("agents.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = run.0.stderr.take().unwrap();
    let warning = read_until(stderr, |l| l.contains("no local Job runner attached"));
    assert!(warning.is_ok(), "no warning: {warning:?}");
    drop(run);
    drop(server);
}

#[test]
fn controller_embedded_prints_the_export_line_of_the_kubeconfig_it_writes() {
    let repo = repo_with_two_tasks();
    let data = tempfile::tempdir().unwrap();
    let mut controller = Running(
        orchestrator()
            .args(["controller", "--embedded", "--metrics-addr", "127.0.0.1:0"])
            .arg("--embedded-data-dir")
            .arg(data.path())
            .arg("--agents")
            .arg(repo.path().join("agents.yaml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = controller.0.stdout.take().unwrap();
    let export = read_until(stdout, |l| l.starts_with("export KUBECONFIG="))
        .expect("the controller prints the export line");
    let path = data.path().canonicalize().unwrap().join("kubeconfig");
    assert_eq!(export, format!("export KUBECONFIG={}", path.display()));
    assert!(path.is_file());
    drop(controller);
}

/// A supervisor (systemd, a container runtime, `kill`) stops the server with SIGTERM: it exits
/// 0 promptly and removes the scratch log directory it made, as on Ctrl-C.
#[cfg(unix)]
#[test]
fn apiserver_stops_cleanly_on_sigterm_and_removes_its_scratch_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Running(
        orchestrator()
            .env("TMPDIR", tmp.path())
            .args(["apiserver", "--port", "0", "--runner", "--kubeconfig-out"])
            .arg(tmp.path().join("kubeconfig"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = server.0.stdout.take().unwrap();
    read_until(stdout, |l| l.starts_with("export KUBECONFIG=")).expect("the server starts");
    let scratch = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("orchestrator-"))
            .collect::<Vec<_>>()
    };
    assert!(
        !scratch().is_empty(),
        "the runner's scratch log directory exists while it runs"
    );

    // SAFETY: kill(2) on the pid of a child this test started and has not yet reaped.
    assert_eq!(
        unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) },
        0
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    assert_eq!(
        scratch(),
        Vec::<String>::new(),
        "the scratch directory is removed"
    );
}
