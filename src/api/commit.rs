//! Writes to Git: a checked change in, one commit on the branch (pushed when the repository has a
//! remote) out. Writes are serialized per repository in arrival order; a push that loses a race
//! fetches the new tip, re-applies the change there and tries again.

use super::change::{
    Change, ChangeRefused, FolderWrite, find_task_folder, plan_context, plan_task,
};
use crate::source::folder::{EntryKind, RawEntry, is_hidden, wants_content};
use crate::source::mirror::local_repo_path;
use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Builds the callbacks (credentials, certificate checks) for one fetch or push.
pub type CallbacksFactory = Arc<dyn Fn() -> git2::RemoteCallbacks<'static> + Send + Sync>;

/// A name and an email, as a commit records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
}

impl Person {
    /// Parses `Name <email>`.
    pub fn parse(raw: &str) -> Option<Person> {
        let (name, rest) = raw.split_once('<')?;
        let email = rest.strip_suffix('>')?.trim();
        let name = name.trim();
        (!name.is_empty() && !email.is_empty()).then(|| Person {
            name: name.to_string(),
            email: email.to_string(),
        })
    }
}

impl Default for Person {
    fn default() -> Self {
        Person {
            name: "orchestrator-api".into(),
            email: "orchestrator-api@localhost".into(),
        }
    }
}

/// Where and as whom the API commits.
#[derive(Clone)]
pub struct WriterConfig {
    pub branch: String,
    /// The path inside the repository that holds the task folders ("" for the root).
    pub task_root: String,
    /// The remote to push to. `None` commits to the local branch: the repository is itself the
    /// one the sync reads, so pushing it elsewhere would hide the commit from the sync.
    pub remote: Option<String>,
    pub author: Person,
    pub committer: Person,
    /// How many times a write is re-applied on a new tip after a lost push race.
    pub max_attempts: u32,
    pub callbacks: Option<CallbacksFactory>,
}

impl WriterConfig {
    pub fn new(branch: impl Into<String>, task_root: impl Into<String>) -> Self {
        WriterConfig {
            branch: branch.into(),
            task_root: task_root.into().trim_matches('/').to_string(),
            remote: None,
            author: Person::default(),
            committer: Person::default(),
            max_attempts: 10,
            callbacks: None,
        }
    }
}

/// What one write left in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub commit: String,
    /// The folder's path in the repository (`tasks/42-web`).
    pub folder: String,
    pub files: Vec<String>,
    pub context_version: Option<u32>,
    pub pushed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("cannot open the git repository {path}: {source}")]
    OpenRepository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error(
        "branch {branch:?} is checked out in the working tree {path}: the API would move the \
         branch under your files. Point the API at a bare repository or a remote URL, or sync a \
         branch that is not checked out"
    )]
    BranchCheckedOut { branch: String, path: PathBuf },
    #[error("the repository has no remote named {name:?}")]
    UnknownRemote { name: String },
    #[error("cannot read the tip of {what}: {source}")]
    ReadTip {
        what: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot read the task folders: {source}")]
    ReadTree {
        #[source]
        source: git2::Error,
    },
    #[error("cannot write the commit: {source}")]
    WriteCommit {
        #[source]
        source: git2::Error,
    },
    #[error("cannot update branch {branch:?}: {source}")]
    UpdateBranch {
        branch: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot fetch from remote {remote:?}: {source}")]
    Fetch {
        remote: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot push to remote {remote:?}: {message}")]
    Push { remote: String, message: String },
    #[error("the branch kept moving: the change could not land after {attempts} attempts")]
    TooManyRaces { attempts: u32 },
    #[error(transparent)]
    Refused(#[from] ChangeRefused),
    #[error("the git worker stopped: {0}")]
    Worker(String),
}

impl CommitError {
    /// A short, fixed name of the failed step, for logs' structure and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            CommitError::OpenRepository { .. } => "open_repository",
            CommitError::BranchCheckedOut { .. } => "branch_checked_out",
            CommitError::UnknownRemote { .. } => "unknown_remote",
            CommitError::ReadTip { .. } => "read_tip",
            CommitError::ReadTree { .. } => "read_tree",
            CommitError::WriteCommit { .. } => "write_commit",
            CommitError::UpdateBranch { .. } => "update_branch",
            CommitError::Fetch { .. } => "fetch",
            CommitError::Push { .. } => "push",
            CommitError::TooManyRaces { .. } => "too_many_races",
            CommitError::Refused(_) => "refused",
            CommitError::Worker(_) => "worker",
        }
    }
}

/// The one writer of a repository. Cloning shares the repository and its write queue.
#[derive(Clone)]
pub struct RepoWriter {
    repo: Arc<tokio::sync::Mutex<Repository>>,
    config: Arc<WriterConfig>,
    remote: Option<String>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for RepoWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoWriter")
            .field("path", &self.path)
            .field("branch", &self.config.branch)
            .field("remote", &self.remote)
            .finish()
    }
}

/// The private ref a commit is pushed from, so that a local branch (perhaps checked out) never
/// moves when the repository has a remote.
const PUSH_REF: &str = "refs/orchestrator-api/push";

impl RepoWriter {
    /// Opens the repository at `path`. With `config.remote`, commits are pushed there and the
    /// local branch is left alone; without, the branch itself moves (refused when it is checked
    /// out in a working tree).
    pub fn open(path: &Path, config: WriterConfig) -> Result<Self, CommitError> {
        let repo = Repository::open(path).map_err(|source| CommitError::OpenRepository {
            path: path.to_path_buf(),
            source,
        })?;
        let remote = match &config.remote {
            Some(name) => {
                repo.find_remote(name)
                    .map_err(|_| CommitError::UnknownRemote { name: name.clone() })?;
                Some(name.clone())
            }
            None => None,
        };
        if remote.is_none() && !repo.is_bare() && head_is_branch(&repo, &config.branch) {
            return Err(CommitError::BranchCheckedOut {
                branch: config.branch.clone(),
                path: path.to_path_buf(),
            });
        }
        Ok(RepoWriter {
            repo: Arc::new(tokio::sync::Mutex::new(repo)),
            config: Arc::new(config),
            remote,
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// A bare repository at `dir` whose `origin` is `url`: the API's own staging clone of a
    /// remote repository. Objects arrive with the first fetch.
    pub fn for_remote(
        url: &str,
        dir: &Path,
        mut config: WriterConfig,
    ) -> Result<Self, CommitError> {
        let open_error = |source| CommitError::OpenRepository {
            path: dir.to_path_buf(),
            source,
        };
        let repo = match Repository::open_bare(dir) {
            Ok(repo) => repo,
            Err(_) => Repository::init_bare(dir).map_err(open_error)?,
        };
        match repo.find_remote("origin") {
            Ok(existing) if existing.url().ok() == Some(url) => {}
            Ok(_) => repo.remote_set_url("origin", url).map_err(open_error)?,
            Err(_) => {
                repo.remote("origin", url).map_err(open_error)?;
            }
        }
        drop(repo);
        config.remote = Some("origin".into());
        Self::open(dir, config)
    }

    pub fn branch(&self) -> &str {
        &self.config.branch
    }

    pub fn task_root(&self) -> &str {
        &self.config.task_root
    }

    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Fetches (when there is a remote) and reads the branch tip: whether the repository can be
    /// written. Returns the tip commit, `None` for a branch with no commit yet.
    pub async fn probe(&self) -> Result<Option<String>, CommitError> {
        let guard = self.repo.clone().lock_owned().await;
        let config = self.config.clone();
        let remote = self.remote.clone();
        tokio::task::spawn_blocking(move || {
            let tip_ref = match remote.as_deref() {
                Some(remote) => {
                    fetch_branch(&guard, &config, remote)?;
                    format!("refs/remotes/{remote}/{}", config.branch)
                }
                None => format!("refs/heads/{}", config.branch),
            };
            Ok(tip(&guard, &tip_ref)?.map(|oid| oid.to_string()))
        })
        .await
        .map_err(|e| CommitError::Worker(e.to_string()))?
    }

    /// Commits `change` (and pushes it). Callers are served in arrival order.
    pub async fn write(&self, change: Change) -> Result<Written, CommitError> {
        let guard = self.repo.clone().lock_owned().await;
        let config = self.config.clone();
        let remote = self.remote.clone();
        // The blocking task owns the lock: if the request is dropped (timeout, client gone) the
        // write still finishes or fails as a whole, and the next one waits for it.
        tokio::task::spawn_blocking(move || {
            write_blocking(&guard, &config, remote.as_deref(), &change)
        })
        .await
        .map_err(|e| CommitError::Worker(e.to_string()))?
    }
}

fn head_is_branch(repo: &Repository, branch: &str) -> bool {
    // An unborn branch is a symbolic HEAD too; `find_reference("HEAD")` sees it without resolving.
    repo.find_reference("HEAD")
        .ok()
        .and_then(|h| {
            h.symbolic_target()
                .ok()
                .flatten()
                .map(|t| t == format!("refs/heads/{branch}"))
        })
        .unwrap_or(false)
}

fn write_blocking(
    repo: &Repository,
    config: &WriterConfig,
    remote: Option<&str>,
    change: &Change,
) -> Result<Written, CommitError> {
    let branch_ref = format!("refs/heads/{}", config.branch);
    for attempt in 1..=config.max_attempts.max(1) {
        // The first attempt trusts the remote-tracking ref (our last push, or the last fetch):
        // a stale base only costs a rejected push, after which every attempt fetches.
        let (tip_ref, fresh) = match remote {
            Some(remote) => {
                let tracking = format!("refs/remotes/{remote}/{}", config.branch);
                let trusted = attempt == 1 && tip(repo, &tracking)?.is_some();
                if !trusted {
                    fetch_branch(repo, config, remote)?;
                }
                (tracking, !trusted)
            }
            None => (branch_ref.clone(), true),
        };
        let base = tip(repo, &tip_ref)?;
        let (write, folder_path) = match plan_on(repo, config, base, change) {
            // A refusal must hold on the remote's real tip, not on a possibly stale one.
            Err(CommitError::Refused(_)) if !fresh => continue,
            planned => planned?,
        };
        let commit = commit_write(repo, config, base, &write)?;
        let landed = match remote {
            None => move_branch(repo, &branch_ref, base, commit)?,
            Some(remote) => push_commit(repo, config, remote, &branch_ref, base, commit)?,
        };
        if landed {
            if remote.is_some() {
                // What the remote now holds; the next write starts from it without a fetch.
                repo.reference(&tip_ref, commit, true, "orchestrator-api: pushed")
                    .map_err(|source| CommitError::UpdateBranch {
                        branch: tip_ref.clone(),
                        source,
                    })?;
            }
            info!(
                commit = %commit,
                folder = %folder_path,
                attempt,
                pushed = remote.is_some(),
                "committed task change"
            );
            return Ok(Written {
                commit: commit.to_string(),
                folder: folder_path,
                files: write.files.iter().map(|(name, _)| name.clone()).collect(),
                context_version: write.context_version,
                pushed: remote.is_some(),
            });
        }
        debug!(
            attempt,
            "branch moved during the write; re-applying on the new tip"
        );
        // Spread racing writers apart a little; the lock already serializes this process.
        std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
    }
    Err(CommitError::TooManyRaces {
        attempts: config.max_attempts,
    })
}

/// The commit `reference` points at, or `None` when it does not exist yet (an empty repository).
fn tip(repo: &Repository, reference: &str) -> Result<Option<Oid>, CommitError> {
    match repo.refname_to_id(reference) {
        Ok(oid) => Ok(Some(oid)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(source) => Err(CommitError::ReadTip {
            what: reference.to_string(),
            source,
        }),
    }
}

/// Decides the folder write on top of `base`; returns it with the folder's repository path.
fn plan_on(
    repo: &Repository,
    config: &WriterConfig,
    base: Option<Oid>,
    change: &Change,
) -> Result<(FolderWrite, String), CommitError> {
    let read = |source| CommitError::ReadTree { source };
    let root_tree = match base {
        Some(oid) => task_root_tree(repo, oid, &config.task_root).map_err(read)?,
        None => None,
    };
    let folders: Vec<String> = root_tree
        .as_ref()
        .map(|t| {
            t.iter()
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .filter_map(|e| e.name().ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let write = match change {
        Change::Task(task) => plan_task(task, &folders)?,
        Change::Context(context) => {
            let Some(folder) = find_task_folder(&folders, context.task_id) else {
                return Err(ChangeRefused::TaskNotFound {
                    task_id: context.task_id,
                    root: display_root(&config.task_root),
                }
                .into());
            };
            let files = folder_files(repo, root_tree.as_ref(), folder).map_err(read)?;
            plan_context(context, folder, &files)?
        }
    };
    let path = if config.task_root.is_empty() {
        write.folder.clone()
    } else {
        format!("{}/{}", config.task_root, write.folder)
    };
    Ok((write, path))
}

fn display_root(root: &str) -> String {
    if root.is_empty() {
        "the repository root".into()
    } else {
        format!("{root}/")
    }
}

fn task_root_tree<'r>(
    repo: &'r Repository,
    commit: Oid,
    root: &str,
) -> Result<Option<Tree<'r>>, git2::Error> {
    let tree = repo.find_commit(commit)?.tree()?;
    if root.is_empty() {
        return Ok(Some(tree));
    }
    match tree.get_path(Path::new(root)) {
        Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
            Ok(Some(repo.find_tree(entry.id())?))
        }
        Ok(_) => Ok(None),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The folder's entries as the source's parser takes them (bytes only of task.yaml and markdown).
fn folder_files(
    repo: &Repository,
    root: Option<&Tree<'_>>,
    folder: &str,
) -> Result<Vec<RawEntry>, git2::Error> {
    let Some(entry) = root.and_then(|r| r.get_name(folder)) else {
        return Ok(Vec::new());
    };
    let tree = repo.find_tree(entry.id())?;
    let mut entries = Vec::with_capacity(tree.len());
    for e in tree.iter() {
        let name = String::from_utf8_lossy(e.name_bytes()).into_owned();
        if is_hidden(&name) {
            continue;
        }
        let kind = match e.filemode() {
            0o040000 => EntryKind::Dir,
            0o120000 => EntryKind::Symlink,
            0o160000 => EntryKind::Submodule,
            _ if wants_content(&name, 0) => {
                let blob = repo.find_blob(e.id())?;
                let size = blob.content().len() as u64;
                EntryKind::File {
                    size,
                    content: wants_content(&name, size).then(|| blob.content().to_vec()),
                }
            }
            _ => EntryKind::File {
                size: 0,
                content: None,
            },
        };
        entries.push(RawEntry { name, kind });
    }
    Ok(entries)
}

fn commit_write(
    repo: &Repository,
    config: &WriterConfig,
    base: Option<Oid>,
    write: &FolderWrite,
) -> Result<Oid, CommitError> {
    let fail = |source| CommitError::WriteCommit { source };
    let base_commit = base
        .map(|oid| repo.find_commit(oid))
        .transpose()
        .map_err(fail)?;
    let base_tree = base_commit
        .as_ref()
        .map(|c| c.tree())
        .transpose()
        .map_err(fail)?;
    let mut blobs = Vec::with_capacity(write.files.len());
    for (name, content) in &write.files {
        blobs.push((name.as_str(), repo.blob(content.as_bytes()).map_err(fail)?));
    }
    let mut dirs: Vec<&str> = config
        .task_root
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    dirs.push(&write.folder);
    let tree_oid = insert_files(repo, base_tree.as_ref(), &dirs, &blobs).map_err(fail)?;
    let tree = repo.find_tree(tree_oid).map_err(fail)?;
    let author = Signature::now(&config.author.name, &config.author.email).map_err(fail)?;
    let committer =
        Signature::now(&config.committer.name, &config.committer.email).map_err(fail)?;
    let parents: Vec<&git2::Commit<'_>> = base_commit.iter().collect();
    repo.commit(None, &author, &committer, &write.message, &tree, &parents)
        .map_err(fail)
}

/// Writes `files` into the folder at `dirs` below `base`, keeping every other entry.
fn insert_files(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    dirs: &[&str],
    files: &[(&str, Oid)],
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(base)?;
    match dirs.split_first() {
        None => {
            for (name, oid) in files {
                builder.insert(name, *oid, 0o100644)?;
            }
        }
        Some((dir, rest)) => {
            let child = match base.and_then(|t| t.get_name(dir)) {
                Some(entry) if entry.kind() == Some(ObjectType::Tree) => {
                    Some(repo.find_tree(entry.id())?)
                }
                _ => None,
            };
            let child_oid = insert_files(repo, child.as_ref(), rest, files)?;
            builder.insert(dir, child_oid, 0o040000)?;
        }
    }
    builder.write()
}

/// Moves the local branch from `base` to `commit`; false when someone else moved it first.
fn move_branch(
    repo: &Repository,
    branch_ref: &str,
    base: Option<Oid>,
    commit: Oid,
) -> Result<bool, CommitError> {
    crate::git_ref::move_ref(repo, branch_ref, commit, base, "orchestrator-api: commit").map_err(
        |source| CommitError::UpdateBranch {
            branch: branch_ref.to_string(),
            source,
        },
    )
}

fn callbacks(config: &WriterConfig) -> git2::RemoteCallbacks<'static> {
    config
        .callbacks
        .as_ref()
        .map(|make| make())
        .unwrap_or_default()
}

fn fetch_branch(repo: &Repository, config: &WriterConfig, remote: &str) -> Result<(), CommitError> {
    let fail = |source| CommitError::Fetch {
        remote: remote.to_string(),
        source,
    };
    let mut handle = repo.find_remote(remote).map_err(fail)?;
    let mut options = git2::FetchOptions::new();
    options.remote_callbacks(callbacks(config));
    let refspec = format!(
        "+refs/heads/{b}:refs/remotes/{remote}/{b}",
        b = config.branch
    );
    handle
        .fetch(&[refspec.as_str()], Some(&mut options), None)
        .map_err(fail)
}

/// Pushes `commit` to the remote's branch; false when the branch no longer points at `base`
/// (someone pushed first).
fn push_commit(
    repo: &Repository,
    config: &WriterConfig,
    remote: &str,
    branch_ref: &str,
    base: Option<Oid>,
    commit: Oid,
) -> Result<bool, CommitError> {
    let fail = |message: String| CommitError::Push {
        remote: remote.to_string(),
        message,
    };
    repo.reference(PUSH_REF, commit, true, "orchestrator-api: push")
        .map_err(|e| fail(e.message().to_string()))?;
    let handle = repo
        .find_remote(remote)
        .map_err(|e| fail(e.message().to_string()))?;
    match handle.url().ok().and_then(local_remote_path) {
        Some(path) => push_local(repo, remote, &path, branch_ref, base, commit),
        None => push_refspec(config, handle, &format!("{PUSH_REF}:{branch_ref}")),
    }
}

/// A remote that is a path on this machine (or `file://`).
fn local_remote_path(url: &str) -> Option<PathBuf> {
    local_repo_path(url).filter(|p| p.exists())
}

/// libgit2's local transport moves the remote's ref without checking that it still holds the
/// value it advertised, so two racing pushers can overwrite each other. For a remote on this
/// machine: copy the new objects into its object database, then move the branch with a
/// compare-and-swap under git's own ref lock, as receive-pack does. No temporary ref is
/// created, so concurrent fetches never see one vanish.
fn push_local(
    repo: &Repository,
    remote_name: &str,
    path: &Path,
    branch_ref: &str,
    base: Option<Oid>,
    commit: Oid,
) -> Result<bool, CommitError> {
    let fail = |e: git2::Error| CommitError::Push {
        remote: remote_name.to_string(),
        message: e.message().to_string(),
    };
    let target = Repository::open(path).map_err(fail)?;
    copy_objects(repo, &target, commit).map_err(fail)?;
    move_branch(&target, branch_ref, base, commit)
}

/// Copies `commit` and the trees and blobs it adds into `target`, descending only into trees
/// `target` lacks (everything under an existing tree is there already).
fn copy_objects(source: &Repository, target: &Repository, commit: Oid) -> Result<(), git2::Error> {
    let (from, to) = (source.odb()?, target.odb()?);
    let copy = |oid: Oid| -> Result<bool, git2::Error> {
        if to.exists(oid) {
            return Ok(false);
        }
        let object = from.read(oid)?;
        to.write(object.kind(), object.data())?;
        Ok(true)
    };
    let mut trees = vec![source.find_commit(commit)?.tree_id()];
    while let Some(tree_id) = trees.pop() {
        if !copy(tree_id)? {
            continue;
        }
        for entry in source.find_tree(tree_id)?.iter() {
            match entry.kind() {
                Some(ObjectType::Tree) => trees.push(entry.id()),
                Some(ObjectType::Blob) => {
                    copy(entry.id())?;
                }
                _ => {}
            }
        }
    }
    // The commit last: its tree is complete by then.
    copy(commit)?;
    Ok(())
}

fn push_refspec(
    config: &WriterConfig,
    mut handle: git2::Remote<'_>,
    refspec: &str,
) -> Result<bool, CommitError> {
    let remote = handle.name().ok().flatten().unwrap_or("origin").to_string();
    let fail = |message: String| CommitError::Push {
        remote: remote.clone(),
        message,
    };
    let rejection: Arc<Mutex<Option<String>>> = Arc::default();
    let mut cbs = callbacks(config);
    let seen = rejection.clone();
    cbs.push_update_reference(move |_refname, status| {
        if let Some(status) = status
            && let Ok(mut slot) = seen.lock()
        {
            *slot = Some(status.to_string());
        }
        Ok(())
    });
    let mut options = git2::PushOptions::new();
    options.remote_callbacks(cbs);
    let pushed = handle.push(&[refspec], Some(&mut options));
    let rejected = rejection.lock().ok().and_then(|mut r| r.take());
    match (pushed, rejected) {
        (Err(e), _) if e.code() == ErrorCode::NotFastForward || e.code() == ErrorCode::Locked => {
            debug!(error = %e.message(), "push lost a race");
            Ok(false)
        }
        (Err(e), _) => Err(fail(crate::source::credentials::git_error_message(&e))),
        (Ok(()), Some(status)) if is_race(&status) => {
            debug!(status = %status, "push lost a race");
            Ok(false)
        }
        (Ok(()), Some(status)) => {
            warn!(remote = %remote, status = %status, "the remote refused the push");
            Err(fail(status))
        }
        (Ok(()), None) => Ok(true),
    }
}

/// Whether a push status from the remote means "fetch first": the branch moved meanwhile.
fn is_race(status: &str) -> bool {
    let s = status.to_ascii_lowercase();
    s.contains("non-fast-forward")
        || s.contains("fetch first")
        || s.contains("failed to update ref")
        || s.contains("failed to lock")
        || s.contains("stale info")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_parse_from_name_and_email() {
        assert_eq!(
            Person::parse("PM Bot <pm@example.com>"),
            Some(Person {
                name: "PM Bot".into(),
                email: "pm@example.com".into()
            })
        );
        for bad in ["PM Bot", "<pm@example.com>", "PM <>", "PM pm@example.com>"] {
            assert_eq!(Person::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn push_races_are_told_apart_from_refusals() {
        assert!(is_race("non-fast-forward"));
        assert!(is_race("[rejected] main -> main (fetch first)"));
        assert!(!is_race("pre-receive hook declined"));
    }
}
