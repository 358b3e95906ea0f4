//! Sync memory benchmark: `orchestrator run` in its own process against `orchestrator apiserver`
//! in another, on a generated repository; the markdown bytes, the `run` process's peak RSS
//! (VmHWM) after the first sync and after 5 no-op re-syncs, and their ratio to the markdown out.
//!
//! `cargo bench --bench sync_memory`. Sizes as `tasks x files x bytes`, comma separated:
//! SYNC_MEMORY_SIZES=10000x3x4096,100000x3x400 (the default). Re-syncs after the first:
//! SYNC_MEMORY_RESYNCS=5. The binary measured: SYNC_MEMORY_BIN (default: this build's
//! `orchestrator`), so that an older build can be measured the same way.
//! SYNC_MEMORY_REPOS=/tmp/repos keeps each generated repository there (`<tasks>x<files>x<bytes>`)
//! and reuses it on the next run (100,000 tasks take minutes to generate).
//! SYNC_MEMORY_HEAPTRACK=/tmp/run runs `orchestrator run` under heaptrack's preload library (raw
//! data to `/tmp/run.<size>`; its VmHWM then includes heaptrack's own; read it with
//! `heaptrack_interpret < /tmp/run.N | gzip > run.gz; heaptrack_print run.gz`).
//! Target: peak RSS ≤ 1.5 × markdown bytes + 64 MiB at every size. Also printed: the resident
//! set just after the first sync, split into anonymous memory (heap, stacks) and mapped files
//! (the binary, git pack files).

use git2::{Oid, Repository, Signature};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;

/// One size to measure.
#[derive(Clone, Copy, Debug)]
struct Size {
    tasks: usize,
    files: usize,
    file_bytes: usize,
}

impl Size {
    fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.trim().split('x').map(|p| p.trim().parse().ok());
        let size = Size {
            tasks: parts.next()??,
            files: parts.next()??,
            file_bytes: parts.next()??,
        };
        parts.next().is_none().then_some(size)
    }
}

/// A task repository written straight into the object database; returns the markdown bytes.
fn generate_repo(dir: &Path, size: Size) -> usize {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir, &opts).expect("git init");
    let task_yaml = repo
        .blob(b"serviceName: web\nagentName: claude-code\n")
        .expect("blob");
    let mut markdown = 0;
    let mut tasks = repo.treebuilder(None).expect("treebuilder");
    for id in 1..=size.tasks {
        let mut folder = repo.treebuilder(None).expect("treebuilder");
        folder
            .insert("task.yaml", task_yaml, 0o100644)
            .expect("insert");
        for file in 0..size.files {
            let mut text = format!("# Task {id}, file {file}\n\n");
            let mut line = 0;
            while text.len() < size.file_bytes {
                text.push_str(&format!(
                    "Line {line} of task {id}: do the thing carefully, with tests.\n"
                ));
                line += 1;
            }
            text.truncate(size.file_bytes);
            markdown += text.len();
            let blob = repo.blob(text.as_bytes()).expect("blob");
            let name = match file {
                0 => "prompt.md".to_string(),
                n => format!("context-{n}.md"),
            };
            folder.insert(&name, blob, 0o100644).expect("insert");
        }
        let folder: Oid = folder.write().expect("tree");
        tasks
            .insert(format!("{id}-task"), folder, 0o040000)
            .expect("insert");
    }
    let tasks = tasks.write().expect("tree");
    let mut root = repo.treebuilder(None).expect("treebuilder");
    root.insert("tasks", tasks, 0o040000).expect("insert");
    let root = repo.find_tree(root.write().expect("tree")).expect("tree");
    let sig = Signature::now("bench", "bench@example.com").expect("signature");
    repo.commit(Some("HEAD"), &sig, &sig, "all tasks", &root, &[])
        .expect("commit");
    // One pack, as a pushed repository is: the objects above are loose (400,004 files at
    // 100,000 tasks), and a clone of loose objects took minutes of the first sync.
    let packed = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["repack", "-a", "-d", "-q"])
        .status();
    if !matches!(packed, Ok(s) if s.success()) {
        eprintln!("warning: `git repack` failed ({packed:?}); the repository stays loose");
    }
    markdown
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Every stderr line, on a channel (read on a thread so that the pipe never fills).
    fn stderr_lines(&mut self) -> mpsc::Receiver<String> {
        let stderr = self.0.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }
}

/// A field of /proc/<pid>/status in bytes (`VmHWM`, `VmRSS`).
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The resident set now, split into heap and stacks (`RssAnon`) and mapped files (`RssFile`).
fn rss_split(pid: u32) -> String {
    let part = |field| proc_status_bytes(pid, field).map_or("?".to_string(), mib);
    format!("anonymous {}, files {}", part("RssAnon"), part("RssFile"))
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB)
}

/// Waits for a line of `lines` that satisfies `wanted`; panics after `timeout`, or if the
/// process ends, with `what`.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return line,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no {what} within {timeout:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the process ended before {what}"),
        }
    }
}

/// The value of `key=` in a tracing line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

fn bench_size(bin: &Path, size: Size, resyncs: usize) {
    println!(
        "\n== {} tasks × {} markdown files × {} bytes",
        size.tasks, size.files, size.file_bytes
    );
    let work = tempfile::tempdir().expect("temp dir");
    let name = format!("{}x{}x{}", size.tasks, size.files, size.file_bytes);
    let repo = match std::env::var_os("SYNC_MEMORY_REPOS") {
        Some(dir) => PathBuf::from(dir).join(&name),
        None => work.path().join("repo"),
    };
    let t = Instant::now();
    let kept = repo.with_extension("markdown-bytes");
    let markdown: u64 = match std::fs::read_to_string(&kept)
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(bytes) => bytes,
        None => {
            let _ = std::fs::remove_dir_all(&repo);
            let bytes = generate_repo(&repo, size) as u64;
            std::fs::write(&kept, bytes.to_string()).expect("write the markdown size");
            bytes
        }
    };
    println!(
        "repository ready:            {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let kubeconfig = work.path().join("kubeconfig");
    let mut apiserver = Process(
        Command::new(bin)
            .args(["apiserver", "--port", "0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orchestrator apiserver starts"),
    );
    let server_lines = apiserver.stderr_lines();
    wait_for_line(
        &server_lines,
        Duration::from_secs(60),
        "kubeconfig from orchestrator apiserver",
        |l| l.contains("kubeconfig written"),
    );
    std::thread::spawn(move || server_lines.iter().for_each(drop));

    let started = Instant::now();
    let mut command = Command::new(bin);
    if let Ok(raw) = std::env::var("SYNC_MEMORY_HEAPTRACK") {
        command
            .env("LD_PRELOAD", "/usr/lib/heaptrack/libheaptrack_preload.so")
            .env("DUMP_HEAPTRACK_OUTPUT", format!("{raw}.{name}"));
    }
    let mut run = Process(
        command
            .arg("run")
            .arg("--repo")
            .arg(&repo)
            .args(["--path", "tasks", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--no-controller", "--no-notes", "--interval", "1s"])
            .arg("--mirror-dir")
            .arg(work.path().join("mirrors"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orchestrator run starts"),
    );
    let lines = run.stderr_lines();
    let finished = |l: &str| l.contains("sync finished");
    let first = wait_for_line(&lines, Duration::from_secs(3600), "first sync", finished);
    let first_took = started.elapsed();
    let hwm_first = proc_status_bytes(run.pid(), "VmHWM").expect("VmHWM of run");
    let split_first = rss_split(run.pid());
    assert_eq!(
        field(&first, "created").and_then(|n| n.parse().ok()),
        Some(size.tasks),
        "the first sync creates every task: {first}"
    );
    for i in 1..=resyncs {
        let line = wait_for_line(&lines, Duration::from_secs(600), "a re-sync", finished);
        assert!(
            ["created", "updated", "pruned"]
                .iter()
                .all(|k| field(&line, k) == Some("0")),
            "re-sync {i} is a no-op: {line}"
        );
    }
    let hwm_after = proc_status_bytes(run.pid(), "VmHWM").expect("VmHWM of run");
    let rss_after = proc_status_bytes(run.pid(), "VmRSS").expect("VmRSS of run");
    let server_hwm = proc_status_bytes(apiserver.pid(), "VmHWM").unwrap_or(0);
    drop(run);
    drop(apiserver);

    let target = 1.5 * markdown as f64 + 64.0 * MIB;
    println!(
        "markdown:                    {} ({markdown} bytes)",
        mib(markdown)
    );
    println!(
        "first sync (process start to its end): {:.1} s",
        first_took.as_secs_f64()
    );
    for (what, hwm) in [
        ("peak RSS after first sync:  ", hwm_first),
        ("peak RSS after re-syncs:    ", hwm_after),
    ] {
        println!(
            "{what} {:>8}  {:.2}x markdown; target ≤ 1.5 × markdown + 64 MiB = {}: {:.2}x of target",
            mib(hwm),
            hwm as f64 / markdown as f64,
            mib(target as u64),
            hwm as f64 / target
        );
    }
    println!("RSS just after the first sync: {split_first}");
    println!(
        "RSS now (after {resyncs} re-syncs): {}; the API server process peaked at {}",
        mib(rss_after),
        mib(server_hwm)
    );
}

fn main() {
    let sizes: Vec<Size> = std::env::var("SYNC_MEMORY_SIZES")
        .unwrap_or_else(|_| "10000x3x4096,100000x3x400".into())
        .split(',')
        .map(|s| {
            Size::parse(s).unwrap_or_else(|| panic!("{s:?}: write sizes as TASKSxFILESxBYTES"))
        })
        .collect();
    let resyncs = std::env::var("SYNC_MEMORY_RESYNCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let bin = std::env::var_os("SYNC_MEMORY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_orchestrator")));
    println!("measuring {}", bin.display());
    for size in sizes {
        bench_size(&bin, size, resyncs);
    }
}
