//! `orchestrator validate`: a repository revision or a plain folder in, every task-folder error
//! listed and a non-zero exit when there is one (a pull-request check).

use super::source_args::SourceArgs;
use crate::source::SourceSnapshot;

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Exit codes: 0 every task folder is valid; 1 a folder error (an unknown agentName included) or the repository cannot be read; 2 bad arguments."
)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub agents: super::agent_check::AgentCheckArgs,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<()> {
    let mut snapshot = args.source.load()?;
    if let Some((profiles, origin)) = args
        .agents
        .load(args.source.repo.as_deref(), &args.source.path)?
    {
        super::agent_check::check_agent_names(&mut snapshot, &profiles.names(), &origin);
    }
    super::output::print(&report(&snapshot))?;
    if snapshot.errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} task folder error(s)", snapshot.errors.len())
    }
}

/// The text `validate` prints. Pure.
pub fn report(snapshot: &SourceSnapshot) -> String {
    let mut out = String::new();
    let location = if snapshot.path.is_empty() {
        "the repository root".to_string()
    } else {
        snapshot.path.clone()
    };
    if snapshot.errors.is_empty() {
        out.push_str(&format!(
            "ok: {} task folder(s) in {location} at {} are valid\n",
            snapshot.tasks.len(),
            snapshot.revision
        ));
        return out;
    }
    out.push_str(&format!(
        "{} error(s) in {location} at {} ({} valid task folder(s)):\n",
        snapshot.errors.len(),
        snapshot.revision,
        snapshot.tasks.len()
    ));
    for error in &snapshot.errors {
        out.push_str(&format!("  {error}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FolderError, Revision};

    #[test]
    fn lists_every_error_or_says_ok() {
        let mut snapshot = SourceSnapshot {
            revision: Revision {
                branch: "main".into(),
                commit: "a".repeat(40),
            },
            path: "tasks".into(),
            tasks: vec![],
            errors: vec![],
            committed_at: None,
        };
        assert_eq!(
            report(&snapshot),
            format!(
                "ok: 0 task folder(s) in tasks at main@sha1:{} are valid\n",
                "a".repeat(40)
            )
        );
        snapshot.errors = vec![
            FolderError {
                folder: "tasks/1-a".into(),
                file: Some("task.yaml".into()),
                task_id: Some(1),
                message: "is missing".into(),
            },
            FolderError {
                folder: "tasks/x".into(),
                file: None,
                task_id: None,
                message: "bad name".into(),
            },
        ];
        assert_eq!(
            report(&snapshot),
            format!(
                "2 error(s) in tasks at main@sha1:{} (0 valid task folder(s)):\n  tasks/1-a/task.yaml: is missing\n  tasks/x: bad name\n",
                "a".repeat(40)
            )
        );
    }
}
