//! A `notify` watch on a local repository's refs: repository path in, a wake-up on a
//! `tokio::sync::Notify` out whenever a branch or tag moves (a commit, a push into it, a reset),
//! so the sync fetches right away instead of waiting for the poll interval.
//!
//! ```ignore
//! let trigger = Arc::new(Notify::new());
//! let _watch = watch_refs(&repo_dir, trigger.clone())?;   // keep it alive
//! loop {
//!     tokio::select! {
//!         _ = trigger.notified() => {}
//!         _ = tokio::time::sleep(source.next_delay()) => {}
//!     }
//!     let snapshot = source.fetch_snapshot().await;
//! }
//! ```

use super::error::SourceError;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

/// Keeps the watch running; dropping it stops the watch.
pub struct RefWatch {
    _watcher: notify::RecommendedWatcher,
    git_dir: PathBuf,
}

impl RefWatch {
    /// The watched git directory (`.git` of a working tree, or the bare repository).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }
}

/// Whether a changed file (relative to the git directory) means a branch or tag may have moved.
/// Lock files are written before the ref itself; notes (`refs/notes/…`) are written by
/// orchestrator's own notes writer and never change the tasks.
pub fn is_ref_change(relative: &Path) -> bool {
    let text = relative.to_string_lossy();
    if text.ends_with(".lock") {
        return false;
    }
    text == "HEAD"
        || text == "packed-refs"
        || (text.starts_with("refs/") && !text.starts_with("refs/notes"))
}

/// Starts watching the refs of the repository at `repo_path` (a working tree or a bare
/// repository); every ref change calls `trigger.notify_one()`. Bursts coalesce: `Notify` keeps
/// at most one pending wake-up.
pub fn watch_refs(repo_path: &Path, trigger: Arc<Notify>) -> Result<RefWatch, SourceError> {
    let repo = git2::Repository::open(repo_path).map_err(|source| SourceError::OpenRepository {
        path: repo_path.to_path_buf(),
        source,
    })?;
    let git_dir = repo
        .path()
        .canonicalize()
        .map_err(|source| SourceError::ReadFolder {
            path: repo.path().to_path_buf(),
            source,
        })?;
    // A linked worktree (`git worktree add`) keeps HEAD in its own git directory and the
    // branches in the main repository's: both are watched.
    let common = repo
        .commondir()
        .canonicalize()
        .unwrap_or_else(|_| git_dir.clone());
    let mut bases = vec![git_dir.clone()];
    if common != git_dir {
        bases.push(common);
    }
    let watched = bases.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            watched
                .iter()
                .any(|base| p.strip_prefix(base).is_ok_and(is_ref_change))
        });
        if relevant {
            trigger.notify_one();
        }
    })
    .map_err(|source| SourceError::Watch {
        path: git_dir.clone(),
        source,
    })?;
    for base in &bases {
        let refs = base.join("refs");
        let watched = if refs.is_dir() {
            watcher.watch(&refs, RecursiveMode::Recursive)
        } else {
            Ok(())
        };
        watched
            .and_then(|()| watcher.watch(base, RecursiveMode::NonRecursive))
            .map_err(|source| SourceError::Watch {
                path: base.clone(),
                source,
            })?;
    }
    Ok(RefWatch {
        _watcher: watcher,
        git_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_files_are_ref_changes() {
        for (path, yes) in [
            ("refs/heads/main", true),
            ("refs/heads/feature/x", true),
            ("refs/tags/v1", true),
            ("packed-refs", true),
            ("HEAD", true),
            ("refs/heads/main.lock", false),
            ("refs/notes/orchestrator", false),
            ("index", false),
            ("objects/ab/cdef", false),
            ("ORIG_HEAD", false),
            ("logs/HEAD", false),
        ] {
            assert_eq!(is_ref_change(Path::new(path)), yes, "{path}");
        }
    }
}
