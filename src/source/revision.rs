//! Revision strings to commits: `main`, `refs/tags/v1`, a commit id, `main@sha1:<commit>` or
//! nothing (HEAD) in, the commit id and the branch name that labels it out.

use super::error::SourceError;
use git2::{Oid, Repository};

/// `main@sha1:<commit>` → (`main`, commit); anything else → None.
pub fn parse_revision(text: &str) -> Option<(&str, &str)> {
    let (branch, commit) = text.rsplit_once("@sha1:")?;
    (!branch.is_empty() && commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((branch, commit))
}

/// Resolves `revision` (HEAD when `None`) in `repo` to a commit and the branch label of the
/// revision string.
pub fn resolve_revision(
    repo: &Repository,
    revision: Option<&str>,
) -> Result<(Oid, String), SourceError> {
    let fail = |revision: &str| {
        let revision = revision.to_string();
        move |source| SourceError::ResolveRevision { revision, source }
    };
    match revision {
        None => {
            let head = repo.head().map_err(fail("HEAD"))?;
            let commit = head.peel_to_commit().map_err(fail("HEAD"))?.id();
            let label = if head.is_branch() {
                head.shorthand().unwrap_or("HEAD")
            } else {
                "HEAD"
            };
            Ok((commit, label.to_string()))
        }
        Some(text) => {
            if let Some((branch, commit)) = parse_revision(text) {
                let oid = Oid::from_str(commit).map_err(fail(text))?;
                let commit = repo.find_commit(oid).map_err(fail(text))?;
                return Ok((commit.id(), branch.to_string()));
            }
            for candidate in [
                format!("refs/heads/{text}"),
                format!("refs/tags/{text}"),
                text.to_string(),
            ] {
                if let Ok(reference) = repo.find_reference(&candidate)
                    && let Ok(commit) = reference.peel_to_commit()
                {
                    return Ok((commit.id(), text.to_string()));
                }
            }
            let commit = repo
                .revparse_single(text)
                .and_then(|o| o.peel_to_commit())
                .map_err(fail(text))?;
            Ok((commit.id(), text.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_strings() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(parse_revision(&format!("main@sha1:{c}")), Some(("main", c)));
        assert_eq!(
            parse_revision(&format!("feature/x@sha1:{c}")),
            Some(("feature/x", c))
        );
        assert_eq!(parse_revision(&format!("@sha1:{c}")), None);
        assert_eq!(parse_revision("main@sha1:abc"), None);
        assert_eq!(parse_revision("main"), None);
    }
}
