//! Pure: a commit's note (or its absence) in, the state `status` reports, its exit code and what
//! `wait` should do next out.

use super::model::Note;
use crate::health::{Health, SyncStatus};

/// Exit codes of `orchestrator status` and `orchestrator wait` (documented in the README).
pub mod exit_code {
    /// Synced and Healthy (for `wait --for synced`: Synced).
    pub const OK: i32 = 0;
    /// The command failed: repository, revision or note unreadable.
    pub const ERROR: i32 = 1;
    /// Bad command-line arguments (clap's code).
    pub const USAGE: i32 = 2;
    /// The commit has no note yet: not synced yet, or notes not pushed/fetched.
    pub const NO_NOTE: i32 = 3;
    pub const OUT_OF_SYNC: i32 = 4;
    pub const SYNC_UNKNOWN: i32 = 5;
    /// Synced; some task Pending or Running.
    pub const PROGRESSING: i32 = 6;
    /// Synced; some task Failed.
    pub const DEGRADED: i32 = 7;
    /// Synced; some task has no TaskRun or no status for this contextVersion yet.
    pub const MISSING: i32 = 8;
    /// `wait` only: a newer revision superseded this one before it reached the wanted state, or
    /// the sync skipped it (no note of its own, a newer commit's note exists).
    pub const SUPERSEDED: i32 = 9;
}

/// What a commit's note says, reduced to one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    NoNote,
    /// The sync did not reach Synced; health is secondary then.
    Sync(SyncStatus),
    /// Synced; how the tasks are doing.
    Health(Health),
}

impl State {
    /// Sync status first (a cluster that does not hold the commit makes health moot), then health.
    pub fn of(note: Option<&Note>) -> State {
        match note {
            None => State::NoNote,
            Some(n) if n.sync != SyncStatus::Synced => State::Sync(n.sync),
            Some(n) => State::Health(n.health),
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            State::NoNote => exit_code::NO_NOTE,
            State::Sync(SyncStatus::OutOfSync) => exit_code::OUT_OF_SYNC,
            State::Sync(SyncStatus::Unknown) => exit_code::SYNC_UNKNOWN,
            State::Sync(SyncStatus::Synced) | State::Health(Health::Healthy) => exit_code::OK,
            State::Health(Health::Progressing) => exit_code::PROGRESSING,
            State::Health(Health::Degraded) => exit_code::DEGRADED,
            State::Health(Health::Missing) => exit_code::MISSING,
        }
    }

    pub fn describe(self) -> String {
        match self {
            State::NoNote => "no note yet".to_string(),
            State::Sync(s) => s.to_string(),
            State::Health(h) => format!("Synced, {h}"),
        }
    }
}

/// What `wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The cluster holds the commit (tasks may still run).
    Synced,
    /// Synced and every task Succeeded.
    Healthy,
}

/// What `wait` does after one look at the note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStep {
    Reached,
    KeepWaiting,
    /// The wanted state can no longer come: exit with this code now.
    GiveUp(i32),
}

/// Pure: reached, keep polling, or give up (a Failed task, superseded before reaching it, or
/// skipped: no note while a newer commit of the branch has one, so none will come).
pub fn wait_step(note: Option<&Note>, skipped: bool, target: Target) -> WaitStep {
    let Some(note) = note else {
        return if skipped {
            WaitStep::GiveUp(exit_code::SUPERSEDED)
        } else {
            WaitStep::KeepWaiting
        };
    };
    let synced = note.sync == SyncStatus::Synced;
    let reached = match target {
        Target::Synced => synced,
        Target::Healthy => synced && note.health == Health::Healthy,
    };
    if reached {
        return WaitStep::Reached;
    }
    if note.superseded_by.is_some() {
        return WaitStep::GiveUp(exit_code::SUPERSEDED);
    }
    if target == Target::Healthy && synced && note.health == Health::Degraded {
        return WaitStep::GiveUp(exit_code::DEGRADED);
    }
    WaitStep::KeepWaiting
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes::model::{NOTE_API_VERSION, NoteCounts};

    fn note(sync: SyncStatus, health: Health, superseded: bool) -> Note {
        Note {
            api_version: NOTE_API_VERSION.into(),
            revision: "main@sha1:x".into(),
            synced_at: "t".into(),
            sync,
            health,
            health_reason: None,
            superseded_by: superseded.then(|| "main@sha1:y".into()),
            counts: NoteCounts::default(),
            tasks: vec![],
            errors: vec![],
        }
    }

    #[test]
    fn exit_codes_are_distinct_per_state() {
        use Health::*;
        use SyncStatus::*;
        let cases = [
            (None, 3),
            (Some(note(Synced, Healthy, false)), 0),
            (Some(note(Synced, Progressing, false)), 6),
            (Some(note(Synced, Degraded, false)), 7),
            (Some(note(Synced, Missing, false)), 8),
            (Some(note(OutOfSync, Degraded, false)), 4),
            (Some(note(Unknown, Healthy, false)), 5),
            (Some(note(Synced, Healthy, true)), 0),
        ];
        for (n, want) in cases {
            assert_eq!(State::of(n.as_ref()).exit_code(), want, "{n:?}");
        }
    }

    #[test]
    fn wait_steps() {
        use Health::*;
        use SyncStatus::*;
        use Target as T;
        use WaitStep::*;
        let cases = [
            (None, T::Healthy, KeepWaiting),
            (Some(note(Synced, Healthy, false)), T::Healthy, Reached),
            (
                Some(note(Synced, Progressing, false)),
                T::Healthy,
                KeepWaiting,
            ),
            (Some(note(Synced, Progressing, false)), T::Synced, Reached),
            (Some(note(Synced, Degraded, false)), T::Healthy, GiveUp(7)),
            (Some(note(Synced, Degraded, false)), T::Synced, Reached),
            (
                Some(note(OutOfSync, Missing, false)),
                T::Synced,
                KeepWaiting,
            ),
            (Some(note(OutOfSync, Missing, true)), T::Synced, GiveUp(9)),
            (Some(note(Synced, Progressing, true)), T::Healthy, GiveUp(9)),
            (Some(note(Synced, Healthy, true)), T::Healthy, Reached),
            (Some(note(Synced, Missing, false)), T::Healthy, KeepWaiting),
        ];
        for (n, target, want) in cases {
            assert_eq!(
                wait_step(n.as_ref(), false, target),
                want,
                "{n:?} {target:?}"
            );
        }
        // Skipped: no note of its own, a newer commit's note exists. A note of its own wins.
        let skipped = [
            (None, T::Healthy, GiveUp(9)),
            (None, T::Synced, GiveUp(9)),
            (Some(note(Synced, Healthy, false)), T::Healthy, Reached),
            (
                Some(note(Synced, Progressing, false)),
                T::Healthy,
                KeepWaiting,
            ),
        ];
        for (n, target, want) in skipped {
            assert_eq!(
                wait_step(n.as_ref(), true, target),
                want,
                "{n:?} {target:?}"
            );
        }
    }
}
