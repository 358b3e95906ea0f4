//! What `run` checks before and while it trusts its own result: the branch to follow, the API's
//! port, the first fetch, and (with `--until-done`) whether anything will run the tasks at all.
//! Pure verdicts ([`until_done_verdict`]) with thin I/O around them, so that `run --until-done`
//! never exits 0 when nothing ran, and never waits forever on a mistake a person must fix.

use crate::crd::TaskRun;
use crate::desired::LiveTaskRuns;
use crate::source::{GitSource, SourceError};
use crate::sync::report::{ReportReceiver, SyncReport};
use crate::sync::run_loop::LoopState;
use crate::sync::until_done::{all_applied, all_terminal};
use anyhow::{Context, bail};
use kube::runtime::reflector;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The exit codes of `run`, as `--help` prints them (docs/review-and-ci.md has the table).
pub const EXIT_CODES_HELP: &str = "Exit codes: \
0 stopped by SIGINT/SIGTERM, or (--until-done) every task Succeeded; \
1 a start-up error (flags, cluster, --api address in use) or (--until-done) a task Failed; \
2 (--until-done) not Synced: a broken task folder or a conflict (the table lists them), or the \
repository could not be read on the first fetch (branch, --path, URL, credentials; the same \
message as `validate`); \
3 lost the leader lease (--leader-elect); \
4 (--until-done) nothing would run the tasks: no agent profiles, a task's agentName has no \
profile, or (--no-controller) no controller picked the TaskRuns up within --controller-wait; \
130 interrupted before --until-done finished.";

/// The branch the loop follows. Without `--branch`: the branch checked out in a local
/// repository when the loop starts (so a later `git checkout` does not move it), or the remote's
/// default branch (`HEAD`) of a URL. `--branch HEAD` follows whatever is checked out.
pub fn branch_to_follow(flag: Option<&str>, local_repo: Option<&Path>) -> anyhow::Result<String> {
    if let Some(branch) = flag {
        return Ok(branch.to_string());
    }
    let Some(dir) = local_repo else {
        return Ok("HEAD".into());
    };
    let Ok(repo) = git2::Repository::open(dir) else {
        // Not a repository: the first fetch says so, with the message `validate` gives.
        return Ok("HEAD".into());
    };
    if repo.head_detached().unwrap_or(false) {
        bail!(
            "{} has a detached HEAD (no branch checked out): pass --branch NAME to follow a branch, or --branch HEAD to follow whatever is checked out",
            dir.display()
        );
    }
    let head = repo.find_reference("HEAD").context("reading HEAD")?;
    Ok(head
        .symbolic_target()
        .ok()
        .flatten()
        .map(|t| t.trim_start_matches("refs/heads/").to_string())
        .unwrap_or_else(|| "HEAD".into()))
}

/// Binds the API's address before anything starts, so a port in use fails `run` at once.
pub async fn bind_api(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("--api: cannot listen on {addr}; is another process using it? (choose another with --addr)")
    })
}

/// The first fetch, before the loop starts. `Err` is a repository-level error: a branch or
/// `--path` that does not exist, a repository without commits, an unreachable remote.
pub async fn first_fetch(source: &mut GitSource) -> Result<(), SourceError> {
    source.fetch_snapshot().await.map(|_| ())
}

/// Who runs the TaskRuns `--until-done` waits for.
#[derive(Clone, Debug)]
pub enum Runner {
    /// The controller of this process, with the agent profiles it knows.
    InProcess { agents: Vec<String> },
    /// `--no-controller`: a controller elsewhere, which must pick a TaskRun up within `wait`.
    Elsewhere { wait: Duration },
}

/// What `--until-done` does after one look at the latest report and the TaskRuns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    Done,
    /// Tasks whose agentName has no profile, one message each.
    MissingProfiles(Vec<String>),
    /// No TaskRun got a status from a controller within the wait.
    NoController,
}

/// Pure: `waited` is how long every TaskRun of the report has been applied.
pub fn until_done_verdict(
    report: &SyncReport,
    live: &LiveTaskRuns,
    runner: &Runner,
    waited: Duration,
) -> Verdict {
    if !all_applied(report, live) {
        return Verdict::Wait;
    }
    match runner {
        Runner::InProcess { agents } => {
            let missing: Vec<String> = report
                .tasks
                .iter()
                .filter_map(|task| live.get(&*task.name))
                .filter(|tr| !agents.contains(&tr.spec.agent_name))
                .map(|tr: &TaskRun| {
                    format!(
                        "{}: {}",
                        tr.spec.source_path,
                        super::agent_check::unknown_agent_message(
                            &tr.spec.agent_name,
                            agents,
                            "the agent profiles"
                        )
                    )
                })
                .collect();
            if !missing.is_empty() {
                Verdict::MissingProfiles(missing)
            } else if all_terminal(report, live) {
                Verdict::Done
            } else {
                Verdict::Wait
            }
        }
        Runner::Elsewhere { wait } => {
            let picked_up = report
                .tasks
                .iter()
                .any(|t| live.get(&*t.name).is_some_and(|tr| tr.status.is_some()));
            if all_terminal(report, live) {
                Verdict::Done
            } else if !picked_up && waited >= *wait {
                Verdict::NoController
            } else {
                Verdict::Wait
            }
        }
    }
}

/// How `--until-done` ended.
pub enum Finished {
    Done(Box<(SyncReport, LiveTaskRuns)>),
    Stopped(Verdict),
    Interrupted,
}

/// Waits until the loop converged and the TaskRun cache shows every task of its report (and
/// every task terminal), or until the verdict says nothing will run them. The cache is the one
/// the notes writer reads, so its last note is the final state too.
pub async fn wait_until_done(
    store: &reflector::Store<TaskRun>,
    mut state: watch::Receiver<Option<LoopState>>,
    reports: ReportReceiver,
    runner: impl Fn() -> Runner,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Finished> {
    let mut applied_since: Option<(String, Instant)> = None;
    loop {
        tokio::select! {
            changed = state.wait_for(|s| s.as_ref().is_some_and(|s| s.converged)) => {
                if changed.is_err() {
                    bail!("the sync loop stopped before it converged");
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return Ok(Finished::Interrupted),
        }
        let Some(report) = reports.borrow().clone() else {
            continue;
        };
        let live = cached(store);
        let waited = if all_applied(&report, &live) {
            let revision = report.revision.to_string();
            match &applied_since {
                Some((r, since)) if *r == revision => since.elapsed(),
                _ => {
                    applied_since = Some((revision, Instant::now()));
                    Duration::ZERO
                }
            }
        } else {
            Duration::ZERO
        };
        match until_done_verdict(&report, &live, &runner(), waited) {
            Verdict::Wait => {}
            Verdict::Done => return Ok(Finished::Done(Box::new((report, live)))),
            stop => return Ok(Finished::Stopped(stop)),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Ok(Finished::Interrupted),
        }
    }
}

/// The TaskRuns of a reflector cache by name.
pub fn cached(store: &reflector::Store<TaskRun>) -> LiveTaskRuns {
    store
        .state()
        .into_iter()
        .filter_map(|tr| Some((tr.metadata.name.clone()?, (*tr).clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{TaskPhase, TaskRunStatus};
    use crate::desired::KnownTaskRuns;
    use crate::desired::tests::{folder, live_after, snapshot, task_runs_after};

    fn report_and_live() -> (SyncReport, LiveTaskRuns) {
        let snap = snapshot('1', vec![folder(1, "a")]);
        let known = live_after(&snap, &KnownTaskRuns::new());
        let live = task_runs_after(&snap, &KnownTaskRuns::new());
        let desired = crate::desired::desired_task_runs(
            &snap,
            &crate::desired::tests::source(),
            "default",
            &known,
        );
        let plan = crate::sync::plan::plan(crate::sync::plan::PlanInput {
            legacy_owner: None,
            desired: &desired,
            live: &known,
            folder_errors: &[],
            source_label: &crate::desired::tests::source().label_value(),
            prune: true,
            settled: None,
        });
        let report =
            SyncReport::from_plan(None, &snap.revision, &plan, &[], vec![], None, "t".into());
        (report, live)
    }

    #[test]
    fn verdicts() {
        let (report, live) = report_and_live();
        let mut done = live.clone();
        done.get_mut("task-1").unwrap().status = Some(TaskRunStatus {
            phase: Some(TaskPhase::Succeeded),
            context_version: Some(1),
            ..Default::default()
        });
        let mut running = live.clone();
        running.get_mut("task-1").unwrap().status = Some(TaskRunStatus {
            phase: Some(TaskPhase::Running),
            context_version: Some(1),
            ..Default::default()
        });
        let claude = Runner::InProcess {
            agents: vec!["claude".into()],
        };
        let codex = Runner::InProcess {
            agents: vec!["codex".into()],
        };
        let elsewhere = Runner::Elsewhere {
            wait: Duration::from_secs(30),
        };
        let secs = Duration::from_secs;
        for (what, live, runner, waited, want) in [
            (
                "not applied yet",
                &LiveTaskRuns::new(),
                &claude,
                secs(99),
                "Wait",
            ),
            ("running", &running, &claude, secs(99), "Wait"),
            ("all succeeded", &done, &claude, secs(0), "Done"),
            ("no profile", &live, &codex, secs(0), "MissingProfiles"),
            ("elsewhere, not yet", &live, &elsewhere, secs(5), "Wait"),
            (
                "elsewhere, nobody",
                &live,
                &elsewhere,
                secs(30),
                "NoController",
            ),
            (
                "elsewhere, picked up",
                &running,
                &elsewhere,
                secs(99),
                "Wait",
            ),
            ("elsewhere, done", &done, &elsewhere, secs(99), "Done"),
        ] {
            let got = until_done_verdict(&report, live, runner, waited);
            let name = match &got {
                Verdict::Wait => "Wait",
                Verdict::Done => "Done",
                Verdict::MissingProfiles(m) => {
                    assert!(
                        m[0].contains("did you mean") || m[0].contains("\"claude\""),
                        "{m:?}"
                    );
                    "MissingProfiles"
                }
                Verdict::NoController => "NoController",
            };
            assert_eq!(name, want, "{what}");
        }
    }

    #[test]
    fn without_a_flag_the_checked_out_branch_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("work");
        git2::Repository::init_opts(dir.path(), &opts).unwrap();
        assert_eq!(branch_to_follow(None, Some(dir.path())).unwrap(), "work");
        assert_eq!(
            branch_to_follow(Some("HEAD"), Some(dir.path())).unwrap(),
            "HEAD"
        );
        assert_eq!(branch_to_follow(None, None).unwrap(), "HEAD");
        // A detached HEAD follows nothing by default: the error names both fixes.
        let repo = git2::Repository::open(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@e").unwrap();
        let tree = repo
            .find_tree(repo.index().unwrap().write_tree().unwrap())
            .unwrap();
        let commit = repo
            .commit(Some("HEAD"), &sig, &sig, "m", &tree, &[])
            .unwrap();
        repo.set_head_detached(commit).unwrap();
        let error = branch_to_follow(None, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("detached HEAD") && error.contains("--branch HEAD"),
            "{error}"
        );
    }
}
