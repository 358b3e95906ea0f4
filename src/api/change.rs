//! What a write puts into the repository, pure: a checked change and the folders and files at
//! the branch tip in, the files to add and the commit message out (or why it cannot land).

use crate::crd::MarkdownFile;
use crate::source::folder::{EntryKind, RawEntry, TASK_YAML, parse_folder};
use crate::source::layout::parse_folder_name;

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
    /// The folder is already invalid in Git, so no content can be added through the API.
    #[error(
        "task {task_id}'s folder {folder} is invalid in the repository ({problem}); fix it in \
         Git before adding context"
    )]
    FolderBroken {
        task_id: i64,
        folder: String,
        problem: String,
    },
    /// The folder would become invalid with the new file (too large, not text).
    #[error("additionalContext: {problem}")]
    ContextInvalid { task_id: i64, problem: String },
}

/// The folder name of a new task: `<taskId>-<serviceName>`.
pub fn folder_name(task: &NewTask) -> String {
    format!("{}-{}", task.task_id, task.service_name)
}

/// The folder of task `task_id` among the folder names of the task root.
pub fn find_task_folder(folders: &[String], task_id: i64) -> Option<&str> {
    folders
        .iter()
        .map(String::as_str)
        .find(|f| parse_folder_name(f) == Some(task_id))
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
pub fn latest_context_version(entries: &[RawEntry]) -> u32 {
    entries
        .iter()
        .filter_map(|e| context_version_of(&e.name))
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
    let mut files = vec![(TASK_YAML.to_string(), task_yaml(task))];
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

/// A new `context-v<N>.md` in the task's folder, given the folder's entries at the tip. The
/// folder with the new file must still pass the source's rules ([`parse_folder`]).
pub fn plan_context(
    context: &NewContext,
    folder: &str,
    entries: &[RawEntry],
) -> Result<FolderWrite, ChangeRefused> {
    if let Err(errors) = parse_folder(entries.to_vec()) {
        return Err(ChangeRefused::FolderBroken {
            task_id: context.task_id,
            folder: folder.to_string(),
            problem: describe(&errors),
        });
    }
    let latest = latest_context_version(entries);
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
    let file = format!("context-v{version}.md");
    let mut after = entries.to_vec();
    after.push(file_entry(&file, &context.content));
    if let Err(errors) = parse_folder(after) {
        return Err(ChangeRefused::ContextInvalid {
            task_id: context.task_id,
            problem: describe(&errors),
        });
    }
    Ok(FolderWrite {
        folder: folder.to_string(),
        files: vec![(file, context.content.clone())],
        message: format!(
            "Add context v{version} to task {}\n\nSubmitted through the orchestrator API.\n",
            context.task_id
        ),
        context_version: Some(version),
    })
}

/// The folder a new task would be, as the source's parser sees it.
pub fn task_entries(task: &NewTask) -> Vec<RawEntry> {
    std::iter::once(file_entry(TASK_YAML, &task_yaml(task)))
        .chain(
            task.files
                .iter()
                .map(|f| file_entry(&f.filename, &f.content)),
        )
        .collect()
}

fn file_entry(name: &str, content: &str) -> RawEntry {
    RawEntry {
        name: name.to_string(),
        kind: EntryKind::File {
            size: content.len() as u64,
            content: Some(content.as_bytes().to_vec()),
        },
    }
}

fn describe(errors: &[crate::source::folder::ContentError]) -> String {
    errors
        .iter()
        .map(|e| match &e.file {
            Some(file) => format!("{file}: {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn task_yaml(task: &NewTask) -> String {
    format!(
        "serviceName: {}\nagentName: {}\n",
        yaml_string(&task.service_name),
        yaml_string(&task.agent_name)
    )
}

/// A DNS-1123 label as a YAML string: plain when YAML reads it back as that string, quoted when
/// it would read as something else (`0`, `1e3`, `true`, `null`). Labels hold only `[a-z0-9-]`,
/// so double quotes need no escapes.
fn yaml_string(label: &str) -> String {
    match serde_norway::from_str::<serde_norway::Value>(label) {
        Ok(serde_norway::Value::String(read)) if read == label => label.to_string(),
        _ => format!("\"{label}\""),
    }
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

    /// A valid folder with task.yaml, prompt.md and the named extra files.
    fn files(names: &[&str]) -> Vec<RawEntry> {
        let mut entries = task_entries(&task(7));
        entries.extend(
            names
                .iter()
                .filter(|n| !n.starts_with("task") && **n != "prompt.md")
                .map(|n| file_entry(n, "text\n")),
        );
        entries
    }

    #[test]
    fn task_folders_are_found_by_id_prefix() {
        let folders: Vec<String> = ["1-api", "042-x", "7", "x-9"].map(String::from).to_vec();
        assert_eq!(find_task_folder(&folders, 42), Some("042-x"));
        assert_eq!(find_task_folder(&folders, 1), Some("1-api"));
        assert_eq!(
            find_task_folder(&folders, 7),
            None,
            "no slug: not a task folder"
        );
        assert_eq!(find_task_folder(&folders, 9), None);
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
    fn names_yaml_would_read_as_numbers_or_booleans_are_quoted_and_parse_back() {
        // Found by schemathesis: serviceName "0" was written plain and read back as a number.
        for name in [
            "0", "123", "1e3", "true", "null", "web", "a-1", "0x1f", "inf",
        ] {
            let mut t = task(7);
            t.service_name = name.to_string();
            t.agent_name = name.to_string();
            let yaml = task_yaml(&t);
            let entries = task_entries(&t);
            assert!(parse_folder(entries).is_ok(), "{name}: {yaml}");
        }
        let mut t = task(7);
        t.service_name = "0".into();
        assert_eq!(task_yaml(&t), "serviceName: \"0\"\nagentName: claude\n");
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
    fn context_that_breaks_the_folder_is_refused() {
        let ctx = |content: &str| NewContext {
            task_id: 7,
            content: content.into(),
            version: None,
        };
        let big = "x".repeat(crate::source::folder::MAX_TASK_BYTES as usize);
        assert!(matches!(
            plan_context(&ctx(&big), "7-web", &files(&[])),
            Err(ChangeRefused::ContextInvalid { .. })
        ));
        assert!(matches!(
            plan_context(&ctx("nul\0"), "7-web", &files(&[])),
            Err(ChangeRefused::ContextInvalid { .. })
        ));
        let mut broken = files(&[]);
        broken.push(file_entry("notes.txt", "x"));
        let err = plan_context(&ctx("fine"), "7-web", &broken).unwrap_err();
        assert!(
            matches!(err, ChangeRefused::FolderBroken { .. })
                && err.to_string().contains("notes.txt"),
            "{err}"
        );
    }
}
