//! The last status this controller wrote per TaskRun: a TaskRun read from the watch cache and
//! the remembered write in, the status a reconcile should start from out.
//!
//! A reconcile triggered by a Job event can run before the watch delivers the controller's own
//! last status write; starting from the stale status would write (and count) the same status
//! again. resourceVersions are opaque to clients in general, but the embedded server and etcd
//! issue them from one increasing counter: when both parse as integers and the object is older
//! than the write, the write wins. Otherwise the object's own status is used.

use crate::crd::TaskRunStatus;
use std::collections::HashMap;
use std::sync::Mutex;

/// A status written at a resourceVersion.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub resource_version: u64,
    pub status: TaskRunStatus,
}

/// The status to start from. Pure.
pub fn freshest<'a>(
    object_status: Option<&'a TaskRunStatus>,
    object_resource_version: Option<&str>,
    written: Option<&'a Written>,
) -> Option<&'a TaskRunStatus> {
    match (
        written,
        object_resource_version.and_then(|rv| rv.parse::<u64>().ok()),
    ) {
        (Some(w), Some(rv)) if rv < w.resource_version => Some(&w.status),
        _ => object_status,
    }
}

/// Remembered writes by TaskRun uid; an entry goes once the watch has caught up with it.
#[derive(Debug, Default)]
pub struct WrittenStatuses {
    by_uid: Mutex<HashMap<String, Written>>,
}

impl WrittenStatuses {
    /// The remembered write for `uid` while the object is still older than it.
    pub fn pending(&self, uid: &str, object_resource_version: Option<&str>) -> Option<Written> {
        let mut map = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        let w = map.get(uid)?;
        let caught_up = object_resource_version
            .and_then(|rv| rv.parse::<u64>().ok())
            .is_none_or(|rv| rv >= w.resource_version);
        if caught_up {
            map.remove(uid);
            None
        } else {
            Some(w.clone())
        }
    }

    pub fn remember(&self, uid: &str, resource_version: Option<&str>, status: TaskRunStatus) {
        let Some(resource_version) = resource_version.and_then(|rv| rv.parse::<u64>().ok()) else {
            return;
        };
        let mut map = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            uid.to_string(),
            Written {
                resource_version,
                status,
            },
        );
    }

    pub fn forget(&self, uid: &str) {
        let mut map = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(uid);
    }

    pub fn len(&self) -> usize {
        self.by_uid.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaskPhase;

    fn status(phase: TaskPhase) -> TaskRunStatus {
        TaskRunStatus {
            phase: Some(phase),
            ..TaskRunStatus::default()
        }
    }

    #[test]
    fn the_newer_of_object_and_write_wins() {
        let object = status(TaskPhase::Pending);
        let written = Written {
            resource_version: 10,
            status: status(TaskPhase::Running),
        };
        let cases = [
            (Some("9"), Some(&written), Some(TaskPhase::Running)),
            (Some("10"), Some(&written), Some(TaskPhase::Pending)),
            (Some("11"), Some(&written), Some(TaskPhase::Pending)),
            (Some("opaque"), Some(&written), Some(TaskPhase::Pending)),
            (None, Some(&written), Some(TaskPhase::Pending)),
            (Some("9"), None, Some(TaskPhase::Pending)),
        ];
        for (rv, w, want) in cases {
            assert_eq!(
                freshest(Some(&object), rv, w).and_then(|s| s.phase),
                want,
                "{rv:?}"
            );
        }
        assert_eq!(
            freshest(None, Some("3"), Some(&written)),
            Some(&written.status)
        );
    }

    #[test]
    fn an_entry_lives_until_the_watch_catches_up() {
        let w = WrittenStatuses::default();
        w.remember("u", Some("10"), status(TaskPhase::Running));
        w.remember("opaque", Some("x"), status(TaskPhase::Running));
        assert_eq!(w.len(), 1, "an opaque resourceVersion is not remembered");
        assert!(w.pending("u", Some("9")).is_some());
        assert!(w.pending("u", Some("10")).is_none());
        assert!(w.is_empty(), "caught up: forgotten");
        w.remember("u", Some("12"), status(TaskPhase::Succeeded));
        w.forget("u");
        assert!(w.pending("u", Some("1")).is_none());
    }
}
