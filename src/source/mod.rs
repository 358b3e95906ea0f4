//! The git source: a repository (URL or local path), branch and path in, a `SourceSnapshot` of
//! parsed, validated task folders out.
//!
//! # Public API
//!
//! - [`read_snapshot`]`(repo, commit, branch, path, &mut DigestCache)`: one commit's task folders,
//!   read from the object database (no checkout). Folders are parsed and hashed once per git
//!   tree id ([`DigestCache`]). [`read_snapshot_shared`] returns an `Arc` and hands the same one
//!   back for an unchanged commit.
//! - [`read_folder_snapshot`]`(dir, path)`: the same from a plain directory (no git), for
//!   `orchestrator validate` on a working tree.
//! - [`folder::parse_folder`], [`layout`] and [`digest::content_digest`]: the pure rules behind
//!   both readers (the README's "Task folders" section describes them).
//! - [`GitSource::new`]`(SourceConfig { url, branch, path, mirror_dir, interval, credentials })`
//!   and `GitSource::fetch_snapshot(&mut self).await -> Result<Arc<SourceSnapshot>, SourceError>`:
//!   fetch into a bare mirror (git2 on the blocking pool), resolve the branch, re-read only when
//!   the commit moved (same `Arc` otherwise). On failure the error says what failed and the last
//!   good snapshot stays in [`GitSource::last_good`]; [`GitSource::next_delay`] is the poll
//!   interval, or a doubling backoff after failures. A deleted or corrupt mirror is cloned again;
//!   force-pushes replace history.
//! - [`watch_refs`]`(repo_dir, Arc<Notify>)`: for a local repository ([`GitSource::local_path`]),
//!   wakes the caller right after a commit instead of waiting for the interval.
//! - [`credentials::remote_callbacks`]`(&Credentials)`: libgit2 callbacks that answer credential
//!   requests (SSH key, token); shared with the notes pusher and the API's committer.
//!
//! One broken folder never hides the others: it becomes a [`FolderError`] carrying its task id,
//! so the sync keeps (never prunes) that task's TaskRun.

pub mod credentials;
pub mod digest;
pub mod error;
pub mod folder;
pub mod git;
pub mod known_hosts;
pub mod layout;
pub mod markdown;
pub mod mirror;
pub mod plain;
pub mod revision;
pub mod shared_mirror;
pub mod snapshot;
pub mod tree;
pub mod watch;

pub use credentials::{Credentials, remote_callbacks};
pub use error::SourceError;
pub use git::{GitSource, SourceConfig};
pub use markdown::{BlobReader, ContentHash, TaskFile, content_hash};
pub use plain::read_folder_snapshot;
pub use revision::resolve_revision;
pub use snapshot::{
    ContentDigest, FolderContent, FolderError, Revision, SourceSnapshot, TaskFolder,
};
pub use tree::{DigestCache, read_snapshot, read_snapshot_shared};
pub use watch::{RefWatch, watch_refs};
