//! The notes writer against real git repositories: notes follow task phases, show in
//! `git log --notes=orchestrator`, merge with a concurrent writer's, survive an unreachable remote.

mod notes_support;

use git2::Repository;
use notes_support::*;
use orchestrator::crd::TaskPhase;
use orchestrator::health::{Health, SyncStatus};
use orchestrator::notes::push::{
    NotesRemote, PushReply, fetch_remote_notes, merge_remote_notes, push_local_notes,
    sync_notes_with_remote,
};
use orchestrator::notes::store::write_notes;
use orchestrator::notes::{
    NOTES_REF, NotesConfig, NotesMetrics, render_note, report_stream, spawn_notes_writer,
};
use orchestrator::sync::report::report_channel;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

fn fast(config: NotesConfig) -> NotesConfig {
    NotesConfig {
        min_interval: Duration::from_millis(100),
        poll_interval: Duration::from_millis(20),
        push_backoff_initial: Duration::from_millis(50),
        push_backoff_max: Duration::from_millis(200),
        ..config
    }
}

#[tokio::test]
async fn note_follows_task_phases_on_a_local_repository_and_git_log_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path().join("work")).unwrap();
    let c1 = commit(&repo, &[("tasks/1-a/prompt.md", "do a\n")], "task 1");
    let c2 = commit(&repo, &[("README.md", "docs only\n")], "docs");
    let states = States::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let metrics = NotesMetrics::default();
    let writer = spawn_notes_writer(
        fast(NotesConfig::new(dir.path().join("work"))),
        UnboundedReceiverStream::new(rx),
        states.reader(),
        metrics.clone(),
    );
    let path = dir.path().join("work");

    tx.send(report(c1, &[1, 2], "2026-11-26T10:00:00Z"))
        .unwrap();
    let note = wait_for_note(&path, c1, "Missing", |n| n.health == Health::Missing).await;
    assert_eq!(note.revision, format!("main@sha1:{c1}"));
    assert_eq!(note.sync, SyncStatus::Synced);
    assert_eq!(note.synced_at, "2026-11-26T10:00:00Z");
    assert_eq!(note.tasks.len(), 2);

    states.set(1, TaskPhase::Running);
    states.set(2, TaskPhase::Pending);
    writer.wake();
    let note = wait_for_note(&path, c1, "Progressing", |n| {
        n.health == Health::Progressing
    })
    .await;
    assert_eq!(note.tasks[0].phase, Some(TaskPhase::Running));
    assert_eq!(note.tasks[0].job_name.as_deref(), Some("svc-1-v1"));

    states.set(1, TaskPhase::Succeeded);
    states.set(2, TaskPhase::Succeeded);
    let note = wait_for_note(&path, c1, "Healthy", |n| n.health == Health::Healthy).await;
    assert!(
        note.tasks
            .iter()
            .all(|t| t.phase == Some(TaskPhase::Succeeded))
    );

    // Terminal: a later change of the TaskRuns does not touch this commit's note.
    let commits = notes_commits(&path);
    states.set(2, TaskPhase::Failed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(notes_commits(&path), commits);
    assert_eq!(note_at(&path, c1).unwrap().health, Health::Healthy);

    // A commit that changed no task still gets its note.
    let mut docs = report(c2, &[], "2026-11-26T10:05:00Z");
    docs.unchanged = 2;
    tx.send(docs).unwrap();
    let note = wait_for_note(&path, c2, "note of a docs-only commit", |_| true).await;
    assert_eq!(
        (note.sync, note.health, note.counts.unchanged),
        (SyncStatus::Synced, Health::Healthy, 2)
    );
    drop(tx);
    writer.join().await;
    assert!(metrics.written.get() >= 4, "{}", metrics.written.get());

    // Plain git reads it.
    let out = Command::new("git")
        .args(["log", "--notes=orchestrator", "--format=%H%n%N"])
        .current_dir(&path)
        .output();
    let Ok(out) = out else {
        println!("skipping the `git log` check: git is not installed");
        return;
    };
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains(&format!("{c1}\napiVersion: orchestrator.io/notes/v1")),
        "{log}"
    );
    assert!(log.contains("health: Healthy"), "{log}");
    assert!(
        log.contains("supersededBy"),
        "the older note should say it was superseded: {log}"
    );
    let show = Command::new("git")
        .args(["log", "--notes=orchestrator", "-1"])
        .arg(c1.to_string())
        .current_dir(&path)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("Notes (orchestrator):"), "{show}");
    assert!(
        show.contains(&format!("supersededBy: main@sha1:{c2}")),
        "{show}"
    );
}

#[tokio::test]
async fn bursts_of_status_changes_coalesce_into_few_notes_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("work");
    let repo = Repository::init(&path).unwrap();
    let c1 = commit(&repo, &[("tasks/1-a/prompt.md", "a\n")], "task");
    let states = States::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = spawn_notes_writer(
        NotesConfig {
            min_interval: Duration::from_millis(400),
            poll_interval: Duration::from_millis(10),
            ..NotesConfig::new(&path)
        },
        UnboundedReceiverStream::new(rx),
        states.reader(),
        NotesMetrics::default(),
    );
    tx.send(report(
        c1,
        &(1..=20).collect::<Vec<_>>(),
        "2026-11-26T10:00:00Z",
    ))
    .unwrap();
    let start = Instant::now();
    // 40 status changes in quick succession.
    for id in 1..=20 {
        states.set(id, TaskPhase::Running);
        tokio::time::sleep(Duration::from_millis(5)).await;
        states.set(id, TaskPhase::Succeeded);
        writer.wake();
    }
    wait_for_note(&path, c1, "Healthy", |n| n.health == Health::Healthy).await;
    let elapsed = start.elapsed();
    let commits = notes_commits(&path);
    let allowed = (elapsed.as_millis() / 400) as usize + 2;
    assert!(
        commits <= allowed,
        "{commits} notes commits in {elapsed:?} (at most {allowed})"
    );
    drop(tx);
    writer.join().await;
}

#[tokio::test]
async fn notes_reach_the_remote_and_a_concurrent_writers_notes_are_merged_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, first, clones) = remote_with_clones(dir.path(), 2);
    let remote_path = dir.path().join("remote.git");
    let second = commit(&remote, &[("tasks/1-a/prompt.md", "a\n")], "task 1");
    let (ours, theirs) = (&clones[0], &clones[1]);
    let url = remote_path.to_str().unwrap().to_string();
    let notes_remote = NotesRemote {
        url: url.clone(),
        callbacks: None,
    };
    let sig = git2::Signature::now("other", "other@example.com").unwrap();

    // Another writer annotated `first` and pushed before us.
    let other_note = render_note(
        &report(first, &[], "2026-11-26T09:00:00Z"),
        &BTreeMap::new(),
        None,
    );
    write_notes(theirs, NOTES_REF, &sig, &[(first, other_note.clone())]).unwrap();
    assert_eq!(
        push_local_notes(theirs, &notes_remote, NOTES_REF).unwrap(),
        PushReply::Accepted
    );

    // Our mirror holds an unpushed note from before a restart: the histories have diverged.
    let before_restart = render_note(
        &report(second, &[1], "2026-11-26T09:30:00Z"),
        &BTreeMap::new(),
        None,
    );
    write_notes(ours, NOTES_REF, &sig, &[(second, before_restart)]).unwrap();

    // Our writer works on its own bare clone and pushes the notes ref only.
    let states = States::default();
    states.set(1, TaskPhase::Succeeded);
    let (tx, rx) = mpsc::unbounded_channel();
    let metrics = NotesMetrics::default();
    let writer = spawn_notes_writer(
        NotesConfig {
            remote: Some(notes_remote.clone()),
            ..fast(NotesConfig::new(dir.path().join("clone-0.git")))
        },
        UnboundedReceiverStream::new(rx),
        states.reader(),
        metrics.clone(),
    );
    tx.send(report(second, &[1], "2026-11-26T10:00:00Z"))
        .unwrap();
    let note = wait_for_note(&remote_path, second, "our note on the remote", |n| {
        n.health == Health::Healthy
    })
    .await;
    assert_eq!(note.revision, format!("main@sha1:{second}"));
    assert_eq!(
        note_at(&remote_path, first).unwrap().synced_at,
        "2026-11-26T09:00:00Z",
        "the other writer's note was lost"
    );
    drop(tx);
    writer.join().await;
    assert!(metrics.pushes.get() >= 1);
    assert!(
        metrics.push_conflicts.get() >= 1,
        "merging the other writer's notes is a conflict"
    );
    // Only the notes ref was pushed: the remote's branch is where the remote left it.
    assert_eq!(remote.refname_to_id("refs/heads/main").unwrap(), second);
    let remote_refs: Vec<String> = remote
        .references()
        .unwrap()
        .map(|r| r.unwrap().name().unwrap().to_string())
        .collect();
    assert_eq!(remote_refs.len(), 2, "{remote_refs:?}");
    assert!(ours.find_reference("refs/heads/main").is_ok());
}

#[test]
fn a_push_that_loses_the_race_is_rejected_then_fetched_merged_and_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let (_remote, first, clones) = remote_with_clones(dir.path(), 2);
    let remote_path = dir.path().join("remote.git");
    let (ours, theirs) = (&clones[0], &clones[1]);
    let notes_remote = NotesRemote {
        url: remote_path.to_str().unwrap().to_string(),
        callbacks: None,
    };
    let sig = git2::Signature::now("orchestrator", "o@example.com").unwrap();
    let lock = Mutex::new(());
    let extra = commit(
        &Repository::open(&remote_path).unwrap(),
        &[("x", "x\n")],
        "x",
    );

    // Both sides start from the same remote notes.
    let base = render_note(
        &report(extra, &[], "2026-11-26T08:00:00Z"),
        &BTreeMap::new(),
        None,
    );
    write_notes(ours, NOTES_REF, &sig, &[(extra, base)]).unwrap();
    assert!(
        sync_notes_with_remote(ours, &notes_remote, NOTES_REF, &sig, &lock, 3)
            .unwrap()
            .pushed
    );

    // We fetch; meanwhile the other writer pushes a newer note on the same commit.
    let fetched = fetch_remote_notes(ours, &notes_remote, NOTES_REF).unwrap();
    merge_remote_notes(ours, NOTES_REF, &sig, fetched, &lock).unwrap();
    let theirs_fetched = fetch_remote_notes(theirs, &notes_remote, NOTES_REF).unwrap();
    merge_remote_notes(theirs, NOTES_REF, &sig, theirs_fetched, &lock).unwrap();
    let newer = render_note(
        &report(first, &[], "2026-11-26T09:30:00Z"),
        &BTreeMap::new(),
        None,
    );
    write_notes(theirs, NOTES_REF, &sig, &[(first, newer.clone())]).unwrap();
    assert_eq!(
        push_local_notes(theirs, &notes_remote, NOTES_REF).unwrap(),
        PushReply::Accepted
    );

    // Our older note on the same commit, plus a note on another commit.
    let older = render_note(
        &report(first, &[], "2026-11-26T09:00:00Z"),
        &BTreeMap::new(),
        None,
    );
    write_notes(ours, NOTES_REF, &sig, &[(first, older)]).unwrap();
    let reply = push_local_notes(ours, &notes_remote, NOTES_REF).unwrap();
    assert!(
        matches!(reply, PushReply::Rejected(_)),
        "a non-fast-forward push must be refused: {reply:?}"
    );

    let round = sync_notes_with_remote(ours, &notes_remote, NOTES_REF, &sig, &lock, 3).unwrap();
    assert!(round.pushed);
    assert_eq!(round.conflicts, 1);
    let on_remote = note_at(&remote_path, first).unwrap();
    assert_eq!(
        on_remote.synced_at, "2026-11-26T09:30:00Z",
        "the later syncedAt wins"
    );
    assert_eq!(
        note_at(&remote_path, extra).unwrap().synced_at,
        "2026-11-26T08:00:00Z"
    );
}

#[tokio::test]
async fn an_unreachable_remote_is_retried_in_the_background_without_blocking_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (_remote, first, _clones) = remote_with_clones(dir.path(), 1);
    let missing = dir.path().join("not-there-yet.git");
    let states = States::default();
    // The sync's own channel.
    let (tx, rx) = report_channel();
    let metrics = NotesMetrics::default();
    let mirror = dir.path().join("clone-0.git");
    let writer = spawn_notes_writer(
        NotesConfig {
            remote: Some(NotesRemote {
                url: missing.to_str().unwrap().to_string(),
                callbacks: None,
            }),
            ..fast(NotesConfig::new(&mirror))
        },
        report_stream(rx),
        states.reader(),
        metrics.clone(),
    );
    // The sync keeps going: sending reports never waits for the remote.
    let start = Instant::now();
    for minute in 0..3 {
        let synced_at = format!("2026-11-26T10:0{minute}:00Z");
        tx.send_replace(Some(report(first, &[], &synced_at)));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    // The note is in the local mirror although the remote cannot be reached.
    wait_for_note(&mirror, first, "local note", |_| true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.push_failures.get() < 3 {
        assert!(
            Instant::now() < deadline,
            "push was not retried: {} failures",
            metrics.push_failures.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.pushes.get(), 0);

    // The remote comes back: the retry delivers the note.
    Repository::init_bare(&missing).unwrap();
    let note = wait_for_note(
        &missing,
        first,
        "note pushed after the remote came back",
        |_| true,
    )
    .await;
    assert_eq!(
        note.synced_at, "2026-11-26T10:00:00Z",
        "a repeated report keeps the first syncedAt"
    );
    drop(tx);
    writer.join().await;
    // Counted once the push round returns (after the remote already has the ref).
    assert!(metrics.pushes.get() >= 1);
}

#[tokio::test]
async fn shutdown_writes_the_final_state_without_waiting_out_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("work");
    let repo = Repository::init(&path).unwrap();
    let c1 = commit(&repo, &[("tasks/1-a/prompt.md", "a\n")], "task");
    let states = States::default();
    states.set(1, TaskPhase::Running);
    let (tx, rx) = report_channel();
    let writer = spawn_notes_writer(
        NotesConfig {
            min_interval: Duration::from_secs(60),
            poll_interval: Duration::from_millis(10),
            ..NotesConfig::new(&path)
        },
        report_stream(rx),
        states.reader(),
        NotesMetrics::default(),
    );
    tx.send_replace(Some(report(c1, &[1], "2026-11-26T10:00:00Z")));
    wait_for_note(&path, c1, "Progressing", |n| {
        n.health == Health::Progressing
    })
    .await;
    states.set(1, TaskPhase::Succeeded);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Held back by the 60 s interval...
    assert_eq!(note_at(&path, c1).unwrap().health, Health::Progressing);
    // ... until shutdown, which writes it at once. The sender is still alive: the stop does it.
    let start = Instant::now();
    writer.shutdown(Duration::from_secs(10)).await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(note_at(&path, c1).unwrap().health, Health::Healthy);
    drop(tx);
}

#[test]
fn notes_added_with_the_git_cli_are_read_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("work");
    let repo = Repository::init(&path).unwrap();
    let c1 = commit(&repo, &[("a.md", "a")], "a");
    let c2 = commit(&repo, &[("b.md", "b")], "b");
    let added = Command::new("git")
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args([
            "notes",
            "--ref=orchestrator",
            "add",
            "-m",
            "written by hand",
        ])
        .arg(c1.to_string())
        .current_dir(&path)
        .output();
    let Ok(added) = added else {
        println!("skipping: git is not installed");
        return;
    };
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let sig = git2::Signature::now("orchestrator", "o@example.com").unwrap();
    let note = render_note(
        &report(c2, &[], "2026-11-26T10:00:00Z"),
        &BTreeMap::new(),
        None,
    );
    let written = write_notes(&repo, NOTES_REF, &sig, &[(c2, note.clone())]).unwrap();
    assert_eq!(written.changed, 1);
    // Writing the same text again changes nothing.
    let again = write_notes(&repo, NOTES_REF, &sig, &[(c2, note)]).unwrap();
    assert_eq!((again.commit, again.changed), (None, 0));
    let show = |commit: git2::Oid| {
        let out = Command::new("git")
            .args(["notes", "--ref=orchestrator", "show"])
            .arg(commit.to_string())
            .current_dir(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(show(c1), "written by hand\n");
    assert!(
        show(c2).starts_with("apiVersion: orchestrator.io/notes/v1\n"),
        "{}",
        show(c2)
    );
}
