//! `orchestrator plan`: a repository revision in, the TaskRuns it describes printed as a table,
//! YAML or JSON (a kubectl-readable `List`). Offline: without a cluster there are no live
//! TaskRuns to number versions against, so contextVersion is the placeholder 1 and the output
//! says so.
//!
//! Live: when a kubeconfig is configured (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`) and
//! the cluster answers, `plan` diffs the revision against the live TaskRuns instead: per
//! TaskRun create / update (old → new version, files changed) / prune, as a table, JSON, or
//! markdown for a pull-request comment. `--offline` never contacts a cluster.

use super::source_args::SourceArgs;
use crate::crd::TaskRun;
use crate::desired::task_run_for;
use crate::source::{SourceError, SourceSnapshot};

/// The contextVersion `plan` shows without a cluster.
pub const PLACEHOLDER_VERSION: i64 = 1;

pub const PLACEHOLDER_NOTE: &str = "contextVersion 1 is a placeholder: without a cluster there are no live TaskRuns to number versions against; `orchestrator run` assigns the real ones.";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Yaml,
    Json,
    /// Markdown for a pull-request comment (the live diff; offline, the table in a code block).
    Markdown,
}

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Exit codes: 0 the plan was printed and every task folder is valid; 1 a folder error (the plan is still printed; the broken tasks are left out) or the repository cannot be read; 2 bad arguments."
)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Namespace of the TaskRuns.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Kubeconfig of the cluster to diff against (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE", conflicts_with = "offline")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Never contact a cluster: print the TaskRuns the revision describes.
    #[arg(long)]
    pub offline: bool,
    /// The source's name, as given to `orchestrator run --source-name` (default: the repository's
    /// normalised origin URL and --path, the same in every clone).
    #[arg(long, env = "ORCHESTRATOR_SOURCE_NAME")]
    pub source_name: Option<String>,
    #[command(flatten)]
    pub agents: super::agent_check::AgentCheckArgs,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let mut snapshot = args.source.load()?;
    if let Some((profiles, origin)) = args
        .agents
        .load(args.source.repo.as_deref(), &args.source.path)?
    {
        super::agent_check::check_agent_names(&mut snapshot, &profiles.names(), &origin);
    }
    if !args.offline {
        match super::plan_live::live_diff(&args, &snapshot) {
            Ok(Some(diff)) => {
                super::output::print(&super::plan_live::render(&diff, args.output)?)?;
                if snapshot.errors.is_empty() {
                    return Ok(());
                }
                anyhow::bail!(
                    "{} task folder error(s): their TaskRuns are kept as they are (run `orchestrator validate` for the list)",
                    snapshot.errors.len()
                );
            }
            Ok(None) => {}
            Err(e) => eprintln!("note: no live diff ({e:#}); showing the offline plan"),
        }
    }
    super::output::print(&render(&snapshot, &args.namespace, args.output)?)?;
    if args.output != Output::Table {
        eprintln!("note: {PLACEHOLDER_NOTE}");
        for error in &snapshot.errors {
            eprintln!("error: {error}");
        }
    }
    if snapshot.errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} task folder error(s): those tasks are left out of the plan (run `orchestrator validate` for the list)",
            snapshot.errors.len()
        )
    }
}

/// The TaskRuns a snapshot describes, each at the placeholder version. Pure.
pub fn offline_task_runs(
    snapshot: &SourceSnapshot,
    namespace: &str,
) -> Result<Vec<TaskRun>, SourceError> {
    snapshot
        .tasks
        .iter()
        .map(|task| task_run_for(task, PLACEHOLDER_VERSION, &snapshot.revision, namespace))
        .collect()
}

/// The plan in the requested format. Pure. The table summarises the TaskRuns straight from
/// the snapshot (names from [`crate::names`]), so it never copies the markdown; YAML and JSON
/// are the full TaskRuns of [`offline_task_runs`].
pub fn render(
    snapshot: &SourceSnapshot,
    namespace: &str,
    output: Output,
) -> anyhow::Result<String> {
    let list = || -> anyhow::Result<serde_json::Value> {
        let items = offline_task_runs(snapshot, namespace)?;
        Ok(serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }))
    };
    Ok(match output {
        Output::Table => render_table(snapshot),
        Output::Markdown => format!("```\n{}```\n", render_table(snapshot)),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&list()?)?),
        Output::Yaml => format!(
            "# TaskRuns of {} ({})\n# {PLACEHOLDER_NOTE}\n{}",
            snapshot.revision,
            if snapshot.path.is_empty() {
                "repository root"
            } else {
                &snapshot.path
            },
            serde_norway::to_string(&list()?)?
        ),
    })
}

fn render_table(snapshot: &SourceSnapshot) -> String {
    let mut rows = vec![
        [
            "TASK", "TASKRUN", "SERVICE", "AGENT", "VERSION", "FILES", "DIGEST", "PATH",
        ]
        .map(String::from),
    ];
    for task in &snapshot.tasks {
        let content = &task.content;
        let digest = content.digest.0.get(..19).unwrap_or(&content.digest.0);
        rows.push([
            task.task_id.to_string(),
            crate::names::task_run_name(task.task_id),
            content.service_name.to_string(),
            content.agent_name.to_string(),
            format!("{PLACEHOLDER_VERSION}*"),
            content.markdown_files.len().to_string(),
            digest.to_string(),
            task.path.to_string(),
        ]);
    }
    let mut out = format!("Revision: {}\n", snapshot.revision);
    out.push_str(&format!(
        "Path:     {}\n\n",
        if snapshot.path.is_empty() {
            "(repository root)"
        } else {
            &snapshot.path
        }
    ));
    out.push_str(&crate::text_table::aligned(&rows));
    out.push_str(&format!(
        "\n{} TaskRun(s). * {PLACEHOLDER_NOTE}\n",
        snapshot.tasks.len()
    ));
    if !snapshot.errors.is_empty() {
        out.push_str(&format!(
            "\n{} task folder error(s); these tasks are left out (their TaskRuns would be kept as they are):\n",
            snapshot.errors.len()
        ));
        for error in &snapshot.errors {
            out.push_str(&format!("  {error}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FolderError, Revision, TaskFolder};
    use pretty_assertions::assert_eq;

    fn snapshot() -> SourceSnapshot {
        SourceSnapshot {
            revision: Revision {
                branch: "main".into(),
                commit: "b".repeat(40),
            },
            path: "tasks".into(),
            tasks: vec![TaskFolder {
                task_id: 7,
                path: "tasks/7-login".into(),
                content: crate::desired::tests::web_codex(&format!("sha256:{}", "c".repeat(64))),
            }],
            errors: vec![FolderError {
                folder: "tasks/x".into(),
                file: None,
                task_id: None,
                message: "bad name".into(),
            }],
            committed_at: None,
        }
    }

    #[test]
    fn table_lists_task_runs_notes_the_placeholder_and_the_errors() {
        let s = snapshot();
        let table = render(&s, "default", Output::Table).unwrap();
        assert_eq!(
            table,
            format!(
                "Revision: main@sha1:{b}\nPath:     tasks\n\n\
                 TASK  TASKRUN  SERVICE  AGENT  VERSION  FILES  DIGEST               PATH\n\
                 7     task-7   web      codex  1*       1      sha256:cccccccccccc  tasks/7-login\n\n\
                 1 TaskRun(s). * {PLACEHOLDER_NOTE}\n\n\
                 1 task folder error(s); these tasks are left out (their TaskRuns would be kept as they are):\n  tasks/x: bad name\n",
                b = "b".repeat(40)
            )
        );
    }

    #[test]
    fn yaml_and_json_are_kubectl_lists_of_task_runs() {
        let s = snapshot();
        let json: serde_json::Value =
            serde_json::from_str(&render(&s, "agents", Output::Json).unwrap()).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"][0]["kind"], "TaskRun");
        assert_eq!(json["items"][0]["apiVersion"], "orchestrator.io/v1");
        assert_eq!(json["items"][0]["metadata"]["namespace"], "agents");
        assert_eq!(json["items"][0]["spec"]["contextVersion"], 1);
        let yaml = render(&s, "agents", Output::Yaml).unwrap();
        assert!(yaml.contains(PLACEHOLDER_NOTE));
        let back: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, json);
    }
}
