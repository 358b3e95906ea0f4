//! `orchestrator init [DIR]`: a directory in; a task repository a new user can run at once out
//! (agents.yaml with local shell agents, one example task folder, a README of the folder
//! rules, and a first commit when DIR is not yet a repository), plus the next commands to type.
//! It never overwrites a file.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// The directory to create the task repository in (created when missing; default: the
    /// current directory). Nothing in it is overwritten.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// The agent profiles `init` writes: local shell agents for the embedded cluster's Job runner.
pub const AGENTS_YAML: &str = r#"# Agent profiles: a task's task.yaml names one of these as its agentName.
# These agents are short shell commands, run as local processes by the embedded cluster's Job
# runner (`orchestrator run --embedded`); on a real cluster an agent is a container image (see
# docs/agent-image.md in the orchestrator repository).
defaults:
  activeDeadlineSeconds: 60   # a run is stopped after a minute (Failed, DeadlineExceeded)
  backoffLimit: 0             # no retries
  mountPath: /workspace/task  # the task's markdown files are in $TASK_DIR (= this path)
agents:
  shell:
    image: local/shell        # ignored by the local runner
    command: ["sh", "-c"]
    args:
      - |
        echo "shell agent: task $TASK_ID ($TASK_SERVICE_NAME), context version $TASK_CONTEXT_VERSION"
        # TASK.md, when orchestrator generates it, is the whole task in prompt order.
        task=$(if [ -f "$TASK_DIR/TASK.md" ]; then cat "$TASK_DIR/TASK.md"; else cat "$TASK_DIR"/*.md; fi)
        printf '%s\n' "$task"
        words=$(printf '%s' "$task" | wc -w)
        result="read task $TASK_ID: $words words"
        echo "$result"
        # The result is the container's termination message (see docs/agent-image.md).
        if [ -n "$TERMINATION_MESSAGE_PATH" ]; then echo "$result" > "$TERMINATION_MESSAGE_PATH"; fi
"#;

pub const EXAMPLE_TASK_YAML: &str = "serviceName: hello\nagentName: shell\n";

pub const EXAMPLE_PROMPT_MD: &str = "# Say hello

This is an example task. The agent `shell` (in agents.yaml) prints this file and counts its
words. Edit this file and commit: the next run gives the agent the new content.
";

pub const README_MD: &str = "# Tasks

Every folder here is one task for an AI agent; orchestrator turns each into a TaskRun and runs
it as a Kubernetes Job.

- A task folder is named `<taskId>-<slug>` (`1-hello`, `42-login-page`): the number is the task
  id, unique in this repository.
- It holds `task.yaml` with exactly two keys, `serviceName` and `agentName` (lowercase letters,
  digits and `-`), and at least one `*.md` file. Every markdown file is given to the agent.
- Nothing else may be in a task folder: no other files, no subfolders, no symlinks.
- `agentName` names a profile in `agents.yaml`. Files directly in this folder (this README,
  `agents.yaml`) are not tasks.
- A commit is what runs: change a task's markdown and commit, and it runs again at a new context
  version. Delete the folder and commit, and its TaskRun is removed.

Check the folders with `orchestrator validate --path .` and run them with
`orchestrator run --embedded --repo . --until-done`.
";

/// The example task's folder.
pub const EXAMPLE_TASK_DIR: &str = "1-hello";

/// The files `init` writes, relative to DIR, in the order they are written.
pub fn scaffold() -> Vec<(PathBuf, &'static str)> {
    vec![
        (PathBuf::from("agents.yaml"), AGENTS_YAML),
        (PathBuf::from("README.md"), README_MD),
        (
            Path::new(EXAMPLE_TASK_DIR).join("task.yaml"),
            EXAMPLE_TASK_YAML,
        ),
        (
            Path::new(EXAMPLE_TASK_DIR).join("prompt.md"),
            EXAMPLE_PROMPT_MD,
        ),
    ]
}

/// Where DIR sits relative to a git repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoPlace {
    /// No repository contains DIR: `init` creates one and commits.
    None,
    /// DIR is inside the work tree at `root`, at `path` ("" for the root itself): `init` writes
    /// files and leaves the commit to the user.
    Inside { root: PathBuf, path: String },
}

/// The commands `init` prints after it wrote the files. Pure. `shown` is DIR as the user typed
/// it, so that the commands work from the same directory.
pub fn next_commands(shown: &str, place: &RepoPlace) -> Vec<String> {
    let quoted = shell_word(shown);
    match place {
        RepoPlace::None => vec![
            format!("orchestrator run --embedded --repo {quoted} --until-done"),
            format!("orchestrator status --repo {quoted}"),
        ],
        RepoPlace::Inside { path, .. } => {
            let path_flag = if path.is_empty() {
                String::new()
            } else {
                format!(" --path {}", shell_word(path))
            };
            vec![
                format!("git -C {quoted} add . && git -C {quoted} commit -m \"Add task folders\""),
                format!(
                    "orchestrator run --embedded --repo {}{path_flag} --until-done",
                    shell_word(&up_to_root(shown, path))
                ),
            ]
        }
    }
}

/// DIR `x/tasks` at `tasks` in its repository → `x/tasks/..`: the repository's root as seen
/// from where the user typed DIR.
fn up_to_root(shown: &str, path: &str) -> String {
    let depth = path.split('/').filter(|s| !s.is_empty()).count();
    if depth == 0 {
        shown.to_string()
    } else {
        format!("{shown}/{}", vec![".."; depth].join("/"))
    }
}

/// A word a POSIX shell reads back unchanged.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The files of the scaffold that already exist under `dir`: `init` refuses to run when this is
/// not empty.
pub fn existing_files(dir: &Path) -> Vec<PathBuf> {
    scaffold()
        .into_iter()
        .map(|(rel, _)| dir.join(rel))
        .filter(|path| path.symlink_metadata().is_ok())
        .collect()
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{} is a file, not a directory; give a new or existing directory",
            dir.display()
        );
    }
    let existing = existing_files(dir);
    if let Some(first) = existing.first() {
        let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{} already exists; init never overwrites a file ({}): choose a new directory, or \
             move the file away",
            first.display(),
            names.join(", ")
        );
    }
    std::fs::create_dir_all(dir.join(EXAMPLE_TASK_DIR))
        .with_context(|| format!("creating {}", dir.join(EXAMPLE_TASK_DIR).display()))?;
    let place = repo_place(dir)?;
    for (rel, content) in scaffold() {
        let path = dir.join(&rel);
        write_new(&path, content)?;
        println!("created {}", path.display());
    }
    if place == RepoPlace::None {
        let commit = first_commit(dir)?;
        println!(
            "committed them as the first commit {} on branch main of a new repository in {}",
            &commit[..12.min(commit.len())],
            dir.display()
        );
    } else {
        println!(
            "{} is inside an existing git repository: commit the files yourself",
            dir.display()
        );
    }
    println!("\nNext:");
    for command in next_commands(&dir.display().to_string(), &place) {
        println!("  {command}");
    }
    Ok(())
}

/// Creates `path` with `content`, failing if it appeared meanwhile.
fn write_new(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (init never overwrites a file)", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn repo_place(dir: &Path) -> anyhow::Result<RepoPlace> {
    let Ok(repo) = git2::Repository::discover(dir) else {
        return Ok(RepoPlace::None);
    };
    let Some(workdir) = repo.workdir() else {
        bail!(
            "{} is inside the bare git repository {}; give a directory outside it",
            dir.display(),
            repo.path().display()
        );
    };
    let root = workdir
        .canonicalize()
        .with_context(|| format!("resolving {}", workdir.display()))?;
    let here = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let path = here
        .strip_prefix(&root)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    Ok(RepoPlace::Inside { root, path })
}

/// `git init -b main` in `dir` and one commit of the scaffold's files; returns the commit id.
fn first_commit(dir: &Path) -> anyhow::Result<String> {
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head("main");
    let repo = git2::Repository::init_opts(dir, &options)
        .with_context(|| format!("creating a git repository in {}", dir.display()))?;
    let mut index = repo.index().context("opening the new repository's index")?;
    for (rel, _) in scaffold() {
        index
            .add_path(&rel)
            .with_context(|| format!("adding {} to the index", rel.display()))?;
    }
    index.write().context("writing the index")?;
    let tree_id = index.write_tree().context("writing the tree")?;
    let tree = repo.find_tree(tree_id).context("reading the tree back")?;
    // The user's git identity when there is one, so the commit is theirs.
    let signature = repo
        .signature()
        .or_else(|_| git2::Signature::now("orchestrator init", "init@orchestrator.invalid"))
        .context("making a commit signature")?;
    let commit = repo
        .commit(
            Some("HEAD"),
            &signature,
            &signature,
            "Task repository created by orchestrator init",
            &tree,
            &[],
        )
        .context("committing the task repository")?;
    Ok(commit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_commands_for_a_new_repository_and_for_a_folder_inside_one() {
        let cases: &[(&str, RepoPlace, &[&str])] = &[
            (
                "my-tasks",
                RepoPlace::None,
                &[
                    "orchestrator run --embedded --repo my-tasks --until-done",
                    "orchestrator status --repo my-tasks",
                ],
            ),
            (
                "my tasks",
                RepoPlace::None,
                &[
                    "orchestrator run --embedded --repo 'my tasks' --until-done",
                    "orchestrator status --repo 'my tasks'",
                ],
            ),
            (
                "repo/tasks",
                RepoPlace::Inside {
                    root: PathBuf::from("/x/repo"),
                    path: "tasks".into(),
                },
                &[
                    "git -C repo/tasks add . && git -C repo/tasks commit -m \"Add task folders\"",
                    "orchestrator run --embedded --repo repo/tasks/.. --path tasks --until-done",
                ],
            ),
            (
                ".",
                RepoPlace::Inside {
                    root: PathBuf::from("/x/repo"),
                    path: String::new(),
                },
                &[
                    "git -C . add . && git -C . commit -m \"Add task folders\"",
                    "orchestrator run --embedded --repo . --until-done",
                ],
            ),
        ];
        for (shown, place, want) in cases {
            assert_eq!(next_commands(shown, place), *want, "{shown} {place:?}");
        }
    }

    #[test]
    fn the_scaffold_is_a_valid_task_repository() {
        let profiles = crate::controller::AgentProfiles::parse(AGENTS_YAML, "agents.yaml")
            .expect("init's agents.yaml parses");
        assert_eq!(profiles.names(), vec!["shell".to_string()]);
        assert!(EXAMPLE_TASK_YAML.contains("agentName: shell"));
        let files: Vec<PathBuf> = scaffold().into_iter().map(|(p, _)| p).collect();
        assert!(files.contains(&Path::new(EXAMPLE_TASK_DIR).join("task.yaml")));
    }
}
