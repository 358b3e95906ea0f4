//! Agent names in review: a snapshot and the agent profiles `run` would use in; every task whose
//! `agentName` names no profile turned into a folder error with a "did you mean" suggestion out,
//! so `validate` and `plan` (and the PR comment) catch `agentName: claud` before it runs.

use crate::controller::AgentProfiles;
use crate::source::mirror::local_repo_path;
use crate::source::{FolderError, SourceSnapshot};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct AgentCheckArgs {
    /// Agent profiles to check each task's agentName against (default: as `run`,
    /// `<repo>/<path>/agents.yaml` of a local repository, then ./agents.yaml; without one,
    /// agent names are not checked).
    #[arg(long, value_name = "FILE", env = "ORCHESTRATOR_AGENTS")]
    pub agents: Option<PathBuf>,
}

/// The agent profiles file `run` reads when `--agents` is not given: `<repo>/<path>/agents.yaml`
/// of a local repository's working tree, then `./agents.yaml`.
pub fn default_agents_file(local_repo: Option<&Path>, path: &str) -> Option<PathBuf> {
    local_repo
        .map(|repo| repo.join(path.trim_matches('/')).join("agents.yaml"))
        .into_iter()
        .chain(std::iter::once(PathBuf::from("agents.yaml")))
        .find(|candidate| candidate.is_file())
}

impl AgentCheckArgs {
    /// The profiles to check against and where they came from; `None` when there are none.
    pub fn load(
        &self,
        repo: Option<&str>,
        path: &str,
    ) -> anyhow::Result<Option<(AgentProfiles, String)>> {
        let file = match &self.agents {
            Some(file) => Some(file.clone()),
            None => {
                let local = repo
                    .filter(|r| !r.contains("://"))
                    .and_then(local_repo_path)
                    .or_else(|| repo.is_none().then(|| PathBuf::from(".")));
                default_agents_file(local.as_deref(), path)
            }
        };
        let Some(file) = file else {
            return Ok(None);
        };
        let profiles = AgentProfiles::load(&file)?;
        Ok(Some((profiles, file.display().to_string())))
    }
}

/// Moves every task whose agent has no profile from `snapshot.tasks` to `snapshot.errors`. Pure.
pub fn check_agent_names(snapshot: &mut SourceSnapshot, known: &[String], origin: &str) {
    let (ok, unknown): (Vec<_>, Vec<_>) = std::mem::take(&mut snapshot.tasks)
        .into_iter()
        .partition(|task| known.iter().any(|k| **k == *task.content.agent_name));
    snapshot.tasks = ok;
    if unknown.is_empty() {
        return;
    }
    for task in unknown {
        snapshot.errors.push(FolderError {
            folder: task.path.to_string(),
            file: Some("task.yaml".into()),
            task_id: Some(task.task_id),
            message: unknown_agent_message(&task.content.agent_name, known, origin),
        });
    }
    snapshot.errors.sort_by(|a, b| a.folder.cmp(&b.folder));
}

/// `agentName "claud" has no profile in agents.yaml; did you mean "claude-code"? (known: …)`.
pub fn unknown_agent_message(name: &str, known: &[String], origin: &str) -> String {
    let suggestion = did_you_mean(name, known)
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default();
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    format!("agentName {name:?} has no profile in {origin}{suggestion} (known agents: {known})")
}

/// The known name closest to `name` by edit distance (case-insensitive), when it is close
/// enough to be a typo, or when one starts with the other. Pure.
pub fn did_you_mean<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .iter()
        .map(|k| {
            let k_lower = k.to_lowercase();
            let distance = if k_lower.starts_with(&lower) || lower.starts_with(&k_lower) {
                0
            } else {
                edit_distance(&lower, &k_lower)
            };
            (distance, k)
        })
        .filter(|(distance, k)| *distance <= (k.chars().count() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["claude-code".into(), "codex".into(), "reviewer".into()]
    }

    #[test]
    fn suggestions_for_typos_and_none_for_strangers() {
        for (name, want) in [
            ("claud", Some("claude-code")),
            ("claude", Some("claude-code")),
            ("Claude-Code", Some("claude-code")),
            ("codx", Some("codex")),
            ("reveiwer", Some("reviewer")),
            ("gemini", None),
            ("x", None),
        ] {
            assert_eq!(did_you_mean(name, &known()), want, "{name}");
        }
    }

    #[test]
    fn unknown_agents_become_folder_errors_and_known_ones_stay_tasks() {
        let mut a = crate::desired::tests::folder(1, "a");
        std::sync::Arc::make_mut(&mut a.content).agent_name = "claude-code".into();
        let mut b = crate::desired::tests::folder(2, "b");
        std::sync::Arc::make_mut(&mut b.content).agent_name = "claud".into();
        let mut snapshot = crate::desired::tests::snapshot('1', vec![a, b]);
        check_agent_names(&mut snapshot, &known(), "agents.yaml");
        assert_eq!(snapshot.tasks.len(), 1);
        assert_eq!(
            snapshot.errors[0].to_string(),
            "tasks/2-t/task.yaml: agentName \"claud\" has no profile in agents.yaml; did you mean \
             \"claude-code\"? (known agents: claude-code, codex, reviewer)"
        );
        assert_eq!(snapshot.errors[0].task_id, Some(2));
    }
}
