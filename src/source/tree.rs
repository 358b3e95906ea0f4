//! Reading one commit's task folders straight from the git object database (no checkout):
//! repository, commit and path in, `SourceSnapshot` out. Folders are parsed once per git tree id
//! ([`DigestCache`]); misses are parsed on several threads.

use super::error::SourceError;
use super::folder::{ContentError, EntryKind, ParsedFolder, RawEntry, is_hidden, parse_folder};
use super::layout::{ParsedEntry, TopKind, TopLevel, assemble, classify_entry, normalize_path};
use super::markdown::{BlobReader, TaskFile};
use super::snapshot::{FolderContent, Revision, SourceSnapshot};
use git2::{Oid, Repository, Tree};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Parsed folders (content, digest or errors) by git tree id. A folder whose tree id did not
/// change is never read or hashed again. Entries not used by the latest read are dropped, so the
/// cache holds at most one revision's folders.
///
/// It also remembers the last snapshot, so [`read_snapshot_shared`] of the same commit, branch
/// and path hands that snapshot back without reading or copying anything.
///
/// Markdown is hashed as it is read and its text left in the repository
/// ([`super::markdown::TaskFile`]), to be read again when a TaskRun is written: the repository
/// must outlive the snapshots. A reader of a repository that goes away first (a temporary clone)
/// keeps the text: [`Self::holding_text`].
#[derive(Default)]
pub struct DigestCache {
    /// Valid folders' content by git tree id: the record every snapshot's `TaskFolder` shares.
    folders: HashMap<Oid, Arc<FolderContent>>,
    /// What is wrong with each folder that did not parse, by git tree id.
    broken: HashMap<Oid, Vec<ContentError>>,
    /// Service, agent and markdown file names, one allocation each for every folder that names
    /// them.
    names: std::collections::HashSet<Arc<str>>,
    last: Option<Arc<SourceSnapshot>>,
    hold_text: bool,
    /// The reader of the repository read last (markdown files point at it).
    blobs: Option<Arc<BlobReader>>,
    hits: u64,
    misses: u64,
}

impl DigestCache {
    /// Markdown left in the repository, read again when it is written.
    pub fn new() -> Self {
        Self::default()
    }

    /// Markdown text held in memory, for a repository that may be gone before it is written.
    pub fn holding_text() -> Self {
        DigestCache {
            hold_text: true,
            ..Self::default()
        }
    }

    /// The blob reader of `repo`: the last one while the repository is the same.
    fn blob_reader(&mut self, repo: &Repository) -> Option<Arc<BlobReader>> {
        if self.hold_text {
            return None;
        }
        match &self.blobs {
            Some(reader) if reader.git_dir() == repo.path() => {}
            _ => self.blobs = Some(BlobReader::new(repo.path())),
        }
        self.blobs.clone()
    }

    /// (folders served from the cache, folders read and hashed) since the cache was made.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    pub fn len(&self) -> usize {
        self.folders.len() + self.broken.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn holds(&self, id: &Oid) -> bool {
        self.folders.contains_key(id) || self.broken.contains_key(id)
    }

    fn parsed(&self, id: &Oid) -> Option<Result<&Arc<FolderContent>, &[ContentError]>> {
        match self.folders.get(id) {
            Some(content) => Some(Ok(content)),
            None => self.broken.get(id).map(|errors| Err(errors.as_slice())),
        }
    }
}

/// The one `Arc` of `name` in `names`.
fn intern(names: &mut std::collections::HashSet<Arc<str>>, name: &Arc<str>) -> Arc<str> {
    match names.get(name) {
        Some(shared) => shared.clone(),
        None => {
            names.insert(name.clone());
            name.clone()
        }
    }
}

const MODE_TREE: i32 = 0o040000;
const MODE_LINK: i32 = 0o120000;
const MODE_COMMIT: i32 = 0o160000;

/// Below this many folders to parse, threads cost more than they save.
const PARALLEL_THRESHOLD: usize = 64;

/// [`read_snapshot`], shared: the same `Arc` again when `commit`, `branch` and `path` are those
/// of the previous call with this cache (a re-plan of an unchanged revision costs nothing).
pub fn read_snapshot_shared(
    repo: &Repository,
    commit: Oid,
    branch: &str,
    path: &str,
    cache: &mut DigestCache,
) -> Result<Arc<SourceSnapshot>, SourceError> {
    let path = normalize_path(path);
    if let Some(last) = &cache.last
        && last.revision.commit == commit.to_string()
        && last.revision.branch == branch
        && last.path == path
    {
        cache.hits += cache.len() as u64;
        return Ok(last.clone());
    }
    let snapshot = Arc::new(read_snapshot(repo, commit, branch, &path, cache)?);
    cache.last = Some(snapshot.clone());
    Ok(snapshot)
}

/// The snapshot of `path` at `commit`. `branch` is only used to name the revision.
pub fn read_snapshot(
    repo: &Repository,
    commit: Oid,
    branch: &str,
    path: &str,
    cache: &mut DigestCache,
) -> Result<SourceSnapshot, SourceError> {
    skip_hash_verification();
    let path = normalize_path(path);
    let revision = Revision {
        branch: branch.to_string(),
        commit: commit.to_string(),
    };
    let tasks_tree = tasks_tree(repo, commit, &path, &revision)?;

    let mut candidates = Vec::new();
    let mut broken = Vec::new();
    for entry in tasks_tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let kind = match entry.filemode() {
            MODE_TREE => TopKind::Dir,
            MODE_LINK => TopKind::Symlink,
            MODE_COMMIT => TopKind::Submodule,
            _ => TopKind::File,
        };
        match classify_entry(&path, &name, kind) {
            TopLevel::Ignored => {}
            TopLevel::Broken(error) => broken.push(error),
            TopLevel::TaskFolder { task_id } => candidates.push((name, task_id, entry.id())),
        }
    }

    let mut missing: Vec<Oid> = candidates
        .iter()
        .map(|(_, _, id)| *id)
        .filter(|id| !cache.holds(id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let blobs = cache.blob_reader(repo);
    let parsed = parse_trees(repo, &missing, blobs.as_ref())?;
    cache.misses += parsed.len() as u64;
    cache.hits += (candidates.len() - parsed.len()) as u64;
    // Keep exactly the folders of this revision: those just parsed, then the cached ones.
    cache.last = None;
    let mut folders = HashMap::with_capacity(candidates.len());
    let mut broken_folders = HashMap::new();
    for (id, parsed) in parsed {
        match parsed {
            Ok(mut content) => {
                // Just parsed, so not shared yet: no copy.
                let names = &mut cache.names;
                let content_mut = Arc::make_mut(&mut content);
                content_mut.service_name = intern(names, &content_mut.service_name);
                content_mut.agent_name = intern(names, &content_mut.agent_name);
                each_file(&mut content_mut.markdown_files, |file| {
                    file.filename = intern(names, &file.filename)
                });
                folders.insert(id, content);
            }
            Err(errors) => {
                broken_folders.insert(id, errors);
            }
        }
    }
    for (_, _, id) in &candidates {
        if let Some(content) = cache.folders.get(id) {
            folders.entry(*id).or_insert_with(|| content.clone());
        } else if let Some(errors) = cache.broken.get(id) {
            broken_folders.entry(*id).or_insert_with(|| errors.clone());
        }
    }
    cache.folders = folders;
    cache.broken = broken_folders;
    // Names no kept folder uses any more go with them.
    cache.names.retain(|name| Arc::strong_count(name) > 1);

    let folders = candidates
        .into_iter()
        .filter_map(|(name, task_id, id)| {
            cache.parsed(&id).map(|parsed| ParsedEntry {
                name,
                task_id,
                parsed,
            })
        })
        .collect();
    let mut snapshot = assemble(revision, &path, folders, broken);
    snapshot.committed_at = repo.find_commit(commit).ok().map(|c| c.time().seconds());
    Ok(snapshot)
}

/// libgit2 re-hashes every object it reads (SHA-1 with collision detection) unless told not to;
/// git itself does not on reads. Objects come from our own mirror, which fetch already verified,
/// and the re-hash costs as much as the content digest itself. Process-wide, set once.
fn skip_hash_verification() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| git2::opts::strict_hash_verification(false));
}

fn tasks_tree<'r>(
    repo: &'r Repository,
    commit: Oid,
    path: &str,
    revision: &Revision,
) -> Result<Tree<'r>, SourceError> {
    let read = |what: String| move |source| SourceError::ReadObject { what, source };
    let root = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(read(format!("commit {commit}")))?;
    if path.is_empty() {
        return Ok(root);
    }
    if path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") {
        // libgit2 reports such a path as an odd error, which would read as a broken mirror.
        return Err(SourceError::PathOutsideRepository {
            path: path.to_string(),
        });
    }
    let entry = root.get_path(Path::new(path)).map_err(|e| match e.code() {
        git2::ErrorCode::NotFound => SourceError::PathNotFound {
            path: path.to_string(),
            revision: revision.to_string(),
        },
        _ => SourceError::ReadObject {
            what: format!("path {path} at {revision}"),
            source: e,
        },
    })?;
    if entry.filemode() != MODE_TREE {
        return Err(SourceError::PathNotAFolder {
            path: path.to_string(),
            revision: revision.to_string(),
        });
    }
    repo.find_tree(entry.id())
        .map_err(read(format!("tree {} ({path})", entry.id())))
}

/// Parses the folders `ids` name, on several threads when there are many. Each thread opens its
/// own handle on the repository (git2 handles are not shareable between threads).
fn parse_trees(
    repo: &Repository,
    ids: &[Oid],
    blobs: Option<&Arc<BlobReader>>,
) -> Result<Vec<(Oid, ParsedFolder)>, SourceError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16);
    if ids.len() < PARALLEL_THRESHOLD || threads < 2 {
        return ids
            .iter()
            .map(|id| Ok((*id, read_folder_tree(repo, *id, blobs)?)))
            .collect();
    }
    let git_dir = repo.path();
    let chunk = ids.len().div_ceil(threads);
    let results: Vec<Result<Vec<(Oid, ParsedFolder)>, SourceError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let repo = Repository::open(git_dir).map_err(|source| {
                        SourceError::OpenRepository {
                            path: git_dir.to_path_buf(),
                            source,
                        }
                    })?;
                    part.iter()
                        .map(|id| Ok((*id, read_folder_tree(&repo, *id, blobs)?)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(SourceError::Worker(
                        "a folder-reading thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(ids.len());
    for part in results {
        out.extend(part?);
    }
    Ok(out)
}

/// One task folder's tree: its entries, with the bytes of the files the parser needs. With
/// `blobs`, the parsed markdown files keep their blob ids instead of their text.
fn read_folder_tree(
    repo: &Repository,
    id: Oid,
    blobs: Option<&Arc<BlobReader>>,
) -> Result<ParsedFolder, SourceError> {
    let what = |what: &str, oid: Oid| {
        let what = format!("{what} {oid}");
        move |source| SourceError::ReadObject { what, source }
    };
    let tree = repo.find_tree(id).map_err(what("tree", id))?;
    let odb = repo.odb().map_err(what("object database for tree", id))?;
    let mut entries = Vec::with_capacity(tree.len());
    let mut blob_ids: Vec<(String, Oid)> = Vec::new();
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        if is_hidden(&name) {
            continue;
        }
        let kind = match entry.filemode() {
            MODE_TREE => EntryKind::Dir,
            MODE_LINK => EntryKind::Symlink,
            MODE_COMMIT => EntryKind::Submodule,
            _ if super::folder::wants_content(&name, 0) => {
                // The size from the object header first: a file over the limit is reported
                // without being inflated into memory.
                let (size, _) = odb
                    .read_header(entry.id())
                    .map_err(what("blob", entry.id()))?;
                let size = size as u64;
                let content = if super::folder::wants_content(&name, size) {
                    let blob = repo
                        .find_blob(entry.id())
                        .map_err(what("blob", entry.id()))?;
                    blob_ids.push((name.clone(), entry.id()));
                    Some(blob.content().to_vec())
                } else {
                    None
                };
                EntryKind::File { size, content }
            }
            // Not task.yaml or markdown: an error whatever its size, so its bytes are not read.
            _ => EntryKind::File {
                size: 0,
                content: None,
            },
        };
        entries.push(RawEntry { name, kind });
    }
    let mut parsed = parse_folder(entries);
    if let (Some(blobs), Ok(content)) = (blobs, &mut parsed) {
        let content = Arc::make_mut(content);
        each_file(&mut content.markdown_files, |file| {
            if let Some((_, blob)) = blob_ids.iter().find(|(name, _)| **name == *file.filename) {
                *file = file.clone().in_repository(*blob, blobs);
            }
        });
    }
    Ok(parsed)
}

/// Rewrites each file of a folder just parsed: in place, as its list is not shared yet.
fn each_file(files: &mut Arc<[TaskFile]>, mut rewrite: impl FnMut(&mut TaskFile)) {
    match Arc::get_mut(files) {
        Some(files) => files.iter_mut().for_each(rewrite),
        None => {
            *files = files
                .iter()
                .map(|file| {
                    let mut file = file.clone();
                    rewrite(&mut file);
                    file
                })
                .collect()
        }
    }
}
