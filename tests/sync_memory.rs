//! The sync holds each piece of markdown once (the snapshot's): a syncer that kept a second copy
//! of every task's markdown again (whole live TaskRuns, or an apply body per task) fails here.
//! What it holds per task beside the markdown is bounded too: a write future made for every task
//! up front, or the watch keeping every TaskRun's metadata a second time, fails here.
//!
//! This test binary counts every heap byte it allocates. The API server runs in its own process
//! (`orchestrator apiserver`), or is the cluster `KUBECONFIG` names, so the count is the sync's
//! alone: the snapshot, the syncer's live cache and desired cache, the watch, the writes.

mod sync_repo;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use orchestrator::crd::MarkdownFile;
use orchestrator::desired::SourceIdentity;
use orchestrator::source::{
    ContentDigest, FolderContent, Revision, SourceSnapshot, TaskFile, TaskFolder,
};
use orchestrator::sync::apply::{SyncOptions, Syncer};
use orchestrator::sync::crd_install::ensure_crd;
use sha2::{Digest, Sha256};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use sync_repo::{TASKS as TASKS_PATH, TaskRepo};

/// The system allocator, counting the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap bytes now; the peak restarts from here.
fn live_bytes() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// `orchestrator apiserver` in its own process; stopped when dropped.
struct ApiServerProcess {
    child: Child,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ApiServerProcess {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .args(["apiserver", "--port", "0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orchestrator apiserver starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("kubeconfig written") => break,
                Some(Ok(_)) => {}
                _ => panic!("orchestrator apiserver exited before writing its kubeconfig"),
            }
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            kubeconfig,
            _dir: dir,
        }
    }

    async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("client")
    }
}

impl Drop for ApiServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// File `file` of task `id`: `file_bytes` of markdown, distinct from every other file's.
fn file_text(id: i64, file: usize, file_bytes: usize) -> String {
    let mut text = format!("# Task {id}, file {file}\n");
    while text.len() < file_bytes {
        text.push_str("Do the thing carefully, with tests. ");
    }
    text.truncate(file_bytes);
    text
}

/// `tasks` task folders of three files of `file_bytes` each, every file distinct.
fn snapshot(tasks: i64, file_bytes: usize) -> SourceSnapshot {
    let tasks = (1..=tasks)
        .map(|id| {
            let files: Vec<MarkdownFile> = (0..3)
                .map(|file| MarkdownFile {
                    filename: format!("file-{file}.md"),
                    content: file_text(id, file, file_bytes),
                })
                .collect();
            let mut hasher = Sha256::new();
            for f in &files {
                hasher.update(f.filename.as_bytes());
                hasher.update(f.content.as_bytes());
            }
            TaskFolder {
                task_id: id,
                path: format!("tasks/{id}-task").into(),
                content: FolderContent {
                    service_name: "web".into(),
                    agent_name: "claude-code".into(),
                    suspend: false,
                    priority: 0,
                    markdown_files: files
                        .into_iter()
                        .map(|f| TaskFile::held(f.filename, f.content))
                        .collect(),
                    digest: ContentDigest(
                        format!("sha256:{}", hex::encode(hasher.finalize())).into(),
                    ),
                }
                .into(),
            }
        })
        .collect();
    SourceSnapshot {
        revision: Revision {
            branch: "main".into(),
            commit: "a".repeat(40),
        },
        path: "tasks".into(),
        tasks,
        errors: vec![],
        committed_at: None,
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What one syncer held beside its snapshot.
#[derive(Debug)]
struct Held {
    markdown: usize,
    after_first: usize,
    peak_first: usize,
    after_resyncs: usize,
}

/// Syncs `tasks` tasks of three `file_bytes` files into `namespace` with a syncer of its own,
/// then re-syncs 5 times, counting the heap the sync holds beside the snapshot.
async fn held_by_sync(
    client: kube::Client,
    namespace: &str,
    tasks: i64,
    file_bytes: usize,
) -> Held {
    let snapshot = snapshot(tasks, file_bytes);
    let markdown: usize = snapshot
        .tasks
        .iter()
        .flat_map(|t| t.content.markdown_files.iter())
        .map(|f| f.text().expect("held text").len())
        .sum();
    let source = SourceIdentity::new("https://example.com/memory.git", "tasks");
    let mut syncer = Syncer::new(client, source, SyncOptions::new(namespace));

    let before = live_bytes();
    let first = syncer.sync(&snapshot).await.expect("first sync");
    assert_eq!(first.report.created, tasks as usize, "{:?}", first.report);
    let peak_first = PEAK.load(Ordering::Relaxed) - before;
    drop(first);
    let after_first = LIVE.load(Ordering::Relaxed).saturating_sub(before);

    // Let the watch catch up, so that the re-syncs read no TaskRun again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let outcome = syncer.sync(&snapshot).await.expect("re-sync");
        assert!(outcome.plan.is_noop(), "{:?}", outcome.report);
    }
    let after_resyncs = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let held = Held {
        markdown,
        after_first,
        peak_first,
        after_resyncs,
    };
    println!(
        "{tasks} tasks × 3 × {file_bytes} bytes: markdown {}; the sync holds {} after the first \
         sync (peak {}), {} after 5 no-op re-syncs",
        mib(held.markdown),
        mib(held.after_first),
        mib(held.peak_first),
        mib(held.after_resyncs),
    );
    held
}

async fn namespace(client: &kube::Client) -> String {
    let name = format!("t-mem-{:08x}", rand::random::<u32>());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"orchestrator.io/test": "true"}},
    }))
    .expect("a namespace object");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("the test namespace is created");
    name
}

/// The measurements of this binary share one allocation counter: one at a time.
static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A client of the `KUBECONFIG` cluster, or of an `orchestrator apiserver` of the test's own.
async fn cluster() -> (kube::Client, Option<ApiServerProcess>) {
    match std::env::var_os("KUBECONFIG") {
        Some(_) => (
            kube::Client::try_default()
                .await
                .expect("KUBECONFIG is set but no client could be built from it"),
            None,
        ),
        None => {
            let server = ApiServerProcess::start();
            (server.client().await, Some(server))
        }
    }
}

async fn delete_namespaces(client: &kube::Client, namespaces: &[&String]) {
    for ns in namespaces {
        // A real cluster keeps the test's namespaces otherwise; failing to delete is not the
        // sync's fault.
        let _ = Api::<Namespace>::all(client.clone())
            .delete(ns, &kube::api::DeleteParams::background())
            .await;
    }
}

/// Two syncs that differ only in the number of tasks (of little markdown): what the sync holds
/// for each further task, and how much higher its first sync peaks, stay within 1 KiB. Seen
/// here: 100–400 bytes (a compact record of each live TaskRun, its desired TaskRun, the watch's
/// few fields). Keeping a live TaskRun's metadata as `ObjectMeta` (two maps of owned strings)
/// held about 2.5 KiB a task; the watch keeping every TaskRun's metadata again added about
/// 2 KiB a task; a write future made for every task before the writes start added about 2 KiB
/// a task to the peak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_sync_holds_per_task_is_bounded() {
    const FEW: i64 = 200;
    const MANY: i64 = 1200;
    const HELD_PER_TASK: usize = 1024;
    const PEAK_PER_TASK: usize = 1024;
    let _one_at_a_time = MEASURING.lock().await;
    let (client, _server) = cluster().await;
    ensure_crd(client.clone()).await.expect("the TaskRun CRD");

    let few_ns = namespace(&client).await;
    let few = held_by_sync(client.clone(), &few_ns, FEW, 256).await;
    let many_ns = namespace(&client).await;
    let many = held_by_sync(client.clone(), &many_ns, MANY, 256).await;
    delete_namespaces(&client, &[&few_ns, &many_ns]).await;

    // The snapshot (and its markdown) is made before the count starts: all counted is the
    // sync's.
    let more_tasks = (MANY - FEW) as usize;
    for (what, few, many, limit) in [
        (
            "held after the first sync",
            few.after_first,
            many.after_first,
            HELD_PER_TASK,
        ),
        (
            "held after 5 no-op re-syncs",
            few.after_resyncs,
            many.after_resyncs,
            HELD_PER_TASK,
        ),
        (
            "the first sync's peak",
            few.peak_first,
            many.peak_first,
            PEAK_PER_TASK,
        ),
    ] {
        let per_task = many.saturating_sub(few) / more_tasks;
        println!("{what}: {per_task} bytes per further task (limit {limit})");
        assert!(
            per_task <= limit,
            "{what}: {per_task} bytes per task (allowed {limit}) for {more_tasks} more tasks: is \
             the sync keeping something per task twice (whole metadata of every live TaskRun?), \
             or making every write's future before the writes start?"
        );
    }
}

/// Two syncs that differ only in the size of the markdown: what the sync holds beside the
/// snapshot may grow with the number of tasks (metadata, fingerprints), not with the markdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_sync_holds_does_not_grow_with_the_markdown() {
    const TASKS: i64 = 500;
    let _one_at_a_time = MEASURING.lock().await;
    let (client, _server) = cluster().await;
    ensure_crd(client.clone()).await.expect("the TaskRun CRD");

    let small_ns = namespace(&client).await;
    let small = held_by_sync(client.clone(), &small_ns, TASKS, 512).await;
    let large_ns = namespace(&client).await;
    let large = held_by_sync(client.clone(), &large_ns, TASKS, 16 * 1024).await;
    delete_namespaces(&client, &[&small_ns, &large_ns]).await;

    // A second copy of every task's markdown would add `more_markdown`; a quarter of it leaves
    // room for allocator noise and nothing else.
    let more_markdown = large.markdown - small.markdown;
    let allowed = more_markdown / 4;
    for (what, small, large) in [
        ("after the first sync", small.after_first, large.after_first),
        (
            "after 5 no-op re-syncs",
            small.after_resyncs,
            large.after_resyncs,
        ),
    ] {
        let grew = large.saturating_sub(small);
        assert!(
            grew < allowed,
            "{what}, the sync of {} more markdown holds {} more (allowed {}): is it keeping the \
             live TaskRuns' markdown, or an apply body per task?",
            mib(more_markdown),
            mib(grew),
            mib(allowed)
        );
    }
    // The first sync's peak may grow by the writes in flight (32 bodies and responses), not by
    // a body per task.
    let grew = large.peak_first.saturating_sub(small.peak_first);
    assert!(
        grew < more_markdown / 2,
        "the first sync of {} more markdown peaked {} higher: only the writes in flight should \
         hold an apply body",
        mib(more_markdown),
        mib(grew)
    );
}

/// A repository of `tasks` task folders of three distinct `file_bytes` files (prompt.md,
/// file-1.md, file-2.md), committed; returns it, its head and the markdown bytes.
fn task_repository(tasks: i64, file_bytes: usize) -> (TaskRepo, git2::Oid, usize) {
    let repo = TaskRepo::new();
    let mut markdown = 0;
    for id in 1..=tasks {
        let texts: Vec<String> = (0..3)
            .map(|file| {
                let text = file_text(id, file, file_bytes);
                markdown += text.len();
                text
            })
            .collect();
        repo.write_task(id, &texts[0]);
        repo.write_file(id, "file-1.md", &texts[1]);
        repo.write_file(id, "file-2.md", &texts[2]);
    }
    let head = repo.commit("tasks");
    (repo, head, markdown)
}

/// Read from git, a snapshot (and the folder cache behind it) holds each file's name, hash and
/// blob id, not its text: the text is read from the repository when a TaskRun is written. A
/// snapshot that held the markdown again (as every snapshot did before) fails here; the same
/// read holding the text shows that the count sees it.
#[tokio::test]
async fn a_snapshot_read_from_git_holds_no_markdown() {
    use orchestrator::source::{DigestCache, read_snapshot};
    const TASKS: i64 = 300;
    let _one_at_a_time = MEASURING.lock().await;
    let (tasks, commit, markdown) = task_repository(TASKS, 16 * 1024);
    let repo = &tasks.repo;

    let held_by = |mut cache: DigestCache| {
        let before = live_bytes();
        let snapshot = read_snapshot(repo, commit, "main", TASKS_PATH, &mut cache).expect("read");
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        (snapshot, cache, held)
    };
    let (snapshot, _cache, held) = held_by(DigestCache::new());
    let (_, _text_cache, held_with_text) = held_by(DigestCache::holding_text());
    println!(
        "{TASKS} tasks × 3 × 16 KiB: markdown {}; a snapshot and its cache hold {} (holding the \
         text: {})",
        mib(markdown),
        mib(held),
        mib(held_with_text)
    );
    assert_eq!(snapshot.tasks.len(), TASKS as usize);
    assert!(
        held < markdown / 16,
        "the snapshot read from git holds {} for {} of markdown: is it keeping the text again?",
        mib(held),
        mib(markdown)
    );
    assert!(
        held_with_text > markdown,
        "holding the text, the snapshot holds {} for {} of markdown: the count misses it",
        mib(held_with_text),
        mib(markdown)
    );
    // What a write reads is the text that was hashed.
    let file = &snapshot.tasks[41].content.markdown_files[2];
    let text = file.text().expect("read from the repository");
    assert!(text.starts_with("# Task 42, file 2\n"), "{text:.40}");
    assert_eq!(text.len(), 16 * 1024);
    assert_eq!(file.hash, orchestrator::source::content_hash(&text));
}
