//! Notes refs in a git2 repository: note texts per commit in, one notes commit out (written,
//! read back, or merged with another notes history).

use super::error::NotesError;
use super::model::Note;
use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use std::collections::BTreeMap;

/// Notes of one notes commit: annotated commit → blob holding the note text.
pub type NotesMap = BTreeMap<Oid, Oid>;

/// The tip of `notes_ref`, if it exists.
pub fn notes_tip(repo: &Repository, notes_ref: &str) -> Result<Option<Oid>, NotesError> {
    match repo.refname_to_id(notes_ref) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(source) => Err(NotesError::ReadRef {
            notes_ref: notes_ref.to_string(),
            source,
        }),
    }
}

/// Every note of a notes commit, whatever fan-out git used to store them.
pub fn notes_map(
    repo: &Repository,
    notes_commit: Oid,
    notes_ref: &str,
) -> Result<NotesMap, NotesError> {
    let read = |source| NotesError::ReadTree {
        notes_ref: notes_ref.to_string(),
        source,
    };
    let tree = repo
        .find_commit(notes_commit)
        .and_then(|c| c.tree())
        .map_err(read)?;
    let mut map = NotesMap::new();
    collect_notes(repo, &tree, String::new(), &mut map).map_err(read)?;
    Ok(map)
}

fn collect_notes(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: String,
    map: &mut NotesMap,
) -> Result<(), git2::Error> {
    for entry in tree.iter() {
        let Ok(name) = entry.name() else { continue };
        let path = format!("{prefix}{name}");
        match entry.kind() {
            Some(ObjectType::Tree) if path.len() < 40 => {
                let sub = repo.find_tree(entry.id())?;
                collect_notes(repo, &sub, path, map)?;
            }
            Some(ObjectType::Blob) if path.len() == 40 => {
                if let Ok(commit) = Oid::from_str(&path) {
                    map.insert(commit, entry.id());
                }
            }
            // Anything else is not a note (git keeps no other files in notes trees).
            _ => {}
        }
    }
    Ok(())
}

/// The note text on `commit`, if it has one.
pub fn read_note_text(
    repo: &Repository,
    notes_ref: &str,
    commit: Oid,
) -> Result<Option<String>, NotesError> {
    let Some(tip) = notes_tip(repo, notes_ref)? else {
        return Ok(None);
    };
    let map = notes_map(repo, tip, notes_ref)?;
    let Some(blob) = map.get(&commit) else {
        return Ok(None);
    };
    let blob = repo
        .find_blob(*blob)
        .map_err(|source| NotesError::ReadTree {
            notes_ref: notes_ref.to_string(),
            source,
        })?;
    Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
}

/// What [`write_notes`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// The new notes commit; `None` when every note already had that text.
    pub commit: Option<Oid>,
    /// How many notes changed.
    pub changed: usize,
}

/// Writes every `(commit, text)` whose note differs into ONE notes commit on `notes_ref`.
pub fn write_notes(
    repo: &Repository,
    notes_ref: &str,
    signature: &Signature<'_>,
    notes: &[(Oid, String)],
) -> Result<Written, NotesError> {
    let write = |source| NotesError::WriteCommit {
        notes_ref: notes_ref.to_string(),
        source,
    };
    // Compare-and-swap on the ref: a concurrent writer makes us re-read and re-apply.
    for _ in 0..5 {
        let tip = notes_tip(repo, notes_ref)?;
        let mut map = match tip {
            Some(tip) => notes_map(repo, tip, notes_ref)?,
            None => NotesMap::new(),
        };
        let mut changed = Vec::new();
        for (commit, text) in notes {
            let blob = repo.blob(text.as_bytes()).map_err(write)?;
            if map.get(commit) != Some(&blob) {
                map.insert(*commit, blob);
                changed.push(commit.to_string());
            }
        }
        if changed.is_empty() {
            return Ok(Written {
                commit: None,
                changed: 0,
            });
        }
        let message = format!("Notes added by orchestrator for {}\n", changed.join(", "));
        let new = commit_notes_tree(
            repo,
            notes_ref,
            signature,
            &map,
            tip.into_iter().collect(),
            &message,
        )?;
        if crate::git_ref::move_ref(repo, notes_ref, new, tip, &message).map_err(write)? {
            return Ok(Written {
                commit: Some(new),
                changed: changed.len(),
            });
        }
    }
    Err(NotesError::RefRaced {
        notes_ref: notes_ref.to_string(),
    })
}

/// Writes `map` as a notes tree and a commit over it with `parents` (not moving any ref).
pub fn commit_notes_tree(
    repo: &Repository,
    notes_ref: &str,
    signature: &Signature<'_>,
    map: &NotesMap,
    parents: Vec<Oid>,
    message: &str,
) -> Result<Oid, NotesError> {
    let write = |source| NotesError::WriteCommit {
        notes_ref: notes_ref.to_string(),
        source,
    };
    // A flat tree of 40-hex names: git and libgit2 read it like a fanned-out one.
    let mut builder = repo.treebuilder(None).map_err(write)?;
    for (commit, blob) in map {
        builder
            .insert(commit.to_string(), *blob, 0o100644)
            .map_err(write)?;
    }
    let tree = builder
        .write()
        .and_then(|t| repo.find_tree(t))
        .map_err(write)?;
    let parents = parents
        .into_iter()
        .map(|p| repo.find_commit(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(write)?;
    let parent_refs: Vec<_> = parents.iter().collect();
    repo.commit(None, signature, signature, message, &tree, &parent_refs)
        .map_err(write)
}

/// Which side's note a merge keeps when both histories annotated the same commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Ours,
    Theirs,
}

/// Pure: the note with the later `syncedAt` wins; ours on a tie or when theirs does not parse.
/// RFC 3339 times in UTC compare correctly as strings.
pub fn keep_on_conflict(ours: &str, theirs: &str) -> Keep {
    match (Note::parse(ours), Note::parse(theirs)) {
        (Ok(o), Ok(t)) if t.synced_at > o.synced_at => Keep::Theirs,
        (Err(_), Ok(_)) => Keep::Theirs,
        _ => Keep::Ours,
    }
}

/// How merging another notes history into ours went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merged {
    /// Theirs had nothing we lacked.
    UpToDate(Oid),
    /// Ours had nothing they lacked: take theirs.
    FastForward(Oid),
    /// Both had notes the other lacked: a merge commit holding the union.
    MergeCommit(Oid),
}

impl Merged {
    pub fn tip(self) -> Oid {
        match self {
            Merged::UpToDate(o) | Merged::FastForward(o) | Merged::MergeCommit(o) => o,
        }
    }
}

/// Merges notes commit `theirs` into `ours`: the union by annotated commit; where both have a
/// different note for the same commit, [`keep_on_conflict`] decides. Moves no ref.
pub fn merge_notes(
    repo: &Repository,
    notes_ref: &str,
    signature: &Signature<'_>,
    ours: Oid,
    theirs: Oid,
) -> Result<Merged, NotesError> {
    let write = |source| NotesError::WriteCommit {
        notes_ref: notes_ref.to_string(),
        source,
    };
    if ours == theirs || repo.graph_descendant_of(ours, theirs).map_err(write)? {
        return Ok(Merged::UpToDate(ours));
    }
    if repo.graph_descendant_of(theirs, ours).map_err(write)? {
        return Ok(Merged::FastForward(theirs));
    }
    let mut map = notes_map(repo, ours, notes_ref)?;
    for (commit, their_blob) in notes_map(repo, theirs, notes_ref)? {
        match map.get(&commit).copied() {
            None => {
                map.insert(commit, their_blob);
            }
            Some(our_blob) if our_blob != their_blob => {
                let text = |blob| {
                    repo.find_blob(blob)
                        .map(|b| String::from_utf8_lossy(b.content()).into_owned())
                        .map_err(write)
                };
                if keep_on_conflict(&text(our_blob)?, &text(their_blob)?) == Keep::Theirs {
                    map.insert(commit, their_blob);
                }
            }
            Some(_) => {}
        }
    }
    let message = format!("Merged notes of {theirs} into {ours}\n");
    let merged = commit_notes_tree(
        repo,
        notes_ref,
        signature,
        &map,
        vec![ours, theirs],
        &message,
    )?;
    Ok(Merged::MergeCommit(merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(synced_at: &str) -> String {
        format!(
            "apiVersion: orchestrator.io/notes/v1\nrevision: main@sha1:{c}\nsyncedAt: {synced_at}\nsync: Synced\nhealth: Healthy\n",
            c = "a".repeat(40)
        )
    }

    #[test]
    fn later_synced_at_wins_and_ours_wins_ties() {
        let cases = [
            (
                note("2026-01-01T00:00:00Z"),
                note("2026-01-01T00:00:01Z"),
                Keep::Theirs,
            ),
            (
                note("2026-01-01T00:00:02Z"),
                note("2026-01-01T00:00:01Z"),
                Keep::Ours,
            ),
            (
                note("2026-01-01T00:00:00Z"),
                note("2026-01-01T00:00:00Z"),
                Keep::Ours,
            ),
            (
                note("2026-01-01T00:00:00Z"),
                "not a note".to_string(),
                Keep::Ours,
            ),
            (
                "not a note".to_string(),
                note("2026-01-01T00:00:00Z"),
                Keep::Theirs,
            ),
            (
                "garbage".to_string(),
                "other garbage".to_string(),
                Keep::Ours,
            ),
        ];
        for (ours, theirs, want) in cases {
            assert_eq!(keep_on_conflict(&ours, &theirs), want, "{ours} vs {theirs}");
        }
    }
}
