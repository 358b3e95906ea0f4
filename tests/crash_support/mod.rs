//! Real processes for the crash tests and the API-server restart benchmark: a persistent
//! embedded API server (`orchestrator apiserver --data-dir`) that can be SIGKILLed and started
//! again on the same port and data, `orchestrator run` against it, an observer that polls the
//! cluster for convergence and for objects that got a second uid, and `run`'s log counted by
//! level. Used by `tests/crash_safety.rs` and `benches/api_restart.rs` (with `#[path]`), which
//! both declare `mod sync_repo` beside it.
#![allow(dead_code)]

use crate::sync_repo::TaskRepo;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use orchestrator::crd::TaskRun;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AGENTS: &str = r#"agents:
  claude-code:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "task $TASK_ID done"']
"#;

pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command.env("RUST_BACKTRACE", "0");
    command
}

pub fn sigkill(child: &mut Child) {
    // SAFETY: kill(2) on the pid of a child this process started and has not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// `orchestrator apiserver --data-dir`: a persistent embedded API server in its own process.
pub struct ApiServerProcess {
    child: Child,
    pub port: u16,
    data_dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ApiServerProcess {
    pub async fn start(data_dir: &Path, port: u16) -> ApiServerProcess {
        let kubeconfig = data_dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let child = bin()
            .args(["apiserver", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kubeconfig.exists() {
            assert!(
                Instant::now() < deadline,
                "the API server wrote no kubeconfig"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The file is written whole after the server listens; read the port it picked.
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        let port = text
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .expect("a server URL in the kubeconfig");
        ApiServerProcess {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            kubeconfig,
        }
    }

    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// SIGKILL, `down_for`, then the same port and data again; returns when it listens.
    pub async fn kill_and_restart(&mut self, down_for: Duration) {
        self.kill();
        tokio::time::sleep(down_for).await;
        self.restart().await;
    }

    pub fn kill(&mut self) {
        sigkill(&mut self.child);
    }

    pub async fn restart(&mut self) {
        let restarted = ApiServerProcess::start(&self.data_dir, self.port).await;
        assert_eq!(restarted.port, self.port, "restarted on the same port");
        *self = restarted;
    }
}

impl Drop for ApiServerProcess {
    fn drop(&mut self) {
        sigkill(&mut self.child);
    }
}

/// `orchestrator run` on `repo` against the server of `kubeconfig`, stderr to `log`, a sync
/// interval of 1 s, at RUST_LOG=info (what a user who sets it sees).
pub fn spawn_run(repo: &TaskRepo, kubeconfig: &Path, work: &Path, log: &Path) -> Child {
    spawn_run_with(repo, kubeconfig, work, log, &[])
}

/// [`spawn_run`] with `extra` arguments (`--api`, ...).
pub fn spawn_run_with(
    repo: &TaskRepo,
    kubeconfig: &Path,
    work: &Path,
    log: &Path,
    extra: &[&str],
) -> Child {
    bin()
        .args(["run"])
        .args(extra)
        .arg("--repo")
        .arg(repo.path())
        .args(["--path", "tasks", "--interval", "1s", "--agents"])
        .arg(repo.path().join("agents.yaml"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--mirror-dir")
        .arg(work.join("mirrors"))
        .env("TMPDIR", work)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// A repository of `tasks` task folders for the agent of [`AGENTS`], in one commit.
pub fn task_repo(tasks: i64) -> TaskRepo {
    let repo = TaskRepo::new();
    std::fs::write(repo.path().join("agents.yaml"), AGENTS).unwrap();
    for id in 1..=tasks {
        repo.write_task(id, &format!("task {id}"));
    }
    repo.commit("many tasks");
    repo
}

/// Everything seen so far: each object's uid by kind and name. A name that comes back with a
/// different uid was deleted and created again, which a crash must never cause.
pub struct Observer {
    tasks: i64,
    /// Between two looks.
    pub poll: Duration,
    uids: BTreeMap<(&'static str, String), String>,
    pub second_uids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub tasks: i64,
    pub task_runs: usize,
    pub jobs: usize,
    /// TaskRuns whose Job of the TaskRun's own contextVersion exists.
    pub task_runs_with_their_job: usize,
    /// (task, version) pairs with more than one Job.
    pub duplicate_jobs: usize,
}

impl Progress {
    pub fn converged(&self) -> bool {
        self.task_runs as i64 == self.tasks && self.task_runs_with_their_job as i64 == self.tasks
    }
    /// TaskRun and Job writes seen: twice the tasks when converged.
    pub fn steps(&self) -> usize {
        self.task_runs + self.jobs
    }
}

impl Observer {
    pub fn new(tasks: i64) -> Observer {
        Observer {
            tasks,
            poll: Duration::from_millis(50),
            uids: BTreeMap::new(),
            second_uids: Vec::new(),
        }
    }

    fn remember(&mut self, kind: &'static str, meta: &kube::api::ObjectMeta) {
        let (Some(name), Some(uid)) = (meta.name.clone(), meta.uid.clone()) else {
            return;
        };
        match self.uids.insert((kind, name.clone()), uid.clone()) {
            Some(old) if old != uid => self
                .second_uids
                .push(format!("{kind} {name}: uid {old} then {uid}")),
            _ => {}
        }
    }

    /// One look at the cluster; `None` while the server cannot answer.
    pub async fn observe(&mut self, client: &kube::Client) -> Option<Progress> {
        let list = ListParams::default();
        let task_runs = match Api::<TaskRun>::namespaced(client.clone(), "default")
            .list(&list)
            .await
        {
            Ok(l) => l.items,
            // The CRD is not installed yet.
            Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
            Err(_) => return None,
        };
        let jobs = Api::<Job>::namespaced(client.clone(), "default")
            .list(&list)
            .await
            .ok()?
            .items;
        let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default")
            .list(&list)
            .await
            .ok()?
            .items;
        for tr in &task_runs {
            self.remember("TaskRun", &tr.metadata);
        }
        for job in &jobs {
            self.remember("Job", &job.metadata);
        }
        for cm in &config_maps {
            self.remember("ConfigMap", &cm.metadata);
        }
        let mut per_version: BTreeMap<(String, String), usize> = BTreeMap::new();
        for job in &jobs {
            let labels = job.metadata.labels.clone().unwrap_or_default();
            let key = (
                labels.get("task-id").cloned().unwrap_or_default(),
                labels.get("context-version").cloned().unwrap_or_default(),
            );
            *per_version.entry(key).or_default() += 1;
        }
        let with_job = task_runs
            .iter()
            .filter(|tr| {
                let key = (
                    tr.spec.task_id.to_string(),
                    tr.spec.context_version.to_string(),
                );
                per_version.get(&key) == Some(&1)
            })
            .count();
        Some(Progress {
            tasks: self.tasks,
            task_runs: task_runs.len(),
            jobs: jobs.len(),
            task_runs_with_their_job: with_job,
            duplicate_jobs: per_version.values().filter(|n| **n > 1).count(),
        })
    }

    /// Polls until `done` holds; the time it took and the last progress.
    pub async fn until(
        &mut self,
        client: &kube::Client,
        within: Duration,
        done: impl Fn(&Progress) -> bool,
    ) -> (Duration, Option<Progress>) {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < within {
            if let Some(p) = self.observe(client).await {
                last = Some(p);
                if done(&p) {
                    break;
                }
            }
            tokio::time::sleep(self.poll).await;
        }
        (start.elapsed(), last)
    }
}

/// The number of lines of a log file so far.
pub fn log_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Lines of `run`'s log from line `from` (0-based) on, by level (`ERROR`, `WARN`, `INFO`, ...).
pub fn lines_by_level(path: &Path, from: usize) -> BTreeMap<String, usize> {
    let mut levels = BTreeMap::new();
    for line in log_since(path, from) {
        *levels.entry(level_of(&line).to_string()).or_default() += 1;
    }
    levels
}

/// Lines of `run`'s log from line `from` on.
pub fn log_since(path: &Path, from: usize) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(from)
        .map(String::from)
        .collect()
}

/// The level of a tracing line (`2026-01-01T00:00:00.000000Z  WARN target: message`), or
/// `other` for a line that is not one (a continuation, a panic).
pub fn level_of(line: &str) -> &str {
    match line.split_whitespace().nth(1) {
        Some(level @ ("ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")) => level,
        _ => "other",
    }
}

/// `orchestrator::sync::apply:`, the target of a tracing line.
fn is_target(word: &str) -> bool {
    word.ends_with(':')
        && word.contains("::")
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':')
}

/// The ERROR and WARN lines of `lines`, with digits and span fields blurred so that lines that
/// differ only by task or count group together, most frequent first: what an outage logged.
pub fn grouped_warnings(lines: &[String]) -> Vec<(usize, String)> {
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for line in lines {
        if !matches!(level_of(line), "ERROR" | "WARN") {
            continue;
        }
        // The level, then the target and message without the spans before them.
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let target = words.iter().skip(1).position(|w| is_target(w));
        let words = match target {
            Some(at) => [&words[..1], &words[1 + at..]].concat(),
            None => words,
        };
        let body: String = words
            .join(" ")
            .chars()
            .map(|c| if c.is_ascii_digit() { 'N' } else { c })
            .take(200)
            .collect();
        *groups.entry(body).or_default() += 1;
    }
    let mut groups: Vec<_> = groups.into_iter().map(|(k, n)| (n, k)).collect();
    groups.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    groups
}
