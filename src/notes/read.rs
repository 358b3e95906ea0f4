//! Reading notes back: a repository (local path or remote URL) and a revision in, the commit and
//! its note (if any) out. What `orchestrator status` and `orchestrator wait` use.

use super::error::NotesError;
use super::model::{NOTES_REF, Note};
use super::push::{NotesRemote, fetch_remote_notes};
use super::store::notes_map;
use crate::source::mirror::{Mirror, MirrorFailure, local_repo_path};
use crate::source::{Credentials, remote_callbacks, resolve_revision};
use git2::{Oid, Repository};
use std::path::PathBuf;
use std::sync::Arc;

/// Which note to read.
#[derive(Clone, Debug)]
pub struct NoteQuery {
    /// A local path (the notes ref is read as it is) or a URL (branches and the notes ref are
    /// fetched into a cached mirror first).
    pub repo: String,
    /// Branch whose head is read when `revision` is not given (default: HEAD / the remote's
    /// default branch).
    pub branch: Option<String>,
    /// Commit, branch, tag or `<branch>@sha1:<commit>`.
    pub revision: Option<String>,
    pub credentials: Credentials,
    pub notes_ref: String,
    /// Where remote mirrors are kept between runs.
    pub mirror_root: PathBuf,
}

impl NoteQuery {
    pub fn new(repo: impl Into<String>) -> NoteQuery {
        NoteQuery {
            repo: repo.into(),
            branch: None,
            revision: None,
            credentials: Credentials::none(),
            notes_ref: NOTES_REF.to_string(),
            mirror_root: std::env::temp_dir().join("orchestrator-status-mirrors"),
        }
    }
}

/// A resolved commit and what its note says.
#[derive(Clone, Debug)]
pub struct NoteLookup {
    pub commit: Oid,
    /// `<branch>@sha1:<commit>` as resolved (the note's own revision string when it has one).
    pub revision: String,
    pub note: Option<Note>,
    /// When the commit has no note but a newer commit on the branch has one: that commit's
    /// revision. The sync skipped this commit (commits came faster than a sync) and will not come
    /// back to it.
    pub skipped_for: Option<String>,
}

/// How many commits after the wanted one a lookup walks to find a newer note.
const NEWER_NOTE_WALK_LIMIT: usize = 10_000;

/// Resolves the revision and reads its note.
pub fn read_note(query: &NoteQuery) -> Result<NoteLookup, NotesError> {
    match local_repo_path(&query.repo) {
        Some(path) => {
            // Like git itself: any directory inside the work tree will do.
            let repo =
                Repository::discover(&path).map_err(|source| NotesError::OpenRepository {
                    path: path.display().to_string(),
                    source,
                })?;
            let (commit, label) = resolve(&repo, query)?;
            let tip = super::store::notes_tip(&repo, &query.notes_ref)?;
            // The branch the sync follows: where a newer, noted commit would be.
            let head = resolve_revision(&repo, query.branch.as_deref())
                .ok()
                .map(|(oid, _)| oid);
            lookup(&repo, &query.notes_ref, tip, commit, &label, head)
        }
        None => {
            let mirror = Mirror::new(&query.repo, &query.mirror_root, query.credentials.clone());
            let branch = query.branch.clone().unwrap_or_else(|| "HEAD".to_string());
            let (repo, head, head_label) = mirror.fetch(&branch).map_err(|e| match e {
                MirrorFailure::Fetch(message) => NotesError::FetchRepository {
                    url: mirror.display_url(),
                    message,
                },
                MirrorFailure::Source(e) => NotesError::FetchRepository {
                    url: mirror.display_url(),
                    message: e.to_string(),
                },
            })?;
            let (commit, label) = match &query.revision {
                None => (head, head_label),
                Some(_) => resolve(&repo, query)?,
            };
            let credentials = query.credentials.clone();
            let remote = NotesRemote {
                url: query.repo.clone(),
                callbacks: Some(Arc::new(move || remote_callbacks(&credentials))),
            };
            let tip = fetch_remote_notes(&repo, &remote, &query.notes_ref)?;
            lookup(&repo, &query.notes_ref, tip, commit, &label, Some(head))
        }
    }
}

fn resolve(repo: &Repository, query: &NoteQuery) -> Result<(Oid, String), NotesError> {
    let wanted = query.revision.as_deref().or(query.branch.as_deref());
    resolve_revision(repo, wanted).or_else(|e| {
        // A full commit id needs no commit object: notes are keyed by id alone, so a CI job can
        // ask about a commit its clone of the notes never saw.
        match wanted.filter(|w| w.len() == 40).map(Oid::from_str) {
            Some(Ok(commit)) => Ok((commit, commit.to_string())),
            _ => Err(NotesError::ResolveRevision {
                repo: query.repo.clone(),
                message: e.to_string(),
            }),
        }
    })
}

fn lookup(
    repo: &Repository,
    notes_ref: &str,
    notes_tip: Option<Oid>,
    commit: Oid,
    label: &str,
    branch_head: Option<Oid>,
) -> Result<NoteLookup, NotesError> {
    let hex = commit.to_string();
    let revision = if hex.starts_with(label) {
        format!("sha1:{hex}")
    } else {
        format!("{}@sha1:{hex}", label.trim_start_matches("refs/heads/"))
    };
    let Some(tip) = notes_tip else {
        return Ok(NoteLookup {
            commit,
            revision,
            note: None,
            skipped_for: None,
        });
    };
    let notes = notes_map(repo, tip, notes_ref)?;
    let text = match notes.get(&commit) {
        Some(blob) => Some(
            repo.find_blob(*blob)
                .map(|b| String::from_utf8_lossy(b.content()).into_owned())
                .map_err(|source| NotesError::ReadTree {
                    notes_ref: notes_ref.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let note = text
        .map(|t| Note::parse(&t))
        .transpose()
        .map_err(|source| NotesError::ParseNote {
            commit: hex,
            source,
        })?;
    let revision = note
        .as_ref()
        .map(|n| n.revision.clone())
        .unwrap_or(revision);
    let skipped_for = match (&note, branch_head) {
        (None, Some(head)) => newer_noted_commit(repo, &notes, commit, head).map(|newer| {
            lookup_revision(repo, &notes, newer).unwrap_or_else(|| format!("sha1:{newer}"))
        }),
        _ => None,
    };
    Ok(NoteLookup {
        commit,
        revision,
        note,
        skipped_for,
    })
}

/// The newest commit between `commit` (excluded) and `head` that descends from `commit` and has
/// a note: proof that the sync went past `commit`. Walks at most [`NEWER_NOTE_WALK_LIMIT`]
/// commits; `None` when `commit` is not behind `head` or nothing newer has a note.
fn newer_noted_commit(
    repo: &Repository,
    notes: &super::store::NotesMap,
    commit: Oid,
    head: Oid,
) -> Option<Oid> {
    if head == commit || !repo.graph_descendant_of(head, commit).unwrap_or(false) {
        return None;
    }
    let mut walk = repo.revwalk().ok()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
        .ok()?;
    walk.push(head).ok()?;
    walk.hide(commit).ok()?;
    walk.take(NEWER_NOTE_WALK_LIMIT)
        .filter_map(Result::ok)
        .find(|oid| {
            notes.contains_key(oid) && repo.graph_descendant_of(*oid, commit).unwrap_or(false)
        })
}

/// The revision string a commit's note gives itself, if it can be read.
fn lookup_revision(
    repo: &Repository,
    notes: &super::store::NotesMap,
    commit: Oid,
) -> Option<String> {
    let blob = repo.find_blob(*notes.get(&commit)?).ok()?;
    let note = Note::parse(&String::from_utf8_lossy(blob.content())).ok()?;
    Some(note.revision)
}
