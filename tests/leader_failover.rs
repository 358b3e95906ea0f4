//! Two `orchestrator run --leader-elect` processes against one API server: only the leader
//! writes; when it is killed the other takes over within the lease duration, no Job is created
//! twice, and the notes of both leaders' commits are there. Needs the local Job runner, so it
//! runs on the embedded server only.

mod support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_envtest::runner::{JobRunner, RunnerConfig};
use orchestrator::crd::{TaskPhase, TaskRun};
use orchestrator::health::Health;
use orchestrator::notes::read::{NoteQuery, read_note};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LEASE_SECONDS: u64 = 3;
const AGENTS: &str = r#"
defaults:
  activeDeadlineSeconds: 60
  backoffLimit: 0
agents:
  shell:
    image: local/shell
    command: ["sh", "-c"]
    args: ["sleep 1; cat \"$TASK_DIR\"/*.md"]
"#;

fn commit_tasks(dir: &Path, ids: &[i64], message: &str) -> String {
    for id in ids {
        let folder = dir.join(format!("tasks/{id}-task"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("task.yaml"),
            "serviceName: web\nagentName: shell\n",
        )
        .unwrap();
        std::fs::write(folder.join("prompt.md"), format!("# Task {id}\n")).unwrap();
    }
    std::fs::write(dir.join("tasks/agents.yaml"), AGENTS).unwrap();
    let repo = git2::Repository::open(dir).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap();
    // The replicas follow a bare repository (the API writes to it), as a remote would be.
    let mut origin = repo.find_remote("origin").unwrap();
    origin
        .push(&["+refs/heads/main:refs/heads/main"], None)
        .unwrap();
    id.to_string()
}

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port for a replica's API.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of a plain HTTP GET on loopback, or None when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn start_replica(
    kubeconfig: &Path,
    repo: &Path,
    namespace: &str,
    identity: &str,
    api_port: u16,
) -> Replica {
    let log = std::fs::File::create(repo.with_extension(format!("{identity}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["run", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--repo")
        .arg(repo)
        .args(["--branch", "main", "--agents"])
        .arg(repo.parent().unwrap().join("work/tasks/agents.yaml"))
        .args([
            "--path",
            "tasks",
            "--namespace",
            namespace,
            "--interval",
            "1s",
        ])
        .args([
            "--skip-crd-install",
            "--leader-elect",
            "--leader-identity",
            identity,
        ])
        .args(["--lease-duration", &format!("{LEASE_SECONDS}s")])
        .args(["--api", "--api-addr", &format!("127.0.0.1:{api_port}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the orchestrator binary starts");
    Replica(child)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("orchestrator-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn note_health(repo: &Path, commit: &str) -> Option<Health> {
    let mut query = NoteQuery::new(repo.display().to_string());
    query.revision = Some(commit.to_string());
    read_note(&query).ok()?.note.map(|n| n.health)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_hands_over_within_the_lease() {
    let mut cluster = support::cluster().await;
    if !cluster.is_embedded() {
        eprintln!("skipping: the failover test needs the embedded server and the local runner");
        return;
    }
    cluster.install_task_run_crd().await;
    let kubeconfig = cluster.kubeconfig_path();
    let runner_logs = tempfile::tempdir().unwrap();
    let runner = JobRunner::start(
        cluster.client.clone(),
        RunnerConfig::new(runner_logs.path()),
    );
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("tasks.git");
    let work_dir = dir.path().join("work");
    let mut init = git2::RepositoryInitOptions::new();
    init.bare(true).initial_head("main");
    git2::Repository::init_opts(&repo_dir, &init).unwrap();
    let work = git2::Repository::init_opts(
        &work_dir,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .unwrap();
    work.remote("origin", &repo_dir.display().to_string())
        .unwrap();
    let first = commit_tasks(&work_dir, &[1, 2], "two tasks");

    let leases: Api<Lease> = cluster.api();
    let task_runs: Api<TaskRun> = cluster.api();
    let jobs: Api<Job> = cluster.api();
    let ns = cluster.namespace.clone();

    let a = start_replica(&kubeconfig, &repo_dir, &ns, "replica-a", free_port());
    wait_for("replica-a to lead", Duration::from_secs(30), || async {
        holder(&leases).await.as_deref() == Some("replica-a")
    })
    .await;
    let b_port = free_port();
    let _b = start_replica(&kubeconfig, &repo_dir, &ns, "replica-b", b_port);
    wait_for(
        "the first commit's note to be Healthy",
        Duration::from_secs(60),
        || {
            let healthy = note_health(&repo_dir, &first) == Some(Health::Healthy);
            async move { healthy }
        },
    )
    .await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("replica-a"),
        "the follower must not take a live lease"
    );
    // The follower serves reads and is ready without a sync of its own.
    assert_eq!(http_status(b_port, "/api/v1/tasks"), Some(200));
    assert_eq!(http_status(b_port, "/readyz"), Some(200));
    // It has no sync report of its own, so a revision's status comes from the commit's note.
    assert_eq!(
        http_status(b_port, &format!("/api/v1/status/{first}")),
        Some(200)
    );

    let job_uids_before: Vec<_> = jobs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| (j.metadata.name, j.metadata.uid))
        .collect();
    assert_eq!(job_uids_before.len(), 2);

    drop(a); // SIGKILL: no release, so replica-b must wait for the lease to expire.
    let killed = Instant::now();
    wait_for("replica-b to lead", Duration::from_secs(30), || async {
        holder(&leases).await.as_deref() == Some("replica-b")
    })
    .await;
    let takeover = killed.elapsed();
    // The lease expires LEASE_SECONDS after its last renewal; the follower notices within one
    // retry period (2/15 of the lease) plus a request.
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(2),
        "takeover took {takeover:?}"
    );
    eprintln!("failover: replica-b led {takeover:?} after replica-a was killed");

    let second = commit_tasks(&work_dir, &[3], "a third task");
    wait_for(
        "the second commit's note to be Healthy",
        Duration::from_secs(60),
        || {
            let healthy = note_health(&repo_dir, &second) == Some(Health::Healthy);
            async move { healthy }
        },
    )
    .await;

    let trs = task_runs.list(&Default::default()).await.unwrap().items;
    assert_eq!(trs.len(), 3);
    for tr in &trs {
        let phase = tr.status.as_ref().and_then(|s| s.phase);
        assert_eq!(phase, Some(TaskPhase::Succeeded), "{:?}", tr.metadata.name);
        assert_eq!(
            tr.spec.context_version, 1,
            "no version bump from the handover"
        );
    }
    for tr in &trs {
        let attempts = tr.status.as_ref().map_or(0, |s| s.attempts);
        assert_eq!(attempts, 1, "{:?} ran once", tr.metadata.name);
    }
    let jobs_after = jobs.list(&Default::default()).await.unwrap().items;
    assert_eq!(jobs_after.len(), 3);
    for (name, uid) in &job_uids_before {
        let after = jobs_after
            .iter()
            .find(|j| &j.metadata.name == name)
            .unwrap();
        assert_eq!(
            &after.metadata.uid, uid,
            "{name:?} was not recreated by the new leader"
        );
    }
    let stats = cluster.request_stats().expect("embedded");
    assert_eq!(
        stats.count("jobs", "delete"),
        0,
        "no Job was deleted: {stats:?}"
    );
    assert_eq!(
        note_health(&repo_dir, &first),
        Some(Health::Healthy),
        "the first leader's note is kept"
    );
    runner.shutdown().await;
}
