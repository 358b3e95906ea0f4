//! The tasks path's layout: entry names and kinds in, task folders (with their ids), ignored
//! entries and errors out; then every parsed folder in, one `SourceSnapshot` out. Pure.

use super::folder::{ContentError, is_hidden};
use super::snapshot::{FolderContent, FolderError, Revision, SourceSnapshot, TaskFolder};
use std::collections::HashMap;
use std::sync::Arc;

/// What an entry directly under the tasks path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopKind {
    Dir,
    File,
    Symlink,
    Submodule,
}

/// What becomes of one entry directly under the tasks path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopLevel {
    /// Files (README.md, agents.yaml), hidden entries, and links or submodules that do not look
    /// like task folders.
    Ignored,
    TaskFolder {
        task_id: i64,
    },
    Broken(FolderError),
}

/// `tasks/` → `tasks`, `/` or `.` → `` (the repository root).
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed == "." {
        String::new()
    } else {
        trimmed.to_string()
    }
}

/// A folder's path inside the repository.
pub fn folder_path(tasks_path: &str, name: &str) -> String {
    if tasks_path.is_empty() {
        name.to_string()
    } else {
        format!("{tasks_path}/{name}")
    }
}

/// `42-login-page` → 42. At most 18 digits, so every id fits an i64.
pub fn parse_folder_name(name: &str) -> Option<i64> {
    let (digits, slug) = name.split_once('-')?;
    if digits.is_empty()
        || digits.len() > 18
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || slug.is_empty()
    {
        return None;
    }
    digits.parse().ok()
}

pub fn classify_entry(tasks_path: &str, name: &str, kind: TopKind) -> TopLevel {
    if is_hidden(name) || kind == TopKind::File {
        return TopLevel::Ignored;
    }
    let task_id = parse_folder_name(name);
    let broken = |message: &str| {
        TopLevel::Broken(FolderError {
            folder: folder_path(tasks_path, name),
            file: None,
            task_id,
            message: message.to_string(),
        })
    };
    match (kind, task_id) {
        (TopKind::Dir, Some(task_id)) => TopLevel::TaskFolder { task_id },
        (TopKind::Dir, None) => broken(
            "folder name must be <taskId>-<slug> with a numeric task id, e.g. 42-login-page: rename it, or move it out of the tasks path",
        ),
        (TopKind::Symlink, Some(_)) => broken(
            "is a symbolic link; symlinks are never followed: replace it with the task folder itself",
        ),
        (TopKind::Submodule, Some(_)) => broken(
            "is a git submodule; a task folder must be a plain folder in this repository: replace it with the folder itself",
        ),
        _ => TopLevel::Ignored,
    }
}

/// One task folder candidate after parsing.
pub struct ParsedEntry<'a> {
    pub name: String,
    pub task_id: i64,
    /// The folder's content, or what is wrong with it.
    pub parsed: Result<&'a Arc<FolderContent>, &'a [ContentError]>,
}

/// Builds the snapshot: valid folders become tasks, folders sharing a task id all become
/// errors, and every error keeps its folder's task id so the sync never prunes its TaskRun.
pub fn assemble(
    revision: Revision,
    tasks_path: &str,
    folders: Vec<ParsedEntry<'_>>,
    mut errors: Vec<FolderError>,
) -> SourceSnapshot {
    // Every folder is assembled on every read, so ids are counted without a path each; the
    // paths of the folders that share an id are made only for them, in folder order.
    let mut uses: HashMap<i64, usize> = HashMap::with_capacity(folders.len());
    for folder in &folders {
        *uses.entry(folder.task_id).or_default() += 1;
    }
    let mut shared_ids: HashMap<i64, Vec<String>> = HashMap::new();
    for folder in folders.iter().filter(|f| uses[&f.task_id] > 1) {
        shared_ids
            .entry(folder.task_id)
            .or_default()
            .push(folder_path(tasks_path, &folder.name));
    }
    let mut tasks = Vec::with_capacity(folders.len());
    for folder in folders {
        let path = folder_path(tasks_path, &folder.name);
        let sharing = shared_ids.get(&folder.task_id);
        if let Some(sharing) = sharing {
            let others: Vec<&str> = sharing
                .iter()
                .filter(|p| **p != path)
                .map(String::as_str)
                .collect();
            errors.push(FolderError {
                folder: path.clone(),
                file: None,
                task_id: Some(folder.task_id),
                message: format!(
                    "task id {} is also used by {}: give each task folder its own id",
                    folder.task_id,
                    others.join(", ")
                ),
            });
        }
        match folder.parsed {
            Ok(content) if sharing.is_none() => tasks.push(TaskFolder {
                task_id: folder.task_id,
                path: path.into(),
                content: content.clone(),
            }),
            Ok(_) => {}
            Err(content_errors) => errors.extend(
                content_errors
                    .iter()
                    .map(|e| folder_error(&path, folder.task_id, e)),
            ),
        }
    }
    // Ids are unique here (shared ones became errors): no stable sort's buffer needed.
    tasks.sort_unstable_by_key(|t| t.task_id);
    errors.sort_by(|a, b| (&a.folder, &a.file).cmp(&(&b.folder, &b.file)));
    SourceSnapshot {
        revision,
        path: tasks_path.to_string(),
        tasks,
        errors,
        committed_at: None,
    }
}

fn folder_error(path: &str, task_id: i64, error: &ContentError) -> FolderError {
    FolderError {
        folder: path.to_string(),
        file: error.file.clone(),
        task_id: Some(task_id),
        message: error.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::folder::{EntryKind, ParsedFolder, RawEntry, parse_folder};
    use pretty_assertions::assert_eq;

    fn parsed(folder: &ParsedFolder) -> Result<&Arc<FolderContent>, &[ContentError]> {
        folder.as_ref().map_err(Vec::as_slice)
    }

    #[test]
    fn folder_names() {
        for (name, id) in [
            ("42-login-page", Some(42)),
            ("0-x", Some(0)),
            ("007-bond", Some(7)),
            ("42-", None),
            ("42", None),
            ("-login", None),
            ("login-page", None),
            ("4a-x", None),
            ("123456789012345678-x", Some(123_456_789_012_345_678)),
            ("1234567890123456789-x", None),
        ] {
            assert_eq!(parse_folder_name(name), id, "{name}");
        }
    }

    #[test]
    fn paths() {
        for (input, want) in [
            ("tasks", "tasks"),
            ("/tasks/", "tasks"),
            ("", ""),
            (".", ""),
            ("./a/b/", "a/b"),
            ("/", ""),
        ] {
            assert_eq!(normalize_path(input), want, "{input:?}");
        }
        assert_eq!(folder_path("", "1-a"), "1-a");
        assert_eq!(folder_path("tasks", "1-a"), "tasks/1-a");
    }

    #[test]
    fn top_level_entries() {
        let broken = |name: &str, task_id, message: &str| {
            TopLevel::Broken(FolderError {
                folder: format!("tasks/{name}"),
                file: None,
                task_id,
                message: message.into(),
            })
        };
        let cases = [
            ("README.md", TopKind::File, TopLevel::Ignored),
            ("agents.yaml", TopKind::File, TopLevel::Ignored),
            ("12-file-not-dir.md", TopKind::File, TopLevel::Ignored),
            (".github", TopKind::Dir, TopLevel::Ignored),
            ("docs-link", TopKind::Symlink, TopLevel::Ignored),
            (
                "42-login",
                TopKind::Dir,
                TopLevel::TaskFolder { task_id: 42 },
            ),
            (
                "drafts",
                TopKind::Dir,
                broken(
                    "drafts",
                    None,
                    "folder name must be <taskId>-<slug> with a numeric task id, e.g. 42-login-page: rename it, or move it out of the tasks path",
                ),
            ),
            (
                "7-linked",
                TopKind::Symlink,
                broken(
                    "7-linked",
                    Some(7),
                    "is a symbolic link; symlinks are never followed: replace it with the task folder itself",
                ),
            ),
            (
                "8-sub",
                TopKind::Submodule,
                broken(
                    "8-sub",
                    Some(8),
                    "is a git submodule; a task folder must be a plain folder in this repository: replace it with the folder itself",
                ),
            ),
        ];
        for (name, kind, want) in cases {
            assert_eq!(classify_entry("tasks", name, kind), want, "{name}");
        }
    }

    fn folder(service: &str) -> ParsedFolder {
        let file = |name: &str, content: &str| RawEntry {
            name: name.into(),
            kind: EntryKind::File {
                size: content.len() as u64,
                content: Some(content.as_bytes().to_vec()),
            },
        };
        parse_folder(vec![
            file(
                "task.yaml",
                &format!("serviceName: {service}\nagentName: codex\n"),
            ),
            file("p.md", "x"),
        ])
    }

    fn revision() -> Revision {
        Revision {
            branch: "main".into(),
            commit: "a".repeat(40),
        }
    }

    #[test]
    fn duplicates_report_every_folder_and_hide_no_other_task() {
        let (a, b, c, good) = (folder("a"), folder("b"), folder("c"), folder("web"));
        let broken = parse_folder(vec![]);
        let entries = vec![
            ParsedEntry {
                name: "5-c".into(),
                task_id: 5,
                parsed: parsed(&c),
            },
            ParsedEntry {
                name: "5-a".into(),
                task_id: 5,
                parsed: parsed(&a),
            },
            ParsedEntry {
                name: "1-good".into(),
                task_id: 1,
                parsed: parsed(&good),
            },
            ParsedEntry {
                name: "05-b".into(),
                task_id: 5,
                parsed: parsed(&b),
            },
            ParsedEntry {
                name: "9-empty".into(),
                task_id: 9,
                parsed: parsed(&broken),
            },
        ];
        let snapshot = assemble(revision(), "tasks", entries, vec![]);
        assert_eq!(
            snapshot.tasks.iter().map(|t| t.task_id).collect::<Vec<_>>(),
            vec![1]
        );
        let errors: Vec<String> = snapshot.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            vec![
                "tasks/05-b: task id 5 is also used by tasks/5-c, tasks/5-a: give each task folder its own id",
                "tasks/5-a: task id 5 is also used by tasks/5-c, tasks/05-b: give each task folder its own id",
                "tasks/5-c: task id 5 is also used by tasks/5-a, tasks/05-b: give each task folder its own id",
                "tasks/9-empty: folder is empty: add a task.yaml and at least one *.md file, or delete the folder",
            ]
        );
        assert!(
            snapshot.errors.iter().all(|e| e.task_id.is_some()),
            "broken tasks keep their ids"
        );
    }

    #[test]
    fn tasks_are_sorted_by_id_and_carry_their_path() {
        let (a, b) = (folder("a"), folder("b"));
        let snapshot = assemble(
            revision(),
            "",
            vec![
                ParsedEntry {
                    name: "10-b".into(),
                    task_id: 10,
                    parsed: parsed(&b),
                },
                ParsedEntry {
                    name: "2-a".into(),
                    task_id: 2,
                    parsed: parsed(&a),
                },
            ],
            vec![],
        );
        let got: Vec<_> = snapshot
            .tasks
            .iter()
            .map(|t| (t.task_id, &*t.path, &*t.content.service_name))
            .collect();
        assert_eq!(got, vec![(2, "2-a", "a"), (10, "10-b", "b")]);
        assert!(snapshot.errors.is_empty());
    }
}
