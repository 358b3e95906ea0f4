//! The local bare mirror of a remote repository: URL, credentials and mirror directory in, a
//! fetched `git2::Repository` and the commit a branch points at out. A mirror that is missing or
//! unreadable is cloned again.

use super::credentials::{Credentials, git_error_message, redact_url, remote_callbacks};
use super::error::SourceError;
use super::shared_mirror;
use crate::names::short_hash;
use crate::progress::{Throttle, fraction};
use git2::{Oid, Repository};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Branches, tags and (for a branch given as a full ref, e.g. `refs/pull/7/head`) that ref,
/// force-updated so that force-pushed history replaces the old one.
fn refspecs(branch: &str) -> Vec<String> {
    let mut specs = vec![
        "+refs/heads/*:refs/heads/*".to_string(),
        "+refs/tags/*:refs/tags/*".to_string(),
    ];
    if branch.starts_with("refs/")
        && !branch.starts_with("refs/heads/")
        && !branch.starts_with("refs/tags/")
    {
        specs.push(format!("+{branch}:{branch}"));
    }
    specs
}

/// Where the mirror of `url` lives under `mirror_root`: readable and unique per URL.
pub fn mirror_path(mirror_root: &Path, url: &str) -> PathBuf {
    let tail = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':', '\\'])
        .next()
        .unwrap_or("repo");
    let tail: String = tail
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let tail = if tail.is_empty() {
        "repo".to_string()
    } else {
        tail
    };
    mirror_root.join(format!("{tail}-{}.git", short_hash(url, 12)))
}

/// A local path (absolute or relative) or `file://` URL → the directory; remote URLs → None.
pub fn local_repo_path(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    if url.contains("://") || is_scp_like(url) {
        return None;
    }
    Some(PathBuf::from(url))
}

/// `git@host:owner/repo.git`.
fn is_scp_like(url: &str) -> bool {
    match url.split_once(':') {
        Some((host, _)) => !host.contains('/') && !host.is_empty() && host.len() > 1,
        None => false,
    }
}

pub struct Mirror {
    url: String,
    path: PathBuf,
    credentials: Credentials,
    /// A repository given as a plain local path: its objects are shared, not fetched
    /// (see [`super::shared_mirror`]).
    shared: Option<PathBuf>,
}

impl Mirror {
    pub fn new(url: &str, mirror_root: &Path, credentials: Credentials) -> Self {
        // libgit2 resolves a relative local path against the process's directory at fetch time;
        // pin it now.
        let url = match local_repo_path(url) {
            Some(path) if path.is_relative() => std::path::absolute(&path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| url.to_string()),
            _ => url.to_string(),
        };
        let path = mirror_path(mirror_root, &url);
        let shared = (!url.starts_with("file://"))
            .then(|| local_repo_path(&url))
            .flatten();
        Mirror {
            url,
            path,
            credentials,
            shared,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The URL without credentials, for messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Fetches `branch` (and every branch and tag) into the mirror and returns the commit it
    /// points at. A missing or corrupt mirror is cloned again; a fetch that fails because the
    /// remote cannot be reached is reported as `message` for [`SourceError::Fetch`].
    pub fn fetch(&self, branch: &str) -> Result<(Repository, Oid, String), MirrorFailure> {
        let source = match &self.shared {
            Some(dir) => Some(
                Repository::open(dir).map_err(|e| MirrorFailure::Fetch(e.message().to_string()))?,
            ),
            None => None,
        };
        let repo = self.open_or_init(source.as_ref())?;
        let repo = match self.update(&repo, source.as_ref(), branch) {
            Ok(()) => repo,
            Err(error) if !mirror_is_healthy(&repo) => {
                tracing::warn!(mirror = %self.path.display(), %error, "mirror is unreadable; cloning again");
                drop(repo);
                self.recreate()?;
                let repo = self.open_or_init(source.as_ref())?;
                self.update(&repo, source.as_ref(), branch)
                    .map_err(|e| MirrorFailure::Fetch(git_error_message(&e)))?;
                repo
            }
            Err(error) => return Err(MirrorFailure::Fetch(git_error_message(&error))),
        };
        let (commit, label) = resolve_branch(&repo, branch, &self.display_url())?;
        Ok((repo, commit, label))
    }

    /// Brings the mirror's refs up to the source's: a ref copy for a shared local repository,
    /// else a fetch.
    fn update(
        &self,
        repo: &Repository,
        shared: Option<&Repository>,
        branch: &str,
    ) -> Result<(), git2::Error> {
        match shared {
            Some(source) => shared_mirror::copy_refs(repo, source, branch),
            None => self.fetch_into(repo, branch),
        }
    }

    /// Deletes the mirror and starts an empty one; the next fetch clones everything.
    pub fn recreate(&self) -> Result<Repository, SourceError> {
        if self.path.exists() {
            std::fs::remove_dir_all(&self.path).map_err(|e| self.mirror_error(e.to_string()))?;
        }
        self.init()
    }

    /// The mirror, opened after its alternates point at `shared`'s objects, when given.
    fn open_or_init(&self, shared: Option<&Repository>) -> Result<Repository, SourceError> {
        let repo = match Repository::open_bare(&self.path) {
            Ok(repo) => repo,
            Err(_) => self.recreate()?,
        };
        let Some(source) = shared else {
            return Ok(repo);
        };
        let changed = shared_mirror::ensure_alternates(&self.path, source).map_err(|e| {
            self.mirror_error(format!("cannot share the objects of {}: {e}", self.url))
        })?;
        if !changed {
            return Ok(repo);
        }
        // The object database reads alternates when the repository is opened.
        drop(repo);
        Repository::open_bare(&self.path).map_err(|e| self.mirror_error(e.message().to_string()))
    }

    fn init(&self) -> Result<Repository, SourceError> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.mirror_error(e.to_string()))?;
        }
        Repository::init_bare(&self.path).map_err(|e| self.mirror_error(e.message().to_string()))
    }

    fn mirror_error(&self, message: String) -> SourceError {
        SourceError::Mirror {
            path: self.path.clone(),
            message,
        }
    }

    fn fetch_into(&self, repo: &Repository, branch: &str) -> Result<(), git2::Error> {
        // An anonymous remote: the URL (which may carry credentials) is never written to the
        // mirror's config.
        let mut remote = repo.remote_anonymous(&self.url)?;
        let mut options = git2::FetchOptions::new();
        let mut callbacks = remote_callbacks(&self.credentials);
        let url = self.display_url();
        let mut throttle = Throttle::starting_at(Instant::now());
        callbacks.transfer_progress(move |p| {
            let (received, total) = (p.received_objects(), p.total_objects());
            let done = total > 0 && p.indexed_objects() == total;
            if (done && throttle.logged()) || throttle.due(Instant::now()) {
                tracing::info!(
                    url = %url,
                    objects = %fraction(received, total),
                    received_mib = p.received_bytes() / (1024 * 1024),
                    "fetching"
                );
            }
            true
        });
        options.remote_callbacks(callbacks);
        options.prune(git2::FetchPrune::On);
        options.download_tags(git2::AutotagOption::None);
        let specs = refspecs(branch);
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        remote.fetch(&specs, Some(&mut options), None)?;
        // Remember the remote's default branch for branch "HEAD".
        if let Ok(default) = remote.default_branch()
            && let Ok(name) = default.as_str()
        {
            repo.reference_symbolic("HEAD", name, true, "orchestrator: remote default branch")?;
        }
        Ok(())
    }
}

/// Why a mirror fetch failed: an unreachable or rejecting remote, or a local problem.
#[derive(Debug)]
pub enum MirrorFailure {
    Fetch(String),
    Source(SourceError),
}

impl From<SourceError> for MirrorFailure {
    fn from(e: SourceError) -> Self {
        MirrorFailure::Source(e)
    }
}

/// Every ref of a healthy mirror peels to a commit whose tree can be read.
pub fn mirror_is_healthy(repo: &Repository) -> bool {
    let Ok(refs) = repo.references() else {
        return false;
    };
    for reference in refs {
        let Ok(reference) = reference else {
            return false;
        };
        if reference.kind() == Some(git2::ReferenceType::Symbolic) {
            continue;
        }
        match reference.peel_to_commit().and_then(|c| c.tree()) {
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

/// `main` → refs/heads/main; `v1` → refs/tags/v1; `refs/…` as is; `HEAD` → the remote's default.
fn resolve_branch(
    repo: &Repository,
    branch: &str,
    url: &str,
) -> Result<(Oid, String), SourceError> {
    let candidates = if branch.starts_with("refs/") || branch == "HEAD" {
        vec![branch.to_string()]
    } else {
        vec![
            format!("refs/heads/{branch}"),
            format!("refs/tags/{branch}"),
        ]
    };
    for name in &candidates {
        if let Ok(reference) = repo.find_reference(name) {
            let commit = reference
                .peel_to_commit()
                .map_err(|source| SourceError::ReadObject {
                    what: format!("the commit of {name}"),
                    source,
                })?;
            let label = if branch == "HEAD" {
                repo.find_reference("HEAD")
                    .ok()
                    .and_then(|r| {
                        r.symbolic_target()
                            .ok()
                            .flatten()
                            .map(|t| t.trim_start_matches("refs/heads/").to_string())
                    })
                    .unwrap_or_else(|| "HEAD".into())
            } else {
                branch.to_string()
            };
            return Ok((commit.id(), label));
        }
    }
    let available: Vec<String> = repo
        .branches(Some(git2::BranchType::Local))
        .map(|branches| {
            branches
                .flatten()
                .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_string))
                .take(10)
                .collect()
        })
        .unwrap_or_default();
    Err(SourceError::BranchNotFound {
        branch: branch.to_string(),
        url: url.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refspecs_cover_branches_tags_and_extra_refs() {
        assert_eq!(refspecs("main").len(), 2);
        assert_eq!(refspecs("refs/heads/main").len(), 2);
        assert_eq!(
            refspecs("refs/pull/7/head")[2],
            "+refs/pull/7/head:refs/pull/7/head"
        );
    }

    #[test]
    fn local_paths_and_remote_urls() {
        for (url, local) in [
            ("/srv/tasks", Some("/srv/tasks")),
            ("./tasks", Some("./tasks")),
            ("file:///srv/tasks.git", Some("/srv/tasks.git")),
            ("https://github.com/o/r.git", None),
            ("ssh://git@host/r.git", None),
            ("git@github.com:o/r.git", None),
        ] {
            assert_eq!(local_repo_path(url), local.map(PathBuf::from), "{url}");
        }
    }

    #[test]
    fn mirror_paths_are_readable_and_distinct() {
        let root = Path::new("/m");
        let a = mirror_path(root, "https://github.com/acme/tasks.git");
        let b = mirror_path(root, "https://gitlab.com/acme/tasks.git");
        assert!(
            a.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tasks-"),
            "{a:?}"
        );
        assert!(a.to_string_lossy().ends_with(".git"));
        assert_ne!(a, b);
    }
}
