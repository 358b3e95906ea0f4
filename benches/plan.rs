//! `plan` on a generated repository (default 10,000 task folders × 3 markdown files of ~4 KiB
//! plus task.yaml) against reading the same blobs with `git cat-file --batch | sha256sum`, and a
//! warm re-plan of the unchanged revision.
//!
//!     CARGO_TARGET_DIR=/work/target-bench cargo bench --bench plan
//!     PLAN_BENCH_TASKS=1000 cargo bench --bench plan      # a quick run
//!
//! The repository is generated once (git2 writing blobs and trees into memory, then one pack)
//! and cached under the target directory between runs.

use git2::{Oid, Repository, Signature};
use orchestrator::cli::plan::{Output, render};
use orchestrator::source::{DigestCache, read_snapshot_shared};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES_PER_TASK: usize = 3;
const FILE_BYTES: usize = 4096;
const AGENTS: [&str; 3] = ["claude-code", "codex", "aider"];
const SERVICES: [&str; 5] = [
    "billing-api",
    "gateway",
    "auth-service",
    "search",
    "reporting",
];
const WORDS: [&str; 16] = [
    "service",
    "request",
    "latency",
    "retry",
    "tenant",
    "invoice",
    "cache",
    "schema",
    "migration",
    "endpoint",
    "test",
    "deploy",
    "queue",
    "index",
    "token",
    "metric",
];

fn main() {
    let tasks: usize = std::env::var("PLAN_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runs: usize = std::env::var("PLAN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = target_dir().join(format!("bench-plan-repo-{tasks}"));
    let started = Instant::now();
    let (commit, edited) = ensure_repository(&dir, tasks);
    println!(
        "repository: {} ({tasks} task folders × {FILES_PER_TASK} files × {FILE_BYTES} B + task.yaml), ready in {:.2?}",
        dir.display(),
        started.elapsed()
    );
    println!(
        "threads available: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let repo = Repository::open_bare(&dir).expect("open the generated repository");

    // Baseline: the same blobs through git's own reader and coreutils' hasher.
    let list = dir.join("blob-ids.txt");
    write_blob_list(&repo, commit, &list);
    let baseline = median(
        (0..runs + 1)
            .map(|_| cat_file_sha256sum(&dir, &list))
            .skip(1)
            .collect(),
    );

    // Cold: a fresh cache and repository handle every time.
    let mut cold_times = Vec::new();
    let mut cache = DigestCache::new();
    for _ in 0..runs {
        cache = DigestCache::new();
        let repo = Repository::open_bare(&dir).expect("open");
        let m = Measure::start(false);
        let n = plan(&repo, commit, &mut cache);
        cold_times.push(m.stop());
        assert_eq!(n, tasks, "every generated folder is a valid task");
    }
    let cold = median(cold_times);
    // Warm: the same cache, the same revision.
    let warm = median(
        (0..runs.max(5))
            .map(|_| {
                let m = Measure::start(false);
                plan(&repo, commit, &mut cache);
                m.stop()
            })
            .collect(),
    );
    // A new commit that changed one folder: only that folder is read and hashed; the others
    // are copied from the cache into the new snapshot.
    let (hits_before, misses_before) = cache.stats();
    let one_changed = median(
        (0..runs.max(4))
            .map(|i| {
                let m = Measure::start(false);
                plan(&repo, if i % 2 == 0 { edited } else { commit }, &mut cache);
                m.stop()
            })
            .collect(),
    );
    let (hits, misses) = cache.stats();

    let ratio = cold.wall.as_secs_f64() / baseline.wall.as_secs_f64();
    let cpu_ratio = cold.cpu.as_secs_f64() / baseline.cpu.as_secs_f64();
    let warm_share = warm.wall.as_secs_f64() / cold.wall.as_secs_f64();
    println!(
        "                                        wall         cpu (user+sys, all threads/processes)"
    );
    println!("git cat-file --batch | sha256sum : {baseline}");
    println!(
        "cold plan                        : {cold}   ratio to baseline: wall {ratio:.2}, cpu {cpu_ratio:.2} (target <= 1.5) {}",
        verdict(ratio <= 1.5)
    );
    println!(
        "warm re-plan (same revision)     : {warm}   {:.2}% of cold (target <= 5%) {}",
        warm_share * 100.0,
        verdict(warm_share <= 0.05)
    );
    println!(
        "re-plan, new commit, 1 folder changed: {one_changed}   {:.1}% of cold ({} folders read, {} from cache)",
        one_changed.wall.as_secs_f64() / cold.wall.as_secs_f64() * 100.0,
        misses - misses_before,
        hits - hits_before
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "OK" } else { "MISSED" }
}

/// What `orchestrator plan` does, minus printing, with a cache kept between runs as
/// `orchestrator run` keeps it: the snapshot and the table of its TaskRuns.
fn plan(repo: &Repository, commit: Oid, cache: &mut DigestCache) -> usize {
    let snapshot =
        read_snapshot_shared(repo, commit, "main", "tasks", cache).expect("read snapshot");
    let table = render(&snapshot, "default", Output::Table).expect("render");
    std::hint::black_box(table);
    snapshot.tasks.len()
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>10.2?}  {:>10.2?}", self.wall, self.cpu)
    }
}

/// Wall time and CPU time of this process (or of its waited-for children).
struct Measure {
    children: bool,
    wall: Instant,
    cpu: Duration,
}

impl Measure {
    fn start(children: bool) -> Self {
        Measure {
            children,
            wall: Instant::now(),
            cpu: cpu_time(children),
        }
    }

    fn stop(self) -> Timing {
        Timing {
            wall: self.wall.elapsed(),
            cpu: cpu_time(self.children).saturating_sub(self.cpu),
        }
    }
}

fn cpu_time(children: bool) -> Duration {
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(mut times: Vec<Timing>) -> Timing {
    times.sort();
    times[times.len() / 2]
}

fn target_dir() -> PathBuf {
    // The bench binary is <target>/release/deps/plan-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn cat_file_sha256sum(dir: &Path, list: &Path) -> Timing {
    let script = format!(
        "git -C '{}' cat-file --batch < '{}' | sha256sum > /dev/null",
        dir.display(),
        list.display()
    );
    let m = Measure::start(true);
    let status = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::null())
        .status()
        .expect("run git");
    let elapsed = m.stop();
    assert!(status.success(), "baseline failed: {script}");
    elapsed
}

fn write_blob_list(repo: &Repository, commit: Oid, list: &Path) {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .expect("tree");
    let tasks = repo
        .find_tree(tree.get_name("tasks").expect("tasks").id())
        .expect("tasks tree");
    let mut out = String::new();
    for folder in tasks.iter() {
        for file in repo.find_tree(folder.id()).expect("folder").iter() {
            out.push_str(&file.id().to_string());
            out.push('\n');
        }
    }
    std::fs::write(list, out).expect("write blob list");
}

/// The generated repository's `main` and `edited` (main with one folder's prompt changed),
/// generating them first when they are not cached.
fn ensure_repository(dir: &Path, tasks: usize) -> (Oid, Oid) {
    if let Ok(repo) = Repository::open_bare(dir)
        && let Ok(main) = repo.refname_to_id("refs/heads/main")
        && let Ok(edited) = repo.refname_to_id("refs/heads/edited")
    {
        return (main, edited);
    }
    let _ = std::fs::remove_dir_all(dir);
    let repo = Repository::init_bare(dir).expect("init bench repository");
    // Objects go to memory first and then into one pack, as a fetched mirror holds them: no
    // 40,000 loose files, no repack.
    let odb = repo.odb().expect("odb");
    let mempack = odb.add_new_mempack_backend(1000).expect("mempack");
    let mut tasks_tree = repo.treebuilder(None).expect("treebuilder");
    for task in 0..tasks {
        let mut folder = repo.treebuilder(None).expect("treebuilder");
        let yaml = format!(
            "serviceName: {}\nagentName: {}\n",
            SERVICES[task % SERVICES.len()],
            AGENTS[task % AGENTS.len()]
        );
        folder
            .insert(
                "task.yaml",
                repo.blob(yaml.as_bytes()).expect("blob"),
                0o100644,
            )
            .expect("insert");
        for (i, name) in ["prompt.md", "acceptance.md", "context.md"]
            .iter()
            .enumerate()
            .take(FILES_PER_TASK)
        {
            let text = markdown(task, i);
            folder
                .insert(name, repo.blob(text.as_bytes()).expect("blob"), 0o100644)
                .expect("insert");
        }
        let folder_id = folder.write().expect("write folder tree");
        tasks_tree
            .insert(format!("{}-task-{task}", task + 1), folder_id, 0o040000)
            .expect("insert folder");
    }
    let tasks_id = tasks_tree.write().expect("write tasks tree");
    let mut root = repo.treebuilder(None).expect("treebuilder");
    root.insert("tasks", tasks_id, 0o040000)
        .expect("insert tasks");
    let root = repo
        .find_tree(root.write().expect("root"))
        .expect("root tree");
    let sig = Signature::now("bench", "bench@example.com").expect("signature");
    let commit = repo
        .commit(Some("refs/heads/main"), &sig, &sig, "generated", &root, &[])
        .expect("commit");
    // One folder edited.
    let tasks_tree = repo.find_tree(tasks_id).expect("tasks tree");
    let first = tasks_tree.get(0).expect("a folder");
    let mut folder = repo
        .treebuilder(Some(&repo.find_tree(first.id()).expect("folder")))
        .expect("treebuilder");
    folder
        .insert(
            "prompt.md",
            repo.blob(b"# Edited\n").expect("blob"),
            0o100644,
        )
        .expect("insert");
    let mut edited_tasks = repo.treebuilder(Some(&tasks_tree)).expect("treebuilder");
    let name = String::from_utf8_lossy(first.name_bytes()).into_owned();
    edited_tasks
        .insert(name, folder.write().expect("folder"), 0o040000)
        .expect("insert");
    let mut edited_root = repo.treebuilder(Some(&root)).expect("treebuilder");
    edited_root
        .insert("tasks", edited_tasks.write().expect("tasks"), 0o040000)
        .expect("insert");
    let edited_root = repo
        .find_tree(edited_root.write().expect("root"))
        .expect("root tree");
    let parent = repo.find_commit(commit).expect("commit");
    let edited = repo
        .commit(
            Some("refs/heads/edited"),
            &sig,
            &sig,
            "edit one folder",
            &edited_root,
            &[&parent],
        )
        .expect("commit");
    let mut pack = git2::Buf::new();
    mempack
        .dump(&repo, &mut pack)
        .expect("dump the generated objects into a pack");
    let mut writer = odb.packwriter().expect("packwriter");
    writer.write_all(&pack).expect("write pack");
    writer.commit().expect("index pack");
    mempack.reset().expect("reset mempack");
    (commit, edited)
}

/// ~4 KiB of distinct, markdown-looking text.
fn markdown(task: usize, file: usize) -> String {
    let mut seed = (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (file as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut text = format!("# Task {task}, part {file}\n\n");
    while text.len() < FILE_BYTES - 80 {
        text.push_str("- ");
        for _ in 0..10 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(WORDS[(seed % WORDS.len() as u64) as usize]);
            text.push(' ');
        }
        text.push_str(&format!("({})\n", seed % 100_000));
    }
    text
}
