//! What a write puts into the repository, pure: a checked change and the folders and files at
//! the branch tip in, the files to add and the commit message out (or why it cannot land).

use super::validate::MAX_TASK_MARKDOWN_BYTES;
use crate::crd::MarkdownFile;

/// A new task folder, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub task_id: i64,
    pub service_name: String,
    pub agent_name: String,
    /// Sorted by file name.
    pub files: Vec<MarkdownFile>,
}

/// Context for an existing task, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewContext {
    pub task_id: i64,
    pub content: String,
    /// N of `context-v<N>.md`, or `None` for the next number.
    pub version: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Task(NewTask),
    Context(NewContext),
}

impl Change {
    pub fn task_id(&self) -> i64 {
        match self {
            Change::Task(t) => t.task_id,
            Change::Context(c) => c.task_id,
        }
    }
}

/// One file of a task folder at the branch tip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingFile {
    pub name: String,
    pub size: usize,
}

/// The files one commit adds to one folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderWrite {
    /// The folder's name under the task root (`42-web`).
    pub folder: String,
    /// (file name, content), in the order they are listed in the answer.
    pub files: Vec<(String, String)>,
    pub message: String,
    pub context_version: Option<u32>,
}

/// Why a change cannot land on the current tip; each is the client's to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    #[error("Task already exists: task {task_id} has the folder {folder:?}")]
    TaskExists { task_id: i64, folder: String },
    #[error("task {task_id} has no folder under {root:?}; submit it first with POST /api/v1/tasks")]
    TaskNotFound { task_id: i64, root: String },
    #[error(
        "context-v{version}.md cannot be added to task {task_id}: its latest context version is \
         {latest}; send a larger version or leave it out"
    )]
    ContextVersionTaken {
        task_id: i64,
        version: u32,
        latest: u32,
    },
    #[error(
        "additionalContext: task {task_id}'s markdown would grow to {total} bytes, over the limit \
         of {MAX_TASK_MARKDOWN_BYTES}; start a new task instead"
    )]
    TaskTooLarge { task_id: i64, total: usize },
}

/// The file that holds task metadata in every task folder.
pub const TASK_FILE: &str = "task.yaml";

/// The folder name of a new task: `<taskId>-<serviceName>`.
pub fn folder_name(task: &NewTask) -> String {
    format!("{}-{}", task.task_id, task.service_name)
}

/// The task id a folder name stands for: its numeric prefix, followed by '-' or nothing.
pub fn task_id_of_folder(name: &str) -> Option<i64> {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !(name.len() == digits || name.as_bytes()[digits] == b'-') {
        return None;
    }
    name[..digits].parse().ok()
}

/// The folder of task `task_id` among the folder names of the task root.
pub fn find_task_folder(folders: &[String], task_id: i64) -> Option<&str> {
    folders
        .iter()
        .map(String::as_str)
        .find(|f| task_id_of_folder(f) == Some(task_id))
}

/// N of a `context-v<N>.md` file name.
pub fn context_version_of(file: &str) -> Option<u32> {
    file.strip_prefix("context-v")?
        .strip_suffix(".md")?
        .parse()
        .ok()
}

/// The latest context version of a folder: the largest `context-v<N>.md`, and 1 for the task as
/// submitted, so the first added context is `context-v2.md`, matching the TaskRun's version 2.
pub fn latest_context_version(files: &[ExistingFile]) -> u32 {
    files
        .iter()
        .filter_map(|f| context_version_of(&f.name))
        .fold(1, u32::max)
}

/// A new task folder; refused when the task root already has a folder for the id.
pub fn plan_task(task: &NewTask, folders: &[String]) -> Result<FolderWrite, ChangeRefused> {
    if let Some(existing) = find_task_folder(folders, task.task_id) {
        return Err(ChangeRefused::TaskExists {
            task_id: task.task_id,
            folder: existing.to_string(),
        });
    }
    let mut files = vec![(TASK_FILE.to_string(), task_yaml(task))];
    files.extend(
        task.files
            .iter()
            .map(|f| (f.filename.clone(), f.content.clone())),
    );
    Ok(FolderWrite {
        folder: folder_name(task),
        files,
        message: format!(
            "Add task {} ({}, agent {})\n\nSubmitted through the orchestrator API.\n",
            task.task_id, task.service_name, task.agent_name
        ),
        context_version: None,
    })
}

/// A new `context-v<N>.md` in the task's folder, given the folder's files at the tip.
pub fn plan_context(
    context: &NewContext,
    folder: &str,
    files: &[ExistingFile],
) -> Result<FolderWrite, ChangeRefused> {
    let latest = latest_context_version(files);
    let version = match context.version {
        None => latest + 1,
        Some(v) if v > latest => v,
        Some(v) => {
            return Err(ChangeRefused::ContextVersionTaken {
                task_id: context.task_id,
                version: v,
                latest,
            });
        }
    };
    let total = files
        .iter()
        .filter(|f| f.name.ends_with(".md"))
        .map(|f| f.size)
        .sum::<usize>()
        + context.content.len();
    if total > MAX_TASK_MARKDOWN_BYTES {
        return Err(ChangeRefused::TaskTooLarge {
            task_id: context.task_id,
            total,
        });
    }
    Ok(FolderWrite {
        folder: folder.to_string(),
        files: vec![(format!("context-v{version}.md"), context.content.clone())],
        message: format!(
            "Add context v{version} to task {}\n\nSubmitted through the orchestrator API.\n",
            context.task_id
        ),
        context_version: Some(version),
    })
}

fn task_yaml(task: &NewTask) -> String {
    // Both values are DNS-1123 labels (validated), so they need no YAML quoting.
    format!(
        "serviceName: {}\nagentName: {}\n",
        task.service_name, task.agent_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: i64) -> NewTask {
        NewTask {
            task_id: id,
            service_name: "web".into(),
            agent_name: "claude".into(),
            files: vec![MarkdownFile {
                filename: "prompt.md".into(),
                content: "do it".into(),
            }],
        }
    }

    fn files(names: &[&str]) -> Vec<ExistingFile> {
        names
            .iter()
            .map(|n| ExistingFile {
                name: n.to_string(),
                size: 10,
            })
            .collect()
    }

    #[test]
    fn folder_ids() {
        for (name, id) in [
            ("42-login", Some(42)),
            ("42", Some(42)),
            ("042-x", Some(42)),
            ("42x", None),
            ("x-42", None),
            ("-1", None),
        ] {
            assert_eq!(task_id_of_folder(name), id, "{name}");
        }
    }

    #[test]
    fn a_new_task_writes_task_yaml_and_markdown() {
        let write = plan_task(&task(7), &["1-api".into()]).unwrap();
        assert_eq!(write.folder, "7-web");
        assert_eq!(
            write.files,
            vec![
                (
                    "task.yaml".into(),
                    "serviceName: web\nagentName: claude\n".into()
                ),
                ("prompt.md".into(), "do it".into()),
            ]
        );
        assert!(write.message.starts_with("Add task 7 (web, agent claude)"));
    }

    #[test]
    fn an_existing_id_is_refused_whatever_the_slug() {
        let err = plan_task(&task(7), &["7-other".into()]).unwrap_err();
        assert_eq!(
            err,
            ChangeRefused::TaskExists {
                task_id: 7,
                folder: "7-other".into()
            }
        );
        assert!(err.to_string().starts_with("Task already exists"));
    }

    #[test]
    fn context_versions_count_up_from_two() {
        let ctx = |version| NewContext {
            task_id: 7,
            content: "more".into(),
            version,
        };
        // (files in the folder, requested version, Ok(version written) or Err(version refused))
        type Case<'a> = (&'a [&'a str], Option<u32>, Result<u32, u32>);
        let cases: &[Case] = &[
            (&["task.yaml", "prompt.md"], None, Ok(2)),
            (
                &["prompt.md", "context-v2.md", "context-v10.md"],
                None,
                Ok(11),
            ),
            (&["prompt.md", "context-v3.md"], Some(5), Ok(5)),
            (&["prompt.md", "context-v3.md"], Some(3), Err(3)),
            (&["prompt.md"], Some(1), Err(1)),
            (&["context-vx.md", "prompt.md"], None, Ok(2)),
        ];
        for (names, version, want) in cases {
            let got = plan_context(&ctx(*version), "7-web", &files(names));
            match (got, want) {
                (Ok(w), Ok(v)) => {
                    assert_eq!(w.context_version, Some(*v));
                    assert_eq!(w.files[0].0, format!("context-v{v}.md"));
                }
                (Err(ChangeRefused::ContextVersionTaken { version, .. }), Err(v)) => {
                    assert_eq!(version, *v)
                }
                (got, want) => panic!("{names:?} {version:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn context_that_overflows_the_task_is_refused() {
        let big = vec![ExistingFile {
            name: "prompt.md".into(),
            size: MAX_TASK_MARKDOWN_BYTES,
        }];
        let ctx = NewContext {
            task_id: 7,
            content: "x".into(),
            version: None,
        };
        assert!(matches!(
            plan_context(&ctx, "7-web", &big),
            Err(ChangeRefused::TaskTooLarge { .. })
        ));
    }
}
