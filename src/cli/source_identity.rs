//! The source identity of `run` and `plan`: `--repo`, `--path` and `--source-name` in, the
//! [`SourceIdentity`] whose ownership mark every clone of the repository shares out.
//!
//! A local repository is identified by its `origin` remote when it has one (a CI checkout, a
//! developer's clone and the loop's bare mirror then agree), else by its canonical path; a URL by
//! itself. Both are normalised ([`crate::desired::normalise_repo_url`]). The marks an earlier
//! version derived from the `--repo` string are recognised and migrated on the next sync.

use crate::desired::{SourceIdentity, redact_url};
use crate::source::mirror::local_repo_path;
use anyhow::Context;
use std::path::Path;

/// The identity of `repo` (as given to `--repo`) and `path`.
pub fn resolve_source_identity(
    repo: &str,
    path: &str,
    source_name: Option<&str>,
) -> anyhow::Result<SourceIdentity> {
    let source_name = source_name.map(str::trim).filter(|n| !n.is_empty());
    let Some(dir) = local_repo_path(repo) else {
        let mut identity = SourceIdentity::normalised(&redact_url(repo), path, source_name);
        identity.legacy_repos.push(redact_url(repo));
        return Ok(identity);
    };
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("--repo {}: no such directory", dir.display()))?;
    let remote = if repo.starts_with("file://") {
        None
    } else {
        origin_url(&canonical)
    };
    let mut identity = SourceIdentity::normalised(
        &remote.unwrap_or_else(|| canonical.display().to_string()),
        path,
        source_name,
    );
    // What earlier versions derived the mark from: the canonical path.
    identity.legacy_repos.push(canonical.display().to_string());
    Ok(identity)
}

/// The `origin` remote's URL of the repository at `dir`, without credentials; a local path is
/// resolved against the repository and made canonical, as a clone's `origin` often is relative.
fn origin_url(dir: &Path) -> Option<String> {
    let repo = git2::Repository::open(dir).ok()?;
    let remote = repo.find_remote("origin").ok()?;
    let url = remote.url().ok()?.to_string();
    match local_repo_path(&url) {
        Some(local) => {
            let base = repo.workdir().unwrap_or_else(|| repo.path());
            let joined = if local.is_relative() {
                base.join(local)
            } else {
                local
            };
            Some(
                joined
                    .canonicalize()
                    .map(|p| p.display().to_string())
                    .unwrap_or(url),
            )
        }
        None => Some(redact_url(&url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_is_identified_by_its_origin_and_a_plain_repository_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("tasks.git");
        git2::Repository::init_bare(&bare).unwrap();
        let clone = dir.path().join("clone");
        let repo = git2::Repository::init(&clone).unwrap();
        repo.remote("origin", &format!("file://{}", bare.display()))
            .unwrap();
        let canonical_bare = bare.canonicalize().unwrap().display().to_string();
        let want = canonical_bare.trim_end_matches(".git").to_string();

        let of_clone =
            resolve_source_identity(&clone.display().to_string(), "tasks", None).unwrap();
        let of_bare = resolve_source_identity(&bare.display().to_string(), "tasks", None).unwrap();
        let of_url =
            resolve_source_identity(&format!("file://{canonical_bare}"), "tasks", None).unwrap();
        assert_eq!(of_clone.repo, want);
        assert_eq!(of_bare.repo, want);
        assert_eq!(of_url.repo, want);
        assert_eq!(of_clone.label_value(), of_bare.label_value());
        assert_eq!(
            of_clone.legacy_repos,
            [clone.canonicalize().unwrap().display().to_string()]
        );
        let remote =
            resolve_source_identity("https://u:secret@example.com/o/tasks.git", "", None).unwrap();
        assert_eq!(remote.repo, "example.com/o/tasks");
        assert_eq!(remote.legacy_repos, ["https://example.com/o/tasks.git"]);
        assert!(resolve_source_identity("/no/such/dir", "", None).is_err());
    }
}
