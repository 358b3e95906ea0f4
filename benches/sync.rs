//! Sync benchmark on the embedded API server: a generated git repository of N task folders in;
//! first sync, no-op re-sync (with its write count), re-sync after one task changed, and
//! commit-to-applied latency through the notify trigger out.
//!
//! `cargo bench --bench sync` (sizes: SYNC_BENCH_SIZES=1000,10000; commits for the latency:
//! SYNC_BENCH_COMMITS=15; each task has task.yaml and SYNC_BENCH_FILES=3 markdown files of
//! SYNC_BENCH_FILE_BYTES=4096 bytes, as in the plan benchmark). Targets: no-op re-sync of 10,000 tasks ≤ 100 ms with zero writes;
//! median commit-to-applied ≤ 500 ms.

use git2::{Oid, Repository, Signature};
use kube_envtest::{ApiServer, ApiServerConfig, RunningApiServer};
use orchestrator::desired::SourceIdentity;
use orchestrator::source::{
    Credentials, DigestCache, GitSource, SourceConfig, read_snapshot, watch_refs,
};
use orchestrator::sync::apply::{SyncOptions, Syncer};
use orchestrator::sync::crd_install::ensure_crd;
use orchestrator::sync::metrics::SyncMetrics;
use orchestrator::sync::report::report_channel;
use orchestrator::sync::run_loop::{LoopOutputs, LoopSettings, run_sync_loop};
use orchestrator::sync::trigger::sync_trigger;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

const TASKS: &str = "tasks";

/// A bare-bones task repository built straight in the object database (no working tree).
struct BenchRepo {
    _dir: tempfile::TempDir,
    repo: Repository,
    task_yaml: Oid,
    files: usize,
    file_bytes: usize,
    folders: Vec<(String, Oid)>,
}

impl BenchRepo {
    fn new(n: usize, files: usize, file_bytes: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &opts).expect("git init");
        let task_yaml = repo
            .blob(b"serviceName: web\nagentName: claude-code\n")
            .expect("blob");
        let mut this = BenchRepo {
            _dir: dir,
            repo,
            task_yaml,
            files,
            file_bytes,
            folders: vec![],
        };
        this.folders = (1..=n as i64)
            .map(|id| {
                let tree = this.folder_tree(id, 0);
                (format!("{id}-task"), tree)
            })
            .collect();
        this.commit("all tasks");
        this
    }

    fn path(&self) -> &std::path::Path {
        self.repo.path().parent().expect("a working tree")
    }

    fn folder_tree(&self, id: i64, edit: u32) -> Oid {
        let mut tb = self.repo.treebuilder(None).expect("treebuilder");
        tb.insert("task.yaml", self.task_yaml, 0o100644)
            .expect("insert");
        for file in 0..self.files {
            // Distinct text per task and file; the edit changes the first file only.
            let mut text = format!("# Task {id}, file {file}\n\n");
            if file == 0 {
                text.push_str(&format!("Edit {edit}.\n"));
            }
            let mut line = 0;
            while text.len() < self.file_bytes {
                text.push_str(&format!(
                    "Line {line} of task {id}: do the thing carefully, with tests.\n"
                ));
                line += 1;
            }
            text.truncate(self.file_bytes);
            let blob = self.repo.blob(text.as_bytes()).expect("blob");
            let name = if file == 0 {
                "prompt.md".to_string()
            } else {
                format!("context-{file}.md")
            };
            tb.insert(&name, blob, 0o100644).expect("insert");
        }
        tb.write().expect("tree")
    }

    fn edit(&mut self, index: usize, edit: u32) -> Oid {
        let id = index as i64 + 1;
        self.folders[index].1 = self.folder_tree(id, edit);
        self.commit(&format!("edit task {id} ({edit})"))
    }

    fn commit(&self, message: &str) -> Oid {
        let mut tasks = self.repo.treebuilder(None).expect("treebuilder");
        for (name, tree) in &self.folders {
            tasks.insert(name, *tree, 0o040000).expect("insert");
        }
        let tasks = tasks.write().expect("tree");
        let mut root = self.repo.treebuilder(None).expect("treebuilder");
        root.insert(TASKS, tasks, 0o040000).expect("insert");
        let root = self
            .repo
            .find_tree(root.write().expect("tree"))
            .expect("tree");
        let sig = Signature::now("bench", "bench@example.com").expect("signature");
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &root, &parents)
            .expect("commit")
    }

    fn snapshot(&self, cache: &mut DigestCache) -> orchestrator::source::SourceSnapshot {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap().id();
        read_snapshot(&self.repo, head, "main", TASKS, cache).expect("snapshot")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn start_server() -> RunningApiServer {
    let server = ApiServer::start(ApiServerConfig::default())
        .await
        .expect("the embedded server starts");
    ensure_crd(server.client()).await.expect("CRD");
    server
}

async fn bench_size(n: usize, commits: usize, files: usize, file_bytes: usize) {
    println!("\n== {n} tasks ({files} markdown files of {file_bytes} bytes each)");
    let server = start_server().await;
    let client = server.client();
    let t = Instant::now();
    let mut repo = BenchRepo::new(n, files, file_bytes);
    println!("generated repository: {}", ms(t.elapsed()));
    let mut cache = DigestCache::new();
    let snapshot = repo.snapshot(&mut cache);
    assert_eq!(snapshot.tasks.len(), n, "{:?}", snapshot.errors.first());

    let source = SourceIdentity::new(&repo.path().display().to_string(), TASKS);
    let mut syncer = Syncer::new(client.clone(), source.clone(), SyncOptions::new("default"));

    let before = server.request_stats();
    let first = syncer.sync(&snapshot).await.expect("first sync");
    let writes = server.request_stats().since(&before).writes();
    assert_eq!(first.report.created, n);
    println!(
        "first sync:            {:>10}  ({writes} writes, {:.0} TaskRuns/s)",
        ms(first.took),
        n as f64 / first.took.as_secs_f64()
    );

    let mut noop = vec![];
    let before = server.request_stats();
    for _ in 0..5 {
        let outcome = syncer.sync(&snapshot).await.expect("re-sync");
        assert!(outcome.plan.is_noop());
        noop.push(outcome.took);
    }
    let stats = server.request_stats().since(&before);
    let noop_median = median(noop);
    println!(
        "no-op re-sync:         {:>10}  median of 5 ({} writes, {} requests in all 5){}",
        ms(noop_median),
        stats.writes(),
        stats.total(),
        if n >= 10_000 {
            format!(
                "; target ≤ 100 ms: {:.2}x of target",
                noop_median.as_secs_f64() / 0.1
            )
        } else {
            String::new()
        }
    );

    let mut one = vec![];
    let mut one_writes = 0;
    for edit in 1..=3 {
        repo.edit(n / 2, edit);
        let snapshot = repo.snapshot(&mut cache);
        let before = server.request_stats();
        let outcome = syncer.sync(&snapshot).await.expect("sync");
        one_writes += server.request_stats().since(&before).writes();
        assert_eq!(outcome.report.updated, 1);
        one.push(outcome.took);
    }
    println!(
        "re-sync, 1 changed:    {:>10}  median of 3 ({one_writes} writes in all 3)",
        ms(median(one))
    );

    // Commit-to-applied through the real loop: GitSource on the local repository, the notify
    // watch on its refs, the sync; measured until the report names the new revision.
    let mirror = tempfile::tempdir().expect("temp dir");
    let git_source = GitSource::new(SourceConfig {
        url: repo.path().display().to_string(),
        branch: "main".into(),
        path: TASKS.into(),
        mirror_dir: mirror.path().to_path_buf(),
        interval: Duration::from_secs(3600),
        credentials: Credentials::default(),
    });
    let ref_changes = Arc::new(Notify::new());
    let _watch = watch_refs(repo.path(), ref_changes.clone()).expect("ref watch");
    let (reports_tx, mut reports) = report_channel();
    let (state_tx, _state) = watch::channel(None);
    let (_trigger, requests) = sync_trigger();
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = orchestrator::metrics::Metrics::new();
    let loop_task = tokio::spawn(run_sync_loop(
        git_source,
        Syncer::new(client.clone(), source, SyncOptions::new("default")),
        requests,
        Some(ref_changes),
        LoopOutputs {
            reports: reports_tx,
            every_report: None,
            state: state_tx,
            metrics: SyncMetrics::register(&metrics),
        },
        LoopSettings::new(Duration::from_secs(3600)),
        stop_rx,
    ));
    let head = repo
        .repo
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id()
        .to_string();
    reports
        .wait_for(|r| r.as_ref().is_some_and(|r| r.revision.commit == head))
        .await
        .expect("the first loop sync");
    let mut latencies = vec![];
    let mut writing = vec![];
    for edit in 0..commits {
        // Measured from the moment the commit exists (its ref moved); writing it is git's work.
        let writing_started = Instant::now();
        let commit = repo.edit((edit * 7) % n, 100 + edit as u32).to_string();
        let started = Instant::now();
        writing.push(started - writing_started);
        let applied = tokio::time::timeout(
            Duration::from_secs(30),
            reports.wait_for(|r| {
                r.as_ref()
                    .is_some_and(|r| r.revision.commit == commit && r.updated == 1)
            }),
        )
        .await;
        assert!(
            applied.is_ok(),
            "commit {commit} was not applied within 30 s"
        );
        latencies.push(started.elapsed());
        // Let the notify watch settle so each commit is measured on its own.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    let med = median(latencies);
    println!(
        "commit-to-applied:     {:>10}  median of {commits} (min {}, max {}); target ≤ 500 ms: {:.2}x of target \
         (writing each commit took a further {} median)",
        ms(med),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1]),
        med.as_secs_f64() / 0.5,
        ms(median(writing)),
    );
    let _ = stop_tx.send(true);
    let _ = loop_task.await;
    server.shutdown().await;
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SYNC_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let commits: usize = std::env::var("SYNC_BENCH_COMMITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (files, file_bytes) = (
        env("SYNC_BENCH_FILES", 3),
        env("SYNC_BENCH_FILE_BYTES", 4096),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for n in sizes {
            bench_size(n, commits, files, file_bytes).await;
        }
    });
}
