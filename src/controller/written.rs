//! What this controller wrote that its watches may not show yet: the last status per TaskRun
//! (a TaskRun read from the watch cache and the remembered write in, the status a reconcile
//! should start from out), and the children it created ([`Created`]: a child's name and
//! whether the cache shows it in, the child as created out).
//!
//! A reconcile triggered by a Job event can run before the watch delivers the controller's own
//! last status write; starting from the stale status would write (and count) the same status
//! again. resourceVersions are opaque to clients in general, but the embedded server and etcd
//! issue them from one increasing counter: when both parse as integers and the object is older
//! than the write, the write wins. Otherwise the object's own status is used.

use crate::crd::TaskRunStatus;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a created child is remembered when the cache never shows it (it was deleted before
/// the watch saw it).
pub const REMEMBER_CREATED: Duration = Duration::from_secs(60);

/// Children (Jobs, ConfigMaps) this controller created a moment ago, by `namespace/name`, until
/// the cache shows them: a reconcile triggered by another child's event must not create one
/// again (a second create would answer 409 and cost a write and a read). Entries go when a
/// lookup finds the cache caught up, or after [`REMEMBER_CREATED`]; expiry costs nothing per
/// entry still young, so remembering stays O(1) however many TaskRuns are in flight.
pub struct Created<K> {
    inner: Mutex<CreatedInner<K>>,
}

struct CreatedInner<K> {
    by_key: HashMap<String, (Instant, Arc<K>)>,
    /// Keys in the order they were remembered, with when.
    order: VecDeque<(Instant, String)>,
}

impl<K> Default for Created<K> {
    fn default() -> Self {
        Created {
            inner: Mutex::new(CreatedInner {
                by_key: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }
}

impl<K> CreatedInner<K> {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front()
            && now.saturating_duration_since(*at) >= REMEMBER_CREATED
        {
            let Some((at, key)) = self.order.pop_front() else {
                break;
            };
            // A key remembered again later keeps its newer entry.
            if self.by_key.get(&key).is_some_and(|(t, _)| *t == at) {
                self.by_key.remove(&key);
            }
        }
    }
}

impl<K> Created<K> {
    /// Remembers `obj`, created under `key` at `now`.
    pub fn remember(&self, key: String, obj: Arc<K>, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        inner.order.push_back((now, key.clone()));
        inner.by_key.insert(key, (now, obj));
    }

    /// The child created under `key`, or `None`; forgets it once the cache shows it (`cached`).
    pub fn get(&self, key: &str, cached: bool, now: Instant) -> Option<Arc<K>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        if cached {
            inner.by_key.remove(key);
            return None;
        }
        inner.by_key.get(key).map(|(_, obj)| obj.clone())
    }

    /// The child as the cache shows it (`cached`), or else as remembered. A child the cache
    /// shows is forgotten here, so a remembered child lives only until the first lookup after
    /// the watch delivered it, not for [`REMEMBER_CREATED`].
    pub fn known(&self, key: &str, cached: Option<Arc<K>>, now: Instant) -> Option<Arc<K>> {
        let remembered = self.get(key, cached.is_some(), now);
        cached.or(remembered)
    }

    /// Children remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .len()
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

    #[test]
    fn a_created_child_is_known_until_the_cache_shows_it_or_it_expires() {
        let t0 = Instant::now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        let created: Created<&str> = Created::default();
        created.remember("ns/a".into(), Arc::new("a"), t0);
        created.remember("ns/b".into(), Arc::new("b"), later(30));
        // (key, cached, at second, expected)
        let cases = [
            ("ns/a", false, 1, Some("a")),
            ("ns/x", false, 1, None),
            ("ns/a", true, 2, None),
            ("ns/a", false, 3, None),
            ("ns/b", false, 59, Some("b")),
            ("ns/b", false, 89, Some("b")),
            ("ns/b", false, 90, None),
        ];
        for (key, cached, at, want) in cases {
            assert_eq!(
                created.get(key, cached, later(at)).as_deref().copied(),
                want,
                "{key} cached={cached} at {at}s"
            );
        }
        assert!(created.is_empty(), "expired entries are gone");
        // Remembered again: the newer entry outlives the older one's expiry.
        created.remember("ns/c".into(), Arc::new("c1"), t0);
        created.remember("ns/c".into(), Arc::new("c2"), later(50));
        assert_eq!(
            created.get("ns/c", false, later(70)).as_deref(),
            Some(&"c2")
        );
        assert_eq!(created.len(), 1);
    }

    #[test]
    fn a_lookup_that_finds_the_child_cached_forgets_the_remembered_one() {
        let t0 = Instant::now();
        let created: Created<&str> = Created::default();
        created.remember("ns/a".into(), Arc::new("created"), t0);
        // Not in the cache yet: the remembered child, kept.
        assert_eq!(created.known("ns/a", None, t0).as_deref(), Some(&"created"));
        assert_eq!(created.len(), 1);
        // In the cache: the cached child, and the remembered one is gone at once rather than
        // after REMEMBER_CREATED (it held a whole Job per TaskRun for a minute at 10,000).
        let cached = Some(Arc::new("cached"));
        assert_eq!(
            created.known("ns/a", cached, t0).as_deref(),
            Some(&"cached")
        );
        assert!(created.is_empty());
        assert_eq!(created.known("ns/a", None, t0), None);
    }
}
