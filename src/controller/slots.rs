//! Which Jobs hold a queue slot, as the Job watch shows them: each Job event in (its uid and
//! whether it holds a slot now), "a slot was freed" out. When one is, the controller asks at
//! once for the reconcile of the TaskRuns that may start, instead of waiting for the finished
//! TaskRun's own reconcile (a debounce and a status write later) to do it.
//!
//! Only a change counts: a Job that was seen holding a slot and no longer does (finished,
//! suspended, deleted). A Job first seen finished (the initial listing of a namespace full of
//! finished Jobs) frees nothing, so a restart does not compute the queue once per old Job. The
//! set holds the uids of the Jobs running now, no more.

use super::caches::CachedJob;
use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct Slots(Mutex<HashSet<String>>);

impl Slots {
    /// Records whether the Job `uid` holds a slot now; true when it held one before and no
    /// longer does.
    pub fn freed(&self, uid: &str, holds_now: bool) -> bool {
        let mut holding = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if holds_now {
            holding.insert(uid.to_string());
            false
        } else {
            holding.remove(uid)
        }
    }

    /// Jobs holding a slot.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `cached` (the Job as the cache holds it after the event; `None` once deleted) holds a
/// queue slot: not finished and not suspended.
pub fn holds_slot(cached: Option<&CachedJob>) -> bool {
    cached.is_some_and(CachedJob::holds_slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value, suspend: bool) -> CachedJob {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "uid": "u"},
            "spec": {"suspend": suspend, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_slot_is_freed_only_by_a_job_that_held_one() {
        let running = job(json!({"active": 1}), false);
        let done = job(
            json!({"conditions": [{"type": "Complete", "status": "True"}]}),
            false,
        );
        let suspended = job(json!({}), true);
        assert!(holds_slot(Some(&running)));
        assert!(!holds_slot(Some(&done)));
        assert!(!holds_slot(Some(&suspended)));
        assert!(!holds_slot(None));

        // (event, holds a slot now, freed)
        let steps = [
            ("listed finished at start", "old", false, false),
            ("created", "a", true, false),
            ("a status update while running", "a", true, false),
            ("finished", "a", false, true),
            ("an update after the end", "a", false, false),
            ("another created", "b", true, false),
            ("suspended", "b", false, true),
            ("resumed", "b", true, false),
            ("deleted (cancel)", "b", false, true),
        ];
        let slots = Slots::default();
        for (what, uid, holds, freed) in steps {
            assert_eq!(slots.freed(uid, holds), freed, "{what}");
        }
        assert!(slots.is_empty());
    }
}
