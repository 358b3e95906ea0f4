//! The notes ref between the local repository and its remote: local notes in, the remote's notes
//! merged in and the union pushed out (only the notes ref, never branches), retried on races.

use super::error::NotesError;
use super::store::{Merged, merge_notes, notes_tip};
use crate::git_ref::move_ref;
use git2::{ErrorCode, Oid, PushOptions, RemoteCallbacks, Repository, Signature};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Builds the callbacks (credentials, certificate checks) of one connection to the remote,
/// e.g. `Arc::new(move || source::credentials::remote_callbacks(&creds))`.
pub type CallbacksFactory = Arc<dyn Fn() -> RemoteCallbacks<'static> + Send + Sync>;

/// Where notes are pushed.
#[derive(Clone)]
pub struct NotesRemote {
    /// Any URL git2 can push to: `https://…`, `ssh://…`, `file://…` or a path.
    pub url: String,
    /// `None` for remotes that need no credentials (paths, `file://`).
    pub callbacks: Option<CallbacksFactory>,
}

impl std::fmt::Debug for NotesRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotesRemote")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl NotesRemote {
    fn callbacks(&self) -> RemoteCallbacks<'static> {
        self.callbacks.as_ref().map(|f| f()).unwrap_or_default()
    }
}

/// The local ref that holds the remote's notes as last fetched (outside `refs/notes/` so that
/// `git notes` never mistakes it for a notes ref of its own).
pub fn remote_tracking_ref(notes_ref: &str) -> String {
    format!(
        "refs/orchestrator/remote-notes/{}",
        notes_ref.trim_start_matches("refs/notes/")
    )
}

/// Fetches the remote's `notes_ref`; returns its tip, or `None` when the remote has no notes.
pub fn fetch_remote_notes(
    repo: &Repository,
    remote: &NotesRemote,
    notes_ref: &str,
) -> Result<Option<Oid>, NotesError> {
    let tracking = remote_tracking_ref(notes_ref);
    let fetch_err = |source| NotesError::FetchNotes {
        url: remote.url.clone(),
        notes_ref: notes_ref.to_string(),
        source,
    };
    // Dropped first, so that its absence after the fetch means the remote has no notes.
    if let Ok(mut stale) = repo.find_reference(&tracking) {
        stale.delete().map_err(fetch_err)?;
    }
    let mut git_remote = repo.remote_anonymous(&remote.url).map_err(fetch_err)?;
    let mut options = git2::FetchOptions::new();
    options
        .remote_callbacks(remote.callbacks())
        .download_tags(git2::AutotagOption::None)
        .update_fetchhead(false);
    git_remote
        .fetch(
            &[format!("+{notes_ref}:{tracking}")],
            Some(&mut options),
            None,
        )
        .map_err(fetch_err)?;
    match repo.refname_to_id(&tracking) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(source) => Err(fetch_err(source)),
    }
}

/// Merges the remote's notes (`theirs`) into the local notes ref. Returns whether the two
/// histories had diverged (a merge commit was needed).
pub fn merge_remote_notes(
    repo: &Repository,
    notes_ref: &str,
    signature: &Signature<'_>,
    theirs: Option<Oid>,
    lock: &Mutex<()>,
) -> Result<bool, NotesError> {
    let Some(theirs) = theirs else {
        return Ok(false);
    };
    let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ours = notes_tip(repo, notes_ref)?;
    let merged = match ours {
        None => Merged::FastForward(theirs),
        Some(ours) => merge_notes(repo, notes_ref, signature, ours, theirs)?,
    };
    if Some(merged.tip()) != ours {
        let moved = move_ref(
            repo,
            notes_ref,
            merged.tip(),
            ours,
            "notes: merge remote notes",
        )
        .map_err(|source| NotesError::WriteCommit {
            notes_ref: notes_ref.to_string(),
            source,
        })?;
        if !moved {
            return Err(NotesError::RefRaced {
                notes_ref: notes_ref.to_string(),
            });
        }
    }
    Ok(matches!(merged, Merged::MergeCommit(_)))
}

/// What the remote said to one push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushReply {
    Accepted,
    /// Not a fast-forward: someone pushed notes since our fetch.
    Rejected(String),
}

/// Pushes the local `notes_ref` to the same ref on the remote, without force.
pub fn push_local_notes(
    repo: &Repository,
    remote: &NotesRemote,
    notes_ref: &str,
) -> Result<PushReply, NotesError> {
    let push_err = |source| NotesError::PushNotes {
        url: remote.url.clone(),
        notes_ref: notes_ref.to_string(),
        source,
    };
    let mut git_remote = repo.remote_anonymous(&remote.url).map_err(push_err)?;
    let rejection: Arc<Mutex<Option<String>>> = Arc::default();
    let mut callbacks = remote.callbacks();
    let seen = rejection.clone();
    callbacks.push_update_reference(move |_refname, status| {
        if let Some(status) = status {
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    match git_remote.push(&[format!("{notes_ref}:{notes_ref}")], Some(&mut options)) {
        Ok(()) => {}
        Err(e) if e.code() == ErrorCode::NotFastForward => {
            return Ok(PushReply::Rejected(e.message().to_string()));
        }
        Err(source) => return Err(push_err(source)),
    }
    let rejected = rejection.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(match rejected {
        Some(reason) => PushReply::Rejected(reason),
        None => PushReply::Accepted,
    })
}

/// What one round of [`sync_notes_with_remote`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PushRound {
    /// The remote accepted our notes ref.
    pub pushed: bool,
    /// Merges of diverged histories plus non-fast-forward rejections met on the way.
    pub conflicts: u32,
}

/// Fetch, merge, push; on a non-fast-forward rejection fetch and merge again, up to `attempts`
/// times. Pushes nothing when the remote already has every local note.
pub fn sync_notes_with_remote(
    repo: &Repository,
    remote: &NotesRemote,
    notes_ref: &str,
    signature: &Signature<'_>,
    lock: &Mutex<()>,
    attempts: u32,
) -> Result<PushRound, NotesError> {
    let mut round = PushRound::default();
    for _ in 0..attempts.max(1) {
        let theirs = fetch_remote_notes(repo, remote, notes_ref)?;
        if merge_remote_notes(repo, notes_ref, signature, theirs, lock)? {
            round.conflicts += 1;
        }
        let ours = notes_tip(repo, notes_ref)?;
        if ours.is_none() || ours == theirs {
            return Ok(round);
        }
        match push_local_notes(repo, remote, notes_ref)? {
            PushReply::Accepted => {
                round.pushed = true;
                return Ok(round);
            }
            PushReply::Rejected(reason) => {
                tracing::info!(url = %remote.url, %reason, "notes push rejected; fetching and merging again");
                round.conflicts += 1;
            }
        }
    }
    Err(NotesError::PushRejected {
        url: remote.url.clone(),
        notes_ref: notes_ref.to_string(),
        attempts: attempts.max(1),
    })
}

/// Pure: the wait before the next push attempt after `failures` failed rounds in a row
/// (doubling from `initial`, capped at `max`).
pub fn push_backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs;
        let cases = [
            (1, s(1)),
            (2, s(2)),
            (3, s(4)),
            (6, s(32)),
            (7, s(60)),
            (1000, s(60)),
        ];
        for (failures, want) in cases {
            assert_eq!(push_backoff(failures, s(1), s(60)), want, "{failures}");
        }
    }

    #[test]
    fn tracking_ref_stays_out_of_refs_notes() {
        assert_eq!(
            remote_tracking_ref("refs/notes/orchestrator"),
            "refs/orchestrator/remote-notes/orchestrator"
        );
    }
}
