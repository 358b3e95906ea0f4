//! Where a container's paths land on the local machine, pure: mountPaths, volume keys and the
//! container's strings in, local paths and rewritten strings out.
//!
//! The rule: a volume mounted at `/workspace/task` is written to `<run dir>/workspace/task`,
//! and every occurrence of the mountPath as a whole path prefix in the command, the args, the
//! env values and the workingDir is rewritten to that local directory. So an agent profile with
//! `env: TASK_DIR=/workspace/task` and `args: ["-c", "cat $TASK_DIR/*.md"]` (or the literal path
//! in the args) reads the task's files locally exactly as it would in a pod.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A path that would escape the run directory or is not a plain relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "path {path:?} is not usable by the local runner: it must be a normal path without '..' \
     components"
)]
pub struct BadPath {
    pub path: String,
}

/// The local directory for a mountPath: `<run dir>/<mountPath without the leading '/'>`.
pub fn local_mount_dir(run_dir: &Path, mount_path: &str) -> Result<PathBuf, BadPath> {
    Ok(run_dir.join(relative(mount_path.trim_start_matches('/'), mount_path)?))
}

/// A volume key's file path relative to the mount (a ConfigMap `items[].path`, or the key).
pub fn relative_file(path: &str) -> Result<PathBuf, BadPath> {
    if path.starts_with('/') {
        return Err(BadPath {
            path: path.to_string(),
        });
    }
    relative(path, path)
}

fn relative(path: &str, original: &str) -> Result<PathBuf, BadPath> {
    let bad = || BadPath {
        path: original.to_string(),
    };
    let p = Path::new(path);
    if path.is_empty() {
        return Ok(PathBuf::new());
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad());
    }
    Ok(p.to_path_buf())
}

/// Which files a ConfigMap or Secret volume holds: all keys as file names, or only the listed
/// `items` (key → path). A listed key that is missing is an error naming it.
pub fn volume_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[(String, String)]>,
) -> Result<Vec<(PathBuf, Vec<u8>)>, VolumeFileError> {
    match items {
        None => data
            .iter()
            .map(|(key, bytes)| Ok((relative_file(key)?, bytes.clone())))
            .collect(),
        Some(items) => items
            .iter()
            .map(|(key, path)| {
                let bytes = data
                    .get(key)
                    .ok_or_else(|| VolumeFileError::MissingKey(key.clone()))?;
                Ok((relative_file(path)?, bytes.clone()))
            })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeFileError {
    #[error("the volume has no key {0:?} listed in its items")]
    MissingKey(String),
    #[error(transparent)]
    BadPath(#[from] BadPath),
}

/// Rewrites each mountPath that appears as a whole path prefix in `text` to its local
/// directory. A match must start the string or follow a character that cannot be part of a path
/// (so `/x/workspace` is not a match for `/workspace`), and must end the string or be followed
/// by `/` or a character that cannot continue a file name (so `/workspace2` is not a match).
/// Longer mountPaths win over shorter ones that prefix them.
pub fn rewrite_mount_paths(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut ordered: Vec<&(String, PathBuf)> = mounts
        .iter()
        .filter(|(m, _)| m.starts_with('/') && m.len() > 1)
        .collect();
    ordered.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        let before = text[..i].chars().next_back();
        if before.is_none_or(|c| !is_path_char(c)) {
            for (mount, local) in &ordered {
                let mount = mount.trim_end_matches('/');
                if text[i..].starts_with(mount) {
                    let after = text[i + mount.len()..].chars().next();
                    if after.is_none_or(|c| c == '/' || !is_name_char(c)) {
                        out.push_str(&local.to_string_lossy());
                        i += mount.len();
                        continue 'scan;
                    }
                }
            }
        }
        let c = text[i..].chars().next().unwrap_or_default();
        out.push(c);
        i += c.len_utf8().max(1);
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn is_path_char(c: char) -> bool {
    is_name_char(c) || c == '/'
}

/// Kubernetes' `$(VAR)` expansion in env values, command and args: a reference to a defined
/// variable is replaced, an undefined one is left as written, and `$$` is an escaped `$`.
pub fn expand_vars(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// An env var name from a path, for `ORCHESTRATOR_MOUNT_<NAME>`: `/workspace/task` →
/// `WORKSPACE_TASK`.
pub fn mount_env_name(mount_path: &str) -> String {
    let name: String = mount_path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ORCHESTRATOR_MOUNT_{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn mounts() -> Vec<(String, PathBuf)> {
        vec![
            (
                "/workspace".to_string(),
                PathBuf::from("/tmp/run/workspace"),
            ),
            (
                "/workspace/task".to_string(),
                PathBuf::from("/tmp/run/workspace/task"),
            ),
            (
                "/etc/agent/".to_string(),
                PathBuf::from("/tmp/run/etc/agent"),
            ),
        ]
    }

    #[test]
    fn mount_paths_are_rewritten_only_as_whole_path_prefixes() {
        for (input, expected) in [
            ("/workspace/task", "/tmp/run/workspace/task"),
            (
                "/workspace/task/prompt.md",
                "/tmp/run/workspace/task/prompt.md",
            ),
            (
                "cat /workspace/task/*.md",
                "cat /tmp/run/workspace/task/*.md",
            ),
            ("/workspace/other", "/tmp/run/workspace/other"),
            ("TASK=/workspace/task", "TASK=/tmp/run/workspace/task"),
            ("'/workspace/task'", "'/tmp/run/workspace/task'"),
            ("/workspace2", "/workspace2"),
            ("/workspace.bak", "/workspace.bak"),
            ("/x/workspace/task", "/x/workspace/task"),
            ("a/workspace", "a/workspace"),
            ("/etc/agent/config", "/tmp/run/etc/agent/config"),
            ("/etc/agents", "/etc/agents"),
            (
                "ls /workspace /workspace/task",
                "ls /tmp/run/workspace /tmp/run/workspace/task",
            ),
            ("héllo /workspace", "héllo /tmp/run/workspace"),
            ("no paths here", "no paths here"),
            ("", ""),
        ] {
            assert_eq!(rewrite_mount_paths(input, &mounts()), expected, "{input:?}");
        }
    }

    #[test]
    fn the_root_mount_path_is_never_rewritten() {
        let mounts = vec![("/".to_string(), PathBuf::from("/tmp/run"))];
        assert_eq!(rewrite_mount_paths("/bin/sh", &mounts), "/bin/sh");
    }

    #[test]
    fn local_dirs_stay_inside_the_run_dir() {
        let run = Path::new("/tmp/run");
        assert_eq!(
            local_mount_dir(run, "/workspace/task"),
            Ok(PathBuf::from("/tmp/run/workspace/task"))
        );
        assert_eq!(local_mount_dir(run, "/"), Ok(PathBuf::from("/tmp/run")));
        assert!(local_mount_dir(run, "/workspace/../../etc").is_err());
        assert!(relative_file("../x").is_err());
        assert!(relative_file("/etc/passwd").is_err());
        assert_eq!(relative_file("a/b.md"), Ok(PathBuf::from("a/b.md")));
    }

    #[test]
    fn volume_files_take_all_keys_or_only_the_items() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("prompt.md".to_string(), b"p".to_vec()),
            ("notes.md".to_string(), b"n".to_vec()),
        ]
        .into();
        assert_eq!(
            volume_files(&data, None),
            Ok(vec![
                (PathBuf::from("notes.md"), b"n".to_vec()),
                (PathBuf::from("prompt.md"), b"p".to_vec()),
            ])
        );
        let items = [("prompt.md".to_string(), "task/PROMPT.md".to_string())];
        assert_eq!(
            volume_files(&data, Some(&items)),
            Ok(vec![(PathBuf::from("task/PROMPT.md"), b"p".to_vec())])
        );
        let missing = [("gone.md".to_string(), "gone.md".to_string())];
        assert_eq!(
            volume_files(&data, Some(&missing)),
            Err(VolumeFileError::MissingKey("gone.md".to_string()))
        );
        let escaping = [("prompt.md".to_string(), "../x".to_string())];
        assert!(volume_files(&data, Some(&escaping)).is_err());
    }

    #[test]
    fn vars_expand_as_kubernetes_expands_them() {
        let lookup = |name: &str| match name {
            "A" => Some("alpha".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        for (input, expected) in [
            ("$(A)", "alpha"),
            ("x-$(A)-y", "x-alpha-y"),
            ("$(EMPTY)z", "z"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(A)", "$(A)"),
            ("$A", "$A"),
            ("cost $5", "cost $5"),
            ("$(A", "$(A"),
            ("$", "$"),
        ] {
            assert_eq!(expand_vars(input, lookup), expected, "{input:?}");
        }
    }

    #[test]
    fn mount_env_names_are_valid_env_names() {
        assert_eq!(
            mount_env_name("/workspace/task"),
            "ORCHESTRATOR_MOUNT_WORKSPACE_TASK"
        );
        assert_eq!(
            mount_env_name("/etc/agent-config/"),
            "ORCHESTRATOR_MOUNT_ETC_AGENT_CONFIG"
        );
    }
}
