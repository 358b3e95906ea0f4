//! `--repo/--revision/--path` of `validate` and `plan`: the flags in, one `SourceSnapshot` out
//! (a local git repository, a remote URL fetched into a temporary mirror, or a plain folder).

use crate::source::mirror::{Mirror, MirrorFailure, local_repo_path};
use crate::source::revision::parse_revision;
use crate::source::{DigestCache, SourceSnapshot};
use crate::source::{read_folder_snapshot, read_snapshot, resolve_revision};
use anyhow::{Context, bail};
use std::path::Path;

#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    /// Git repository: a local path, or an https, ssh or file:// URL. A directory that is not a
    /// git repository is read as a plain folder.
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch, tag, commit or `<branch>@sha1:<commit>` (default: HEAD; for a URL, the remote's
    /// default branch).
    #[arg(long)]
    pub revision: Option<String>,
    /// Folder inside the repository that holds the task folders (default: the root).
    #[arg(long, default_value = "")]
    pub path: String,
    #[command(flatten)]
    pub git: crate::cli::git_args::GitCredentialArgs,
}

impl SourceArgs {
    /// Reads the snapshot the flags describe.
    pub fn load(&self) -> anyhow::Result<SourceSnapshot> {
        let Some(repo) = &self.repo else {
            if self.revision.is_some() {
                bail!("--revision needs --repo: a plain folder has no revisions");
            }
            return Ok(read_folder_snapshot(Path::new("."), &self.path)?);
        };
        // A path is read in place; any URL, file:// included, is fetched like a remote.
        match local_repo_path(repo).filter(|_| !repo.contains("://")) {
            Some(dir) => {
                if !dir.exists() {
                    bail!("--repo {}: no such directory", dir.display());
                }
                match git2::Repository::open(&dir) {
                    Ok(git) => {
                        let (commit, label) = resolve_revision(&git, self.revision.as_deref())?;
                        Ok(read_snapshot(
                            &git,
                            commit,
                            &label,
                            &self.path,
                            &mut DigestCache::new(),
                        )?)
                    }
                    Err(_) if self.revision.is_none() => {
                        Ok(read_folder_snapshot(&dir, &self.path)?)
                    }
                    Err(e) => bail!(
                        "--repo {} is not a git repository ({}), so --revision cannot apply",
                        dir.display(),
                        e.message()
                    ),
                }
            }
            None => self.load_remote(repo),
        }
    }

    fn load_remote(&self, url: &str) -> anyhow::Result<SourceSnapshot> {
        let credentials = self.git.load()?;
        let mirror_dir = tempfile::tempdir().context("creating a temporary mirror directory")?;
        let mirror = Mirror::new(url, mirror_dir.path(), credentials);
        // What to fetch, and the commit to read when the revision names one.
        let (branch, commit) = match self.revision.as_deref() {
            None => ("HEAD", None),
            Some(rev) => match parse_revision(rev) {
                Some((branch, _)) => (branch, Some(rev)),
                None if looks_like_commit(rev) => ("HEAD", Some(rev)),
                None => (rev, None),
            },
        };
        let (repo, head, label) = mirror.fetch(branch).map_err(|failure| match failure {
            MirrorFailure::Fetch(message) => anyhow::anyhow!(
                "cannot fetch {}: {message}; check the URL, the network and the credentials",
                mirror.display_url()
            ),
            MirrorFailure::Source(e) => e.into(),
        })?;
        let (commit, label) = match commit {
            Some(rev) => resolve_revision(&repo, Some(rev))?,
            None => (head, label),
        };
        Ok(read_snapshot(
            &repo,
            commit,
            &label,
            &self.path,
            // The temporary mirror is gone when this returns: keep the text.
            &mut DigestCache::holding_text(),
        )?)
    }
}

/// 7 to 40 hex digits: an abbreviated or full commit id rather than a branch name.
fn looks_like_commit(rev: &str) -> bool {
    (7..=40).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit())
}
