//! One task folder's entries (names, kinds, bytes) in, its validated content or every problem
//! with it out. Pure: readers for git trees and plain directories feed it.
//!
//! The result does not depend on the folder's name, so it can be cached by git tree id.

use super::digest::content_digest;
use super::markdown::TaskFile;
use super::snapshot::FolderContent;
use crate::names::{MAX_LABEL_LEN, is_dns1123_label};
use crate::prompt::TASK_FILE;
use std::sync::Arc;

/// The one non-markdown file a task folder holds.
pub const TASK_YAML: &str = "task.yaml";
/// Upper bound of a task's markdown (file names plus contents): the ConfigMap holds every file
/// and the generated `TASK.md` (the same content again), so twice this stays under Kubernetes'
/// 1 MiB object limit with room for headings and metadata.
pub const MAX_TASK_BYTES: u64 = 450 * 1024;
/// task.yaml holds two short keys; anything this large is a mistake.
pub const MAX_TASK_YAML_BYTES: u64 = 64 * 1024;
/// Kubernetes' limit on a ConfigMap key.
const MAX_KEY_LEN: usize = 253;

/// What a folder entry is, as git or the filesystem reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file. `content` is `None` when the reader skipped it (see [`wants_content`]).
    File {
        size: u64,
        content: Option<Vec<u8>>,
    },
    Dir,
    Symlink,
    /// A git submodule (a commit inside a tree).
    Submodule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    pub name: String,
    pub kind: EntryKind,
}

/// One problem in a folder; `file` is relative to the folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentError {
    pub file: Option<String>,
    pub message: String,
}

/// A folder parsed: its content, shared by every snapshot that holds the folder, or what is
/// wrong with it.
pub type ParsedFolder = Result<Arc<FolderContent>, Vec<ContentError>>;

/// Whether a reader should load a file's bytes: only task.yaml and markdown within the limits,
/// so a stray 1 GiB file is reported without being read.
pub fn wants_content(name: &str, size: u64) -> bool {
    if is_hidden(name) {
        return false;
    }
    if name == TASK_YAML {
        return size <= MAX_TASK_YAML_BYTES;
    }
    is_markdown(name) && size <= MAX_TASK_BYTES
}

/// Hidden entries (`.gitkeep`, `.DS_Store`) are ignored everywhere.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_markdown(name: &str) -> bool {
    name.ends_with(".md") && name.len() > 3
}

/// ConfigMap keys: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn is_config_map_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Validates one folder and, when it is valid, computes its content and digest.
pub fn parse_folder(mut entries: Vec<RawEntry>) -> ParsedFolder {
    entries.retain(|e| !is_hidden(&e.name));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut errors = Vec::new();
    if entries.is_empty() {
        return Err(vec![ContentError {
            file: None,
            message:
                "folder is empty: add a task.yaml and at least one *.md file, or delete the folder"
                    .into(),
        }]);
    }

    let mut task_yaml: Option<Vec<u8>> = None;
    let mut markdown: Vec<(String, Vec<u8>)> = Vec::new();
    let mut sizes: Vec<(String, u64)> = Vec::new();
    for entry in entries {
        let name = entry.name;
        let error = |message: String| ContentError {
            file: Some(name.clone()),
            message,
        };
        match entry.kind {
            EntryKind::Symlink => errors.push(error(
                "is a symbolic link; symlinks are never followed: replace it with a regular file".into(),
            )),
            EntryKind::Submodule => errors.push(error(
                "is a git submodule; a task folder holds only task.yaml and *.md files: remove it".into(),
            )),
            EntryKind::Dir => errors.push(error(
                "nested folders are not allowed in a task folder: move its *.md files up into the task folder, or move it out of the tasks path".into(),
            )),
            EntryKind::File { size, content } if name == TASK_YAML => match content {
                Some(bytes) if size <= MAX_TASK_YAML_BYTES => task_yaml = Some(bytes),
                _ => errors.push(error(format!(
                    "is {} bytes; task.yaml holds only a few short keys and may be at most {MAX_TASK_YAML_BYTES} bytes",
                    size
                ))),
            },
            EntryKind::File { .. } if name == TASK_FILE => errors.push(error(format!(
                "{TASK_FILE} is generated from the task's other files (in reading order, each under a heading); a task folder may not hold one: rename it, e.g. to task-notes.md"
            ))),
            EntryKind::File { size, content } if is_markdown(&name) => {
                if !is_config_map_key(&name) {
                    errors.push(error(format!(
                        "file name is not a valid ConfigMap key (letters, digits, '-', '_' and '.' only, at most {MAX_KEY_LEN} characters): rename it, e.g. to {}",
                        suggest_key(&name)
                    )));
                }
                sizes.push((name.clone(), size.saturating_add(name.len() as u64)));
                // Content is None when it alone is over the limit: the size check reports it.
                if let Some(bytes) = content {
                    match check_text(&bytes) {
                        Ok(()) => markdown.push((name, bytes)),
                        Err(message) => errors.push(error(message)),
                    }
                }
            }
            EntryKind::File { .. } => {
                let hint = match name.as_str() {
                    "task.yml" | "Task.yaml" | "TASK.yaml" | "task.YAML" => {
                        "the settings file must be named exactly task.yaml: rename it".to_string()
                    }
                    n if n.to_ascii_lowercase().ends_with(".md") || n.ends_with(".markdown") => {
                        "markdown files must end in lowercase .md: rename it".to_string()
                    }
                    _ => "only task.yaml and *.md files may be in a task folder: remove it, or move it out of the tasks path".to_string(),
                };
                errors.push(error(hint));
            }
        }
    }

    let total: u64 = sizes
        .iter()
        .fold(0u64, |sum, (_, s)| sum.saturating_add(*s));
    if total > MAX_TASK_BYTES {
        let (largest, largest_size) = sizes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .cloned()
            .unwrap_or_default();
        errors.push(ContentError {
            file: Some(largest),
            message: format!(
                "the task's markdown totals {} ({total} bytes), over the {} limit that keeps its ConfigMap (every file plus the generated TASK.md) under Kubernetes' 1 MiB object limit; this is its largest file ({}): shrink it or split the task",
                human_size(total),
                human_size(MAX_TASK_BYTES),
                human_size(largest_size)
            ),
        });
    }

    let settings = match &task_yaml {
        None if !errors.iter().any(|e| e.file.as_deref() == Some(TASK_YAML)) => {
            errors.push(ContentError {
                file: Some(TASK_YAML.into()),
                message: "is missing: add a task.yaml with serviceName and agentName, e.g. \"serviceName: web\" and \"agentName: claude-code\"".into(),
            });
            None
        }
        None => None,
        Some(bytes) => match parse_task_yaml(bytes) {
            Ok(settings) => Some(settings),
            Err(messages) => {
                errors.extend(messages.into_iter().map(|message| ContentError {
                    file: Some(TASK_YAML.into()),
                    message,
                }));
                None
            }
        },
    };

    if sizes.is_empty() {
        errors.push(ContentError {
            file: None,
            message: "has no *.md files: add at least one markdown file, e.g. prompt.md".into(),
        });
    }

    match settings {
        Some(settings) if errors.is_empty() => {
            let task_yaml = task_yaml.unwrap_or_default();
            let task_yaml = without_scheduling_keys(&task_yaml);
            let digest = content_digest(
                std::iter::once((TASK_YAML, task_yaml.as_slice()))
                    .chain(markdown.iter().map(|(n, c)| (n.as_str(), c.as_slice()))),
            );
            let mut markdown_files: Vec<TaskFile> = markdown
                .into_iter()
                .map(|(filename, content)| {
                    // check_text proved it is UTF-8.
                    TaskFile::held(filename, String::from_utf8(content).unwrap_or_default())
                })
                .collect();
            markdown_files.sort_by(|a, b| crate::prompt::reading_order(&a.filename, &b.filename));
            Ok(Arc::new(FolderContent {
                service_name: settings.service_name.into(),
                agent_name: settings.agent_name.into(),
                suspend: settings.suspend,
                priority: settings.priority,
                markdown_files: markdown_files.into(),
                digest,
            }))
        }
        _ => Err(errors),
    }
}

/// Markdown must be UTF-8 text without NUL bytes.
fn check_text(bytes: &[u8]) -> Result<(), String> {
    if let Some(at) = memchr_nul(bytes) {
        return Err(format!(
            "looks binary (NUL byte at offset {at}); markdown files must be UTF-8 text: remove the file or save it as text"
        ));
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "is not valid UTF-8 (invalid byte at offset {}): save it as UTF-8",
            e.valid_up_to()
        )),
    }
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// What task.yaml says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TaskSettings {
    service_name: String,
    agent_name: String,
    suspend: bool,
    priority: i32,
}

/// The keys task.yaml may hold, for error messages.
const TASK_YAML_KEYS: &str = "serviceName, agentName, suspend and priority";

/// task.yaml: `serviceName` and `agentName` (required, DNS-1123 labels), `suspend` (a boolean,
/// default false) and `priority` (an integer, default 0).
fn parse_task_yaml(bytes: &[u8]) -> Result<TaskSettings, Vec<String>> {
    const EXAMPLE: &str = "e.g. \"serviceName: web\" and \"agentName: claude-code\"";
    let value: serde_norway::Value = serde_norway::from_slice(bytes).map_err(|e| {
        vec![format!("is not valid YAML ({e}): write it as a mapping with serviceName and agentName, {EXAMPLE}")]
    })?;
    let mapping = match value {
        serde_norway::Value::Mapping(m) => m,
        serde_norway::Value::Null => {
            return Err(vec![format!(
                "is empty: set serviceName and agentName, {EXAMPLE}"
            )]);
        }
        _ => {
            return Err(vec![format!(
                "must be a mapping with serviceName and agentName, {EXAMPLE}"
            )]);
        }
    };
    let mut errors = Vec::new();
    let mut service = None;
    let mut agent = None;
    let mut suspend = false;
    let mut priority = 0;
    for (key, value) in mapping {
        let key = match key {
            serde_norway::Value::String(k) => k,
            other => {
                errors.push(format!(
                    "unknown key {}: only {TASK_YAML_KEYS} are allowed: remove it",
                    yaml_inline(&other)
                ));
                continue;
            }
        };
        let slot = match key.as_str() {
            "serviceName" => &mut service,
            "agentName" => &mut agent,
            "suspend" => {
                match value {
                    serde_norway::Value::Bool(b) => suspend = b,
                    other => errors.push(format!(
                        "suspend must be true or false, not {}: write \"suspend: true\" to keep the task from running, or remove the key",
                        yaml_inline(&other)
                    )),
                }
                continue;
            }
            "priority" => {
                match value.as_i64().map(i32::try_from) {
                    Some(Ok(p)) => priority = p,
                    _ => errors.push(format!(
                        "priority must be a whole number between {} and {}, not {}: write e.g. \"priority: 10\" (higher starts first; the default is 0)",
                        i32::MIN,
                        i32::MAX,
                        yaml_inline(&value)
                    )),
                }
                continue;
            }
            _ => {
                let hint = match key.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
                    "servicename" | "service" => " (did you mean serviceName?)",
                    "agentname" | "agent" => " (did you mean agentName?)",
                    "suspended" | "paused" | "pause" => " (did you mean suspend?)",
                    "prio" | "priorities" => " (did you mean priority?)",
                    _ => "",
                };
                errors.push(format!(
                    "unknown key \"{key}\"{hint}: only {TASK_YAML_KEYS} are allowed: remove or rename it"
                ));
                continue;
            }
        };
        match value {
            serde_norway::Value::String(s) => *slot = Some(s),
            other => errors.push(format!(
                "{key} must be a string, not {}: write e.g. \"{key}: {}\"",
                yaml_inline(&other),
                if key == "serviceName" {
                    "web"
                } else {
                    "claude-code"
                }
            )),
        }
    }
    for (key, value, example) in [
        ("serviceName", &service, "web"),
        ("agentName", &agent, "claude-code"),
    ] {
        match value {
            None if !errors.iter().any(|e| e.starts_with(key)) => {
                errors.push(format!("{key} is missing: add e.g. \"{key}: {example}\""))
            }
            None => {}
            Some(v) if !is_dns1123_label(v) => errors.push(format!(
                "{key} \"{v}\" is not a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most {MAX_LABEL_LEN} characters) and it becomes part of Kubernetes names and labels: use e.g. \"{}\"",
                suggest_label(v, example)
            )),
            Some(_) => {}
        }
    }
    match (service, agent) {
        (Some(service_name), Some(agent_name)) if errors.is_empty() => Ok(TaskSettings {
            service_name,
            agent_name,
            suspend,
            priority,
        }),
        _ => Err(errors),
    }
}

/// task.yaml as the content digest sees it: without its top-level `suspend` and `priority`
/// lines (and their indented continuation lines). Those are scheduling decisions, committed in
/// Git like the rest, but they do not change what the agent reads: suspending, resuming or
/// re-prioritising a task keeps its contextVersion, and a task.yaml without them digests exactly
/// as before they existed.
pub fn without_scheduling_keys(task_yaml: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(task_yaml.len());
    let mut skipping = false;
    for line in task_yaml.split_inclusive(|&b| b == b'\n') {
        let indented = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if skipping && indented {
            continue;
        }
        skipping = is_scheduling_key_line(line);
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out
}

fn is_scheduling_key_line(line: &[u8]) -> bool {
    ["suspend", "priority"].iter().any(|key| {
        line.strip_prefix(key.as_bytes())
            .map(|rest| rest.trim_ascii_start().starts_with(b":"))
            .unwrap_or(false)
    })
}

fn yaml_inline(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::Null => "null".into(),
        serde_norway::Value::Bool(b) => b.to_string(),
        serde_norway::Value::Number(n) => n.to_string(),
        serde_norway::Value::String(s) => format!("\"{s}\""),
        serde_norway::Value::Sequence(_) => "a list".into(),
        serde_norway::Value::Mapping(_) => "a mapping".into(),
        serde_norway::Value::Tagged(_) => "a tagged value".into(),
    }
}

/// A DNS-1123 label close to `input`, for error messages.
fn suggest_label(input: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in input.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.chars().take(MAX_LABEL_LEN).collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        fallback.to_string()
    } else {
        out
    }
}

/// A ConfigMap key close to `name`, for error messages.
fn suggest_key(name: &str) -> String {
    let stem = name.strip_suffix(".md").unwrap_or(name);
    let mut out: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(MAX_KEY_LEN - 3);
    let out = out.trim_matches('-');
    if out.is_empty() {
        "notes.md".into()
    } else {
        format!("{out}.md")
    }
}

/// `900 KiB`, `2.0 MiB`, `512 bytes`.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests;
