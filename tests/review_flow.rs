//! The review flow as a team runs it, with the real binary and real git clones: a bare remote,
//! the loop following it, a CI-style clone on a pull-request branch and on a merge ref, `plan`
//! diffing against the loop's cluster, `validate` catching unknown agents, `run --until-done`
//! refusing false greens, branch safety, notes per environment and folder errors in the log.
//!
//! The cluster is the embedded one: `run --embedded --embedded-data-dir D` keeps its state in D,
//! and `orchestrator apiserver --data-dir D` serves that state afterwards for `plan` and checks.

mod git_cli;

use git_cli::{git, write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orchestrator");

const AGENTS: &str = r#"defaults:
  activeDeadlineSeconds: 30
  backoffLimit: 0
agents:
  claude-code:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "task $TASK_ID done"']
"#;

fn write_task(repo: &Path, id: u32, agent: &str, prompt: &str) {
    let folder = repo.join("tasks").join(format!("{id}-task"));
    write(
        &folder.join("task.yaml"),
        &format!("serviceName: web\nagentName: {agent}\n"),
    );
    write(&folder.join("prompt.md"), prompt);
}

fn commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

/// A working repository with tasks 1 and 2 on `main`, its bare remote `tasks.git` (the
/// repository everyone clones) and an agent profiles file outside both.
struct Upstream {
    dir: tempfile::TempDir,
}

impl Upstream {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        write_task(&work, 1, "claude-code", "first task");
        write_task(&work, 2, "claude-code", "second task");
        commit_all(&work, "two tasks");
        git(dir.path(), &["clone", "-q", "--bare", "work", "tasks.git"]);
        git(&work, &["remote", "add", "origin", "../tasks.git"]);
        git(&work, &["fetch", "-q", "origin"]);
        write(&dir.path().join("agents.yaml"), AGENTS);
        Upstream { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn bare_url(&self) -> String {
        format!("file://{}", self.path("tasks.git").display())
    }
    /// A fresh CI-style clone of the bare remote.
    fn ci_clone(&self, name: &str) -> PathBuf {
        git(self.dir.path(), &["clone", "-q", &self.bare_url(), name]);
        self.path(name)
    }
}

fn orchestrator(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("KUBECONFIG")
        .env_remove("ORCHESTRATOR_AGENTS")
        .output()
        .expect("orchestrator runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `orchestrator apiserver --data-dir D` in the background, serving what a `run` left there.
struct ApiServer {
    child: Child,
    kubeconfig: PathBuf,
}

impl ApiServer {
    fn start(data_dir: &Path) -> ApiServer {
        let kubeconfig = data_dir.with_extension(format!("kubeconfig-{}", rand::random::<u32>()));
        let child = Command::new(BIN)
            .args(["apiserver", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("apiserver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            assert!(Instant::now() < deadline, "no kubeconfig from apiserver");
            std::thread::sleep(Duration::from_millis(50));
        }
        ApiServer { child, kubeconfig }
    }

    fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().unwrap()
    }

    /// Ctrl-C, as a person stops it, so that its state is on disk for the next process.
    fn stop(mut self) {
        interrupt(&self.child);
        let _ = self.child.wait();
    }

    async fn client(&self) -> kube::Client {
        let config = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interrupt(child: &Child) {
    // SAFETY: a plain signal to a child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// `run --until-done` on the embedded cluster kept in `data`.
fn run_until_done(data: &Path, repo: &str, agents: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--embedded", "--embedded-data-dir"];
    args.push(data.to_str().unwrap());
    args.extend([
        "--repo",
        repo,
        "--path",
        "tasks",
        "--until-done",
        "--agents",
    ]);
    args.push(agents.to_str().unwrap());
    args.extend(extra);
    orchestrator(&args)
}

fn plan(repo: &Path, kubeconfig: &str, output: &str) -> Output {
    orchestrator(&[
        "plan",
        "--repo",
        repo.to_str().unwrap(),
        "--path",
        "tasks",
        "-o",
        output,
        "--kubeconfig",
        kubeconfig,
    ])
}

#[test]
fn a_ci_clone_on_a_pr_branch_or_merge_ref_plans_against_the_loops_task_runs() {
    let up = Upstream::new();
    let data = up.path("cluster");
    let out = run_until_done(&data, &up.bare_url(), &up.path("agents.yaml"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The pull request, in a fresh clone as a CI job has it: edit task 2, add task 3, and a
    // task whose agent is a typo.
    let ci = up.ci_clone("ci");
    git(&ci, &["checkout", "-q", "-b", "pr-change"]);
    write(&ci.join("tasks/2-task/prompt.md"), "second task, sharper");
    write_task(&ci, 3, "claude-code", "third task");
    write_task(&ci, 4, "claud", "fourth task");
    commit_all(&ci, "the pull request");
    git(&ci, &["push", "-q", "origin", "pr-change"]);

    let server = ApiServer::start(&data);
    let out = orchestrator(&[
        "validate",
        "--repo",
        ci.to_str().unwrap(),
        "--path",
        "tasks",
        "--agents",
        up.path("agents.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("tasks/4-task/task.yaml: agentName \"claud\" has no profile in")
            && text(&out).contains("did you mean \"claude-code\"?"),
        "{}",
        text(&out)
    );

    let comment = orchestrator(&[
        "plan",
        "--repo",
        ci.to_str().unwrap(),
        "--path",
        "tasks",
        "-o",
        "markdown",
        "--kubeconfig",
        server.kubeconfig(),
        "--agents",
        up.path("agents.yaml").to_str().unwrap(),
    ]);
    let markdown = String::from_utf8_lossy(&comment.stdout).to_string();
    println!("--- the PR comment (plan -o markdown in a fresh clone on pr-change)\n{markdown}---");
    assert!(!markdown.contains("conflict"), "{}", text(&comment));
    assert!(
        markdown.contains("**1 to create, 1 to update, 0 to prune, 1 unchanged"),
        "{}",
        text(&comment)
    );
    assert!(
        markdown.contains("did you mean \"claude-code\"?"),
        "the unknown agent is in the PR comment: {markdown}"
    );

    // The merge ref of the pull request, checked out detached in another fresh clone.
    git(&ci, &["checkout", "-q", "-b", "merge", "origin/main"]);
    git(&ci, &["merge", "-q", "--no-ff", "pr-change", "-m", "merge"]);
    git(&ci, &["push", "-q", "origin", "HEAD:refs/pull/1/merge"]);
    let merge = up.ci_clone("ci-merge");
    git(&merge, &["fetch", "-q", "origin", "refs/pull/1/merge"]);
    git(&merge, &["checkout", "-q", "--detach", "FETCH_HEAD"]);
    let out = plan(&merge, server.kubeconfig(), "table");
    let table = text(&out);
    assert!(!table.contains("conflict"), "{table}");
    assert!(table.contains("task-2   update  1 → 2"), "{table}");
    assert!(
        table.contains("2 to create, 1 to update, 0 to prune, 1 unchanged"),
        "{table}"
    );

    // A genuinely different repository with the same task id is still a conflict, and says
    // who owns the TaskRun and how to adopt it.
    let other = up.path("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "-q", "-b", "main"]);
    write_task(&other, 1, "claude-code", "someone else's task");
    commit_all(&other, "other");
    let out = plan(&other, server.kubeconfig(), "markdown");
    let markdown = text(&out);
    let bare = up.path("tasks.git").canonicalize().unwrap();
    let owner = bare.display().to_string();
    assert!(markdown.contains("⚠️ conflict"), "{markdown}");
    assert!(
        markdown.contains("owned by another source (")
            && markdown.contains(&format!("{} (path tasks)", owner.trim_end_matches(".git")))
            && markdown.contains("kubectl label taskrun task-1 orchestrator.io/source-"),
        "{markdown}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn marks_of_the_earlier_identity_are_migrated_without_a_prune_or_a_rerun() {
    use k8s_openapi::api::batch::v1::Job;
    use kube::Api;
    use orchestrator::crd::TaskRun;
    use orchestrator::desired::SourceIdentity;

    let up = Upstream::new();
    let work = up.path("work");
    let data = up.path("cluster");
    // The cluster as an earlier version left it: marks derived from the `--repo` string (the
    // working tree's canonical path), the tasks already run.
    let out = run_until_done(&data, work.to_str().unwrap(), &up.path("agents.yaml"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let server = ApiServer::start(&data);
    let client = server.client().await;
    let task_runs: Api<TaskRun> = Api::namespaced(client.clone(), "default");
    let old = SourceIdentity::new(&work.canonicalize().unwrap().display().to_string(), "tasks");
    for tr in task_runs.list(&Default::default()).await.unwrap().items {
        let name = tr.metadata.name.clone().unwrap();
        task_runs
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({
                    "metadata": {"labels": {"orchestrator.io/source": old.label_value()},
                                  "annotations": {"orchestrator.io/source-url": old.repo,
                                                  "orchestrator.io/source-name": null}}
                })),
            )
            .await
            .unwrap();
    }
    let before: Vec<(String, String)> = uids(&task_runs).await;
    assert_eq!(before.len(), 2);
    server.stop();

    // The new version, on the same working tree: its identity is the origin remote's.
    let out = run_until_done(&data, work.to_str().unwrap(), &up.path("agents.yaml"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let server = ApiServer::start(&data);
    let client = server.client().await;
    let task_runs: Api<TaskRun> = Api::namespaced(client.clone(), "default");
    assert_eq!(uids(&task_runs).await, before, "no prune, no re-create");
    let new = orchestrator::cli::source_identity::resolve_source_identity(
        work.to_str().unwrap(),
        "tasks",
        None,
    )
    .unwrap();
    assert_ne!(new.label_value(), old.label_value());
    for tr in task_runs.list(&Default::default()).await.unwrap().items {
        let labels = tr.metadata.labels.clone().unwrap();
        assert_eq!(labels["orchestrator.io/source"], new.label_value());
        assert_eq!(tr.spec.context_version, 1, "the same version: no re-run");
        assert_eq!(tr.status.unwrap().attempts, 1);
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut names: Vec<String> = jobs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["web-1-v1", "web-2-v1"], "one Job per task, ever");
    // And a plan from a CI clone now agrees with the migrated marks.
    let ci = up.ci_clone("ci");
    let out = plan(&ci, server.kubeconfig(), "table");
    assert!(
        text(&out).contains("0 to create, 0 to update, 0 to prune, 2 unchanged"),
        "{}",
        text(&out)
    );
    server.stop();
}

async fn uids(api: &kube::Api<orchestrator::crd::TaskRun>) -> Vec<(String, String)> {
    let mut uids: Vec<(String, String)> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|tr| (tr.metadata.name.unwrap(), tr.metadata.uid.unwrap()))
        .collect();
    uids.sort();
    uids
}

#[test]
fn until_done_never_exits_0_when_nothing_ran_and_never_retries_a_bad_repository() {
    let up = Upstream::new();
    let work = up.path("work");
    let work_s = work.to_str().unwrap();
    let agents = up.path("agents.yaml");
    let data = up.path("cluster");

    // No agent profiles: nothing would run the tasks.
    let out = orchestrator(&[
        "run",
        "--embedded",
        "--repo",
        work_s,
        "--path",
        "tasks",
        "--until-done",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("no agent profiles"), "{}", text(&out));

    // A controller elsewhere that never comes.
    let out = orchestrator(&[
        "run",
        "--embedded",
        "--repo",
        work_s,
        "--path",
        "tasks",
        "--until-done",
        "--no-controller",
        "--controller-wait",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("no controller picked up the TaskRuns within 2s"),
        "{}",
        text(&out)
    );

    // Repository-level errors: exit 2 at once, with validate's message.
    let started = Instant::now();
    for (what, extra, validate_args) in [
        (
            "a missing --path",
            vec!["--path", "nosuch"],
            vec!["--path", "nosuch"],
        ),
        (
            "--path naming a file",
            vec!["--path", "tasks/1-task/prompt.md"],
            vec!["--path", "tasks/1-task/prompt.md"],
        ),
        (
            "--path leaving the repository",
            vec!["--path", "../.."],
            vec!["--path", "../.."],
        ),
    ] {
        let mut args = vec![
            "run",
            "--embedded",
            "--repo",
            work_s,
            "--until-done",
            "--agents",
        ];
        args.push(agents.to_str().unwrap());
        args.extend(extra);
        let out = orchestrator(&args);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        let mut v = vec!["validate", "--repo", work_s];
        v.extend(validate_args);
        let validate = orchestrator(&v);
        let first_line = |o: &Output| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .find(|l| l.starts_with("Error: "))
                .unwrap_or_default()
                .to_string()
        };
        assert!(!first_line(&out).is_empty(), "{what}: {}", text(&out));
        assert_eq!(
            first_line(&out),
            first_line(&validate),
            "{what}: {}",
            text(&validate)
        );
    }
    let out = run_until_done(&data, work_s, &agents, &["--branch", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("\"nosuch\" does not exist"),
        "{}",
        text(&out)
    );
    let empty = up.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q", "-b", "main"]);
    let out = run_until_done(&data, empty.to_str().unwrap(), &agents, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run_until_done(&data, "https://127.0.0.1:1/nowhere.git", &agents, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot fetch"), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "each fails at once"
    );

    // A task whose agent has no profile can never run.
    write_task(&work, 3, "claud", "typo");
    commit_all(&work, "typo");
    let out = run_until_done(&up.path("cluster2"), work_s, &agents, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("agentName \"claud\" has no profile"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("did you mean \"claude-code\"?"),
        "{}",
        text(&out)
    );

    // Without --until-done the loop keeps retrying a bad --path, but never clones again.
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--embedded",
            "--no-controller",
            "--interval",
            "500ms",
            "--repo",
        ])
        .arg(up.bare_url())
        .args(["--path", "../.."])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(6));
    interrupt(&child);
    let _ = child.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("leaves the repository"), "{stderr}");
    assert!(!stderr.contains("cloning again"), "{stderr}");
}

#[test]
fn run_api_fails_at_start_when_its_port_is_taken_and_help_lists_every_exit_code() {
    let up = Upstream::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = orchestrator(&[
        "run",
        "--embedded",
        "--no-controller",
        "--api",
        "--api-addr",
        &addr,
        "--repo",
        up.path("work").to_str().unwrap(),
        "--path",
        "tasks",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("serving the API"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(30));

    let help = orchestrator(&["run", "--help"]);
    let help = text(&help);
    for code in [
        "0 stopped",
        "1 a start-up error",
        "2 (--until-done) not Synced",
        "3 lost",
        "4 (--until-done) nothing would run",
        "130 interrupted",
    ] {
        assert!(help.contains(code), "{code}: {help}");
    }
}

/// Waits until `commit` has a note on `notes_ref` in `repo`.
fn wait_for_note(repo: &Path, notes_ref: &str, commit: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let oid = git2::Oid::from_str(commit).unwrap();
    while Instant::now() < deadline {
        let repo = git2::Repository::open(repo).unwrap();
        if repo.find_note(Some(notes_ref), oid).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn spawn_loop(repo: &Path, agents: &Path, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "run",
            "--embedded",
            "--interval",
            "1s",
            "--path",
            "tasks",
            "--repo",
        ])
        .arg(repo)
        .arg("--agents")
        .arg(agents)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) -> String {
    interrupt(&child);
    let _ = child.wait();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    format!("{out}\n--- stderr\n{err}")
}

#[test]
fn the_loop_stays_on_the_branch_it_started_on_unless_told_to_follow_head() {
    let up = Upstream::new();
    let work = up.path("work");
    let agents = up.path("agents.yaml");
    let main = git(&work, &["rev-parse", "HEAD"]);
    let staying = spawn_loop(&work, &agents, &[]);
    let following = spawn_loop(
        &work,
        &agents,
        &["--branch", "HEAD", "--environment", "follow"],
    );
    assert!(wait_for_note(
        &work,
        "refs/notes/orchestrator",
        &main,
        Duration::from_secs(60)
    ));
    assert!(wait_for_note(
        &work,
        "refs/notes/orchestrator-follow",
        &main,
        Duration::from_secs(60)
    ));

    git(&work, &["checkout", "-q", "-b", "pr-change"]);
    std::fs::remove_dir_all(work.join("tasks/2-task")).unwrap();
    write_task(&work, 3, "claude-code", "unreviewed");
    let pr = commit_all(&work, "unreviewed change");
    // The loop told to follow HEAD syncs the branch (the control) …
    assert!(wait_for_note(
        &work,
        "refs/notes/orchestrator-follow",
        &pr,
        Duration::from_secs(60)
    ));
    // … the default one does not, not even after a few more syncs.
    assert!(!wait_for_note(
        &work,
        "refs/notes/orchestrator",
        &pr,
        Duration::from_secs(4)
    ));
    let out = stop(staying);
    stop(following);
    assert!(
        out.contains("(branch main, a later checkout does not move it"),
        "{out}"
    );
}

#[test]
fn two_loops_on_one_repository_each_note_their_environment() {
    let up = Upstream::new();
    let work = up.path("work");
    let agents = up.path("agents.yaml");
    let head = git(&work, &["rev-parse", "HEAD"]);
    let spawn = |env: &str| {
        Command::new(BIN)
            .args([
                "run",
                "--embedded",
                "--path",
                "tasks",
                "--until-done",
                "--repo",
            ])
            .arg(&work)
            .arg("--agents")
            .arg(&agents)
            .args(["--environment", env])
            .env("RUST_LOG", "warn")
            .output()
    };
    let (staging, production) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("staging").unwrap());
        let b = s.spawn(|| spawn("production").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(staging.status.code(), Some(0), "{}", text(&staging));
    assert_eq!(production.status.code(), Some(0), "{}", text(&production));
    for (env, revision) in [("staging", "HEAD"), ("production", head.as_str())] {
        let out = orchestrator(&[
            "status",
            "--repo",
            work.to_str().unwrap(),
            "--environment",
            env,
            revision,
        ]);
        assert_eq!(out.status.code(), Some(0), "{env}: {}", text(&out));
        assert!(text(&out).contains("Synced"), "{}", text(&out));
    }
    let out = orchestrator(&["status", "--repo", work.to_str().unwrap(), &head]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the default environment has no note: {}",
        text(&out)
    );
    let out = orchestrator(&[
        "wait",
        "--repo",
        work.to_str().unwrap(),
        "--environment",
        "staging",
        "--timeout",
        "5s",
        "HEAD",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_broken_folder_is_named_in_the_log_once_not_on_every_sync() {
    let up = Upstream::new();
    let work = up.path("work");
    write(&work.join("tasks/1-task/task.yaml"), "serviceName: web\n");
    write(&work.join("tasks/2-task/task.yaml"), "serviceName: [\n");
    commit_all(&work, "two broken folders");
    let child = Command::new(BIN)
        .args([
            "run",
            "--embedded",
            "--no-controller",
            "--interval",
            "300ms",
            "--path",
            "tasks",
            "--repo",
        ])
        .arg(&work)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let out = stop(child);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("task folder error"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("folder=tasks/1-task") && l.contains("file=task.yaml")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("folder=tasks/2-task")),
        "{out}"
    );
}

#[test]
fn a_source_name_owns_the_task_runs_wherever_the_repository_lives() {
    let up = Upstream::new();
    let data = up.path("cluster");
    let out = run_until_done(
        &data,
        &up.bare_url(),
        &up.path("agents.yaml"),
        &["--source-name", "tasks-prod"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A copy with no common URL: another repository to the mark, unless it has the same name.
    let copy = up.path("copy");
    std::fs::create_dir_all(&copy).unwrap();
    git(&copy, &["init", "-q", "-b", "main"]);
    write_task(&copy, 1, "claude-code", "first task");
    write_task(&copy, 2, "claude-code", "second task");
    commit_all(&copy, "copy");
    let server = ApiServer::start(&data);
    let plan_as = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "--repo",
            copy.to_str().unwrap(),
            "--path",
            "tasks",
            "--kubeconfig",
            server.kubeconfig(),
        ];
        args.extend(extra);
        text(&orchestrator(&args))
    };
    let named = plan_as(&["--source-name", "tasks-prod"]);
    assert!(
        named.contains("0 to create, 0 to update, 0 to prune, 2 unchanged"),
        "{named}"
    );
    let unnamed = plan_as(&[]);
    assert!(unnamed.contains("task-1   conflict"), "{unnamed}");
    assert!(unnamed.contains("tasks-prod (--source-name)"), "{unnamed}");
    server.stop();
}
