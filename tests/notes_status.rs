//! `orchestrator status` and `orchestrator wait` as a user runs them: the built binary against
//! real repositories (local and remote), one exit code per state.

mod notes_support;

use git2::{Oid, Repository};
use notes_support::*;
use orchestrator::crd::TaskPhase;
use orchestrator::health::SyncStatus;
use orchestrator::notes::push::{NotesRemote, push_local_notes};
use orchestrator::notes::store::write_notes;
use orchestrator::notes::{NOTES_REF, TaskState, render_note};
use orchestrator::source::snapshot::Revision;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn orchestrator(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(args)
        .env("TMPDIR", dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn states(phases: &[(i64, TaskPhase)]) -> BTreeMap<String, TaskState> {
    phases
        .iter()
        .map(|(id, phase)| {
            (
                format!("task-{id}"),
                TaskState {
                    phase: Some(*phase),
                    job_name: Some(format!("svc-{id}-v1")),
                    message: None,
                    context_version: Some(1),
                    reason: None,
                    result: phase
                        .is_terminal()
                        .then(|| format!("log line\nresult of task {id}: {}", "x".repeat(60))),
                    stalled: false,
                },
            )
        })
        .collect()
}

/// Writes the note of `commit` for a sync with `status` and tasks 1 and 2 in `phases`.
fn annotate(
    repo: &Repository,
    commit: Oid,
    status: SyncStatus,
    phases: &[(i64, TaskPhase)],
    superseded: Option<Oid>,
) {
    let mut r = report(commit, &[1, 2], "2026-11-26T10:00:00Z");
    r.status = status;
    let newer = superseded.map(|c| Revision {
        branch: "main".into(),
        commit: c.to_string(),
    });
    let note = render_note(&r, &states(phases), newer.as_ref());
    let sig = git2::Signature::now("orchestrator", "o@example.com").unwrap();
    write_notes(repo, NOTES_REF, &sig, &[(commit, note)]).unwrap();
}

#[test]
fn status_exit_code_per_state_from_a_local_and_a_remote_repository() {
    use TaskPhase::*;
    let dir = tempfile::tempdir().unwrap();
    let (remote, _first, clones) = remote_with_clones(dir.path(), 1);
    let mirror = &clones[0];
    type Case<'a> = (&'a str, SyncStatus, &'a [(i64, TaskPhase)], i32);
    let cases: &[Case] = &[
        (
            "healthy",
            SyncStatus::Synced,
            &[(1, Succeeded), (2, Succeeded)],
            0,
        ),
        (
            "progressing",
            SyncStatus::Synced,
            &[(1, Succeeded), (2, Running)],
            6,
        ),
        (
            "degraded",
            SyncStatus::Synced,
            &[(1, Failed), (2, Running)],
            7,
        ),
        ("missing", SyncStatus::Synced, &[(1, Succeeded)], 8),
        (
            "out of sync",
            SyncStatus::OutOfSync,
            &[(1, Succeeded), (2, Succeeded)],
            4,
        ),
        ("unknown", SyncStatus::Unknown, &[], 5),
    ];
    let mut commits = Vec::new();
    for (name, status, phases, _) in cases {
        let c = commit(&remote, &[(&format!("{name}.md"), *name)], name);
        annotate(mirror, c, *status, phases, None);
        commits.push(c);
    }
    let unannotated = commit(&remote, &[("later.md", "x")], "later");
    let url = format!("file://{}", dir.path().join("remote.git").display());
    push_local_notes(
        mirror,
        &NotesRemote {
            url: url.clone(),
            callbacks: None,
        },
        NOTES_REF,
    )
    .unwrap();
    let mirror_path = dir.path().join("clone-0.git");
    let remote_path = dir.path().join("remote.git");

    for ((name, _, _, want), c) in cases.iter().zip(&commits) {
        // The writer's own repository (a local path) and the remote by URL give the same answer.
        for repo in [mirror_path.to_str().unwrap(), url.as_str()] {
            let out = orchestrator(dir.path(), &["status", "--repo", repo, &c.to_string()]);
            assert_eq!(code(&out), *want, "{name} via {repo}: {}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(&format!("main@sha1:{c}")),
                "{}",
                text(&out)
            );
        }
    }

    // Default revision: the branch head, which has no note yet.
    let out = orchestrator(dir.path(), &["status", "--repo", &url]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        text(&out).contains(&unannotated.to_string()),
        "{}",
        text(&out)
    );
    let out = orchestrator(
        dir.path(),
        &[
            "status",
            "--repo",
            remote_path.to_str().unwrap(),
            "--branch",
            "main",
        ],
    );
    assert_eq!(code(&out), 3, "{}", text(&out));

    // JSON for scripts.
    let out = orchestrator(
        dir.path(),
        &[
            "status",
            "--repo",
            &url,
            &commits[1].to_string(),
            "-o",
            "json",
        ],
    );
    assert_eq!(code(&out), 6);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exitCode"], 6);
    assert_eq!(json["note"]["health"], "Progressing");
    assert_eq!(json["note"]["tasks"][1]["phase"], "Running");
    // The whole result in JSON; the note (git notes show) has it as `result:` under the task.
    let full = format!("log line\nresult of task 1: {}", "x".repeat(60));
    assert_eq!(json["note"]["tasks"][0]["result"], full.as_str());
    assert!(json["note"]["tasks"][1].get("result").is_none());
    let table = String::from_utf8_lossy(
        &orchestrator(
            dir.path(),
            &["status", "--repo", &url, &commits[1].to_string()],
        )
        .stdout,
    )
    .into_owned();
    assert!(table.contains("task-2   1        Running"), "{table}");
    // The RESULT column: the result's last line, shortened.
    assert!(table.contains("  RESULT  "), "{table}");
    assert!(
        table.contains("result of task 1: xxxxxxxxxxxxxxxxxxxxx…"),
        "{table}"
    );
    assert!(!table.contains(&"x".repeat(30)), "{table}");

    // Errors: a missing repository and an unknown revision, each named.
    let out = orchestrator(
        dir.path(),
        &[
            "status",
            "--repo",
            dir.path().join("nope").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("nope"), "{}", text(&out));
    let out = orchestrator(dir.path(), &["status", "--repo", &url, "no-such-branch"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("no-such-branch"), "{}", text(&out));
}

#[test]
fn wait_reaches_gives_up_or_times_out_with_the_right_exit_code() {
    use TaskPhase::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("work");
    let repo = Repository::init(&path).unwrap();
    let repo_arg = path.to_str().unwrap();
    let fast = ["--interval", "50ms"];
    let wait = |rev: Oid, extra: &[&str]| {
        let mut args = vec!["wait", "--repo", repo_arg, &fast[0], &fast[1]];
        let rev = rev.to_string();
        args.push(&rev);
        args.extend_from_slice(extra);
        orchestrator(dir.path(), &args)
    };

    // Progressing, then Healthy while we wait.
    let c1 = commit(&repo, &[("a.md", "a")], "a");
    annotate(
        &repo,
        c1,
        SyncStatus::Synced,
        &[(1, Running), (2, Pending)],
        None,
    );
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let repo = Repository::open(&path).unwrap();
            annotate(
                &repo,
                c1,
                SyncStatus::Synced,
                &[(1, Succeeded), (2, Succeeded)],
                None,
            );
        })
    };
    let start = Instant::now();
    let out = wait(c1, &["--timeout", "20s"]);
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert!(
        text(&out).contains("Synced, Progressing"),
        "progress is reported: {}",
        text(&out)
    );
    assert!(text(&out).contains("Health    Healthy"), "{}", text(&out));

    // Still Progressing at the deadline: the code of the last state, and it says so.
    let c2 = commit(&repo, &[("b.md", "b")], "b");
    annotate(
        &repo,
        c2,
        SyncStatus::Synced,
        &[(1, Running), (2, Running)],
        None,
    );
    let out = wait(c2, &["--timeout", "300ms"]);
    assert_eq!(code(&out), 6, "{}", text(&out));
    assert!(
        text(&out).contains("timed out after 300ms"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("last state: Synced, Progressing"),
        "{}",
        text(&out)
    );
    // ... but Synced is enough for --for synced.
    assert_eq!(code(&wait(c2, &["--timeout", "5s", "--for", "synced"])), 0);

    // A Failed task cannot become Healthy: give up at once.
    let c3 = commit(&repo, &[("c.md", "c")], "c");
    annotate(
        &repo,
        c3,
        SyncStatus::Synced,
        &[(1, Failed), (2, Running)],
        None,
    );
    let start = Instant::now();
    let out = wait(c3, &["--timeout", "30s"]);
    assert_eq!(code(&out), 7, "{}", text(&out));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(text(&out).contains("a task Failed"), "{}", text(&out));

    // Superseded before it got there.
    let c4 = commit(&repo, &[("d.md", "d")], "d");
    annotate(
        &repo,
        c4,
        SyncStatus::Synced,
        &[(1, Running), (2, Running)],
        Some(c3),
    );
    let out = wait(c4, &["--timeout", "30s"]);
    assert_eq!(code(&out), 9, "{}", text(&out));
    assert!(text(&out).contains("superseded"), "{}", text(&out));

    // Never synced: times out with "no note".
    let c5 = commit(&repo, &[("e.md", "e")], "e");
    let out = wait(c5, &["--timeout", "200ms"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        text(&out).contains("last state: no note yet"),
        "{}",
        text(&out)
    );

    // A bad --timeout is a usage error.
    let out = orchestrator(
        dir.path(),
        &["wait", "--repo", repo_arg, "--timeout", "soon"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
}

#[test]
fn wait_gives_up_at_once_on_a_commit_the_sync_skipped_for_a_newer_one() {
    use TaskPhase::*;
    let dir = tempfile::tempdir().unwrap();
    let (remote, _first, _) = remote_with_clones(dir.path(), 0);
    let remote_path = dir.path().join("remote.git");
    let url = format!("file://{}", remote_path.display());
    let wait = |repo: &str, rev: Oid, timeout: &str| {
        let rev = rev.to_string();
        let args = [
            "wait",
            "--repo",
            repo,
            "--interval",
            "50ms",
            "--timeout",
            timeout,
            &rev,
        ];
        let start = Instant::now();
        let out = orchestrator(dir.path(), &args);
        (out, start.elapsed())
    };

    // Two commits came faster than a sync: the sync took the second; the first has no note.
    let skipped = commit(&remote, &[("a.md", "a")], "skipped");
    let newer = commit(&remote, &[("b.md", "b")], "synced");
    // Not noted yet: nothing says the sync went past it, so it still waits.
    let (out, _) = wait(remote_path.to_str().unwrap(), skipped, "200ms");
    assert_eq!(code(&out), 3, "{}", text(&out));

    annotate(&remote, newer, SyncStatus::Synced, &[(1, Running)], None);
    for repo in [remote_path.to_str().unwrap(), url.as_str()] {
        let (out, took) = wait(repo, skipped, "15s");
        assert_eq!(code(&out), 9, "via {repo}: {}", text(&out));
        assert!(
            took < Duration::from_secs(5),
            "at once, not after 15 s: {took:?}"
        );
        assert!(text(&out).contains("skipped"), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("main@sha1:{newer}")),
            "names the commit to wait for instead: {}",
            text(&out)
        );
    }

    // A noted commit on another branch is not newer on this one: keep waiting.
    let later = commit(&remote, &[("c.md", "c")], "later");
    let sig = git2::Signature::now("dev", "dev@example.com").unwrap();
    let base = remote.find_commit(later).unwrap();
    let side = remote
        .commit(
            Some("refs/heads/side"),
            &sig,
            &sig,
            "side",
            &base.tree().unwrap(),
            &[&base],
        )
        .unwrap();
    annotate(&remote, side, SyncStatus::Synced, &[(1, Running)], None);
    let (out, _) = wait(remote_path.to_str().unwrap(), later, "200ms");
    assert_eq!(code(&out), 3, "{}", text(&out));
}
