//! The agent profiles in use, which follow their source: a new version in, either the profiles
//! swapped (valid) or the problem recorded beside the last good profiles (invalid) out.
//!
//! Three sources feed it (see `crate::cli::agent_sources`): a file reloaded when it changes, a
//! ConfigMap that is watched, or a file in the synced revision. An invalid version never
//! replaces a valid one: it is logged once, and readiness reports it until a valid one arrives.

use super::agents::AgentProfiles;
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

/// Shared by the controller (every reconcile reads the current profiles) and the source that
/// updates them.
#[derive(Clone, Debug)]
pub struct LiveProfiles {
    inner: Arc<RwLock<State>>,
}

#[derive(Debug)]
struct State {
    current: Arc<AgentProfiles>,
    /// Where `current` came from, for logs.
    origin: String,
    /// The newest version's problem, while it is invalid.
    problem: Option<String>,
}

/// What one new version did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Valid and different: now in use.
    Replaced,
    /// Valid and the same as what is in use.
    Unchanged,
    /// Invalid: the last good profiles stay in use.
    Rejected(String),
}

impl LiveProfiles {
    pub fn new(profiles: AgentProfiles, origin: impl Into<String>) -> Self {
        LiveProfiles {
            inner: Arc::new(RwLock::new(State {
                current: Arc::new(profiles),
                origin: origin.into(),
                problem: None,
            })),
        }
    }

    /// The profiles in use.
    pub fn current(&self) -> Arc<AgentProfiles> {
        self.read(|s| s.current.clone())
    }

    pub fn names(&self) -> Vec<String> {
        self.current().names()
    }

    /// The problem of the newest version, while it is invalid.
    pub fn problem(&self) -> Option<String> {
        self.read(|s| s.problem.clone())
    }

    /// Takes a new version (`text` as read from `origin`): valid ones replace the profiles in
    /// use, invalid ones are recorded and logged once per distinct problem.
    pub fn offer(&self, text: &str, origin: &str) -> Update {
        let parsed = AgentProfiles::parse(text, origin);
        let mut state = match self.inner.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        match parsed {
            Ok(profiles) => {
                state.problem = None;
                if *state.current == profiles {
                    return Update::Unchanged;
                }
                info!(origin, agents = ?profiles.names(), "agent profiles reloaded");
                state.current = Arc::new(profiles);
                state.origin = origin.to_string();
                Update::Replaced
            }
            Err(e) => {
                let problem = format!(
                    "{e}; still using the last good agent profiles from {}",
                    state.origin
                );
                if state.problem.as_deref() != Some(problem.as_str()) {
                    warn!(origin, error = %problem, "the new agent profiles are invalid");
                }
                state.problem = Some(problem.clone());
                Update::Rejected(problem)
            }
        }
    }

    /// Records a source that cannot be read at all (a deleted file or ConfigMap).
    pub fn source_failed(&self, problem: String) {
        let mut state = match self.inner.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.problem.as_deref() != Some(problem.as_str()) {
            warn!(error = %problem, "agent profiles: keeping the last good ones");
        }
        state.problem = Some(problem);
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.inner.read() {
            Ok(state) => f(&state),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "agents:\n  claude-code:\n    image: a:1\n";
    const TWO: &str = "agents:\n  claude-code:\n    image: a:1\n  codex:\n    image: b:1\n";

    #[test]
    fn valid_versions_replace_and_invalid_ones_keep_the_last_good() {
        let live = LiveProfiles::new(AgentProfiles::parse(ONE, "f").unwrap(), "f");
        assert_eq!(live.offer(ONE, "f"), Update::Unchanged);
        assert_eq!(live.offer(TWO, "f"), Update::Replaced);
        assert_eq!(live.names(), ["claude-code", "codex"]);
        let Update::Rejected(problem) = live.offer("agents:\n  x:\n    image: ''\n", "f") else {
            panic!("an agent without an image is invalid");
        };
        assert!(problem.contains("agent \"x\" has no image"), "{problem}");
        assert!(problem.contains("still using the last good"), "{problem}");
        assert_eq!(live.names(), ["claude-code", "codex"], "the last good stay");
        assert_eq!(live.problem(), Some(problem));
        assert!(matches!(live.offer("not: [yaml", "f"), Update::Rejected(_)));
        assert_eq!(live.offer(ONE, "f"), Update::Replaced);
        assert_eq!(live.problem(), None);
    }
}
