//! The object store: JSON objects by resource, namespace and name, one global resourceVersion
//! counter, a bounded event history for watches, and optional SQLite durability.

use super::error::EmbeddedError;
use super::gc::GcIndex;
use super::persist::Db;
use super::registry::Registry;
use super::status::ApiError;
use super::watch::{ENCODED_EVENTS_KEPT, EncodedLines};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, in resourceVersion order.
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    /// Storage key of the resource (`configmaps`, `jobs.batch`).
    pub key: String,
    pub event_type: EventType,
    pub object: Arc<Value>,
    /// The object before this change (for MODIFIED), so watches with selectors can turn a
    /// change into ADDED or DELETED as an object starts or stops matching.
    pub prev: Option<Arc<Value>>,
    /// Its watch lines, encoded once and shared by the watchers that send the same bytes.
    pub encoded: EncodedLines,
}

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

pub struct Inner {
    rv: u64,
    objects: HashMap<String, BTreeMap<ObjKey, Arc<Value>>>,
    /// uid → (storage key, object key), for owner lookups.
    uids: HashMap<String, (String, ObjKey)>,
    /// Dependents by owner uid and the objects the garbage collector must look at again, kept
    /// up to date by every write so that a collector pass costs what changed.
    pub gc: GcIndex,
    history: VecDeque<Arc<WatchEvent>>,
    history_cap: usize,
    /// Watches from a resourceVersion below this are answered 410 Expired.
    compacted: u64,
    pub registry: Registry,
    db: Option<Db>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    dirty: Arc<Notify>,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    /// Woken after every write; the garbage collector waits on it.
    pub dirty: Arc<Notify>,
}

/// The object key of a JSON object.
pub fn obj_key(obj: &Value) -> ObjKey {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

impl Store {
    pub fn new(history_cap: usize, db: Option<Db>) -> Result<Self, EmbeddedError> {
        let (tx, _) = broadcast::channel(16_384);
        let dirty = Arc::new(Notify::new());
        let mut inner = Inner {
            rv: 0,
            objects: HashMap::new(),
            uids: HashMap::new(),
            gc: GcIndex::default(),
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            compacted: 0,
            registry: Registry::default(),
            db: None,
            tx: tx.clone(),
            dirty: dirty.clone(),
        };
        if let Some(db) = db {
            let (rv, stored) = db.load()?;
            for o in stored {
                if o.key == "customresourcedefinitions.apiextensions.k8s.io" {
                    inner.registry.register_crd(&o.object);
                }
                if let Some(uid) = o.object.pointer("/metadata/uid").and_then(Value::as_str) {
                    inner.uids.insert(
                        uid.to_string(),
                        (o.key.clone(), (o.namespace.clone(), o.name.clone())),
                    );
                }
                let obj = Arc::new(o.object);
                let at = (o.namespace, o.name);
                inner.gc.index(&o.key, &at, None, Some(&obj));
                inner.gc.mark_loaded(&o.key, &at, &obj);
                inner.objects.entry(o.key).or_default().insert(at, obj);
            }
            inner.rv = rv;
            // Nothing before a restart is in the history: older watches must relist.
            inner.compacted = rv;
            inner.db = Some(db);
        }
        if !inner.gc.is_idle() {
            dirty.notify_one();
        }
        Ok(Store {
            inner: Mutex::new(inner),
            tx,
            dirty,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps consistent (each write is one insert), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }
}

impl Inner {
    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Forgets the event history: watches from before now must list again (410 Expired).
    pub fn compact_to_now(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn get(&self, key: &str, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of one resource, in (namespace, name) order; `ns` narrows to one namespace.
    pub fn list<'a>(
        &'a self,
        key: &str,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        self.list_after(key, ns, None)
    }

    /// [`Inner::list`] from just after the object key `after` (the last key of the page before,
    /// from a continue token): each page starts where the last ended, rather than skipping every
    /// object before it, so a paginated list costs its length and not its length squared.
    pub fn list_after<'a>(
        &'a self,
        key: &str,
        ns: Option<&'a str>,
        after: Option<&ObjKey>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let Some(map) = self.objects.get(key) else {
            return Box::new(std::iter::empty());
        };
        let namespace_start = ns.map(|ns| (ns.to_string(), String::new()));
        let start = match (after, namespace_start) {
            (Some(after), Some(first)) if *after < first => Included(first),
            (Some(after), _) => Excluded(after.clone()),
            (None, Some(first)) => Included(first),
            (None, None) => Unbounded,
        };
        let items = map.range((start, Unbounded));
        match ns {
            None => Box::new(items.map(|(_, v)| v)),
            Some(ns) => Box::new(items.take_while(move |((n, _), _)| n == ns).map(|(_, v)| v)),
        }
    }

    /// Whether any object other than the namespace itself lives in namespace `ns`; costs one
    /// lookup per resource, not one per object.
    pub fn namespace_has_objects(&self, ns: &str) -> bool {
        self.objects.iter().any(|(key, map)| {
            key != super::objects::NAMESPACE_KEY
                && map
                    .range((ns.to_string(), String::new())..)
                    .next()
                    .is_some_and(|((n, _), _)| n == ns)
        })
    }

    /// The (storage key, object key) of every object in namespace `ns`.
    pub fn keys_in_namespace(&self, ns: &str) -> Vec<(String, ObjKey)> {
        self.objects
            .iter()
            .filter(|(key, _)| key.as_str() != super::objects::NAMESPACE_KEY)
            .flat_map(|(key, map)| {
                map.range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(move |(at, _)| (key.clone(), at.clone()))
            })
            .collect()
    }

    pub fn by_uid(&self, uid: &str) -> Option<(&str, &Arc<Value>)> {
        let (key, (ns, name)) = self.uids.get(uid)?;
        self.get(key, ns, name).map(|o| (key.as_str(), o))
    }

    /// History events after `rv` for one resource; `Err` when `rv` is older than the history.
    pub fn events_since(&self, key: &str, rv: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                self.compacted
            )));
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self
            .history
            .range(start..)
            .filter(|e| e.key == key)
            .cloned()
            .collect())
    }

    /// Stores `obj` with the next resourceVersion and tells watchers.
    pub fn put(
        &mut self,
        key: &str,
        mut obj: Value,
        event_type: EventType,
    ) -> Result<Arc<Value>, ApiError> {
        let rv = self.rv + 1;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let (ns, name) = obj_key(&obj);
        if let Some(db) = &self.db {
            db.put(key, &ns, &name, rv, &obj)
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        self.rv = rv;
        let obj = Arc::new(obj);
        let prev = self.get(key, &ns, &name).cloned();
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            self.uids.insert(
                uid.to_string(),
                (key.to_string(), (ns.clone(), name.clone())),
            );
        }
        let at = (ns, name);
        self.gc.index(key, &at, prev.as_deref(), Some(&obj));
        self.objects
            .entry(key.to_string())
            .or_default()
            .insert(at.clone(), obj.clone());
        self.mark_for_gc(key, &at, prev.as_deref(), Some(&obj));
        self.record(key, event_type, obj.clone(), prev);
        Ok(obj)
    }

    /// Removes an object with the next resourceVersion; the DELETED event carries it.
    pub fn remove(
        &mut self,
        key: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<Value>>, ApiError> {
        let Some(old) = self.get(key, ns, name).cloned() else {
            return Ok(None);
        };
        let rv = self.rv + 1;
        if let Some(db) = &self.db {
            db.delete(key, ns, name, rv)
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        self.rv = rv;
        if let Some(map) = self.objects.get_mut(key) {
            map.remove(&(ns.to_string(), name.to_string()));
        }
        if let Some(uid) = old.pointer("/metadata/uid").and_then(Value::as_str) {
            self.uids.remove(uid);
        }
        let at = (ns.to_string(), name.to_string());
        self.gc.index(key, &at, Some(&old), None);
        self.mark_for_gc(key, &at, Some(&old), None);
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        let last = Arc::new(last);
        self.record(key, EventType::Deleted, last.clone(), None);
        Ok(Some(last))
    }

    fn record(
        &mut self,
        key: &str,
        event_type: EventType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let event = Arc::new(WatchEvent {
            rv: self.rv,
            key: key.to_string(),
            event_type,
            object,
            prev,
            encoded: EncodedLines::default(),
        });
        if self.history.len() >= self.history_cap
            && let Some(dropped) = self.history.pop_front()
        {
            self.compacted = dropped.rv;
        }
        self.history.push_back(event.clone());
        if let Some(old) = self
            .history
            .len()
            .checked_sub(ENCODED_EVENTS_KEPT + 1)
            .and_then(|i| self.history.get(i))
        {
            old.encoded.forget();
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    /// Tells the garbage collector which objects one change concerns (see
    /// [`GcIndex::marks`]) and wakes it when there are any.
    fn mark_for_gc(&mut self, key: &str, at: &ObjKey, prev: Option<&Value>, now: Option<&Value>) {
        let marks = GcIndex::marks(self, key, at, prev, now);
        if !marks.is_empty() {
            self.gc.pending.extend(marks);
            self.dirty.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: Box<dyn Iterator<Item = &Arc<Value>> + '_>) -> Vec<String> {
        items
            .map(|o| {
                let (ns, name) = obj_key(o);
                format!("{ns}/{name}")
            })
            .collect()
    }

    #[test]
    fn a_page_starts_just_after_the_last_key_of_the_page_before() {
        let store = Store::new(100, None).unwrap();
        let mut inner = store.lock();
        for (ns, name) in [("a", "x"), ("b", "m"), ("b", "n"), ("b", "o"), ("c", "y")] {
            let obj = json!({"metadata": {"namespace": ns, "name": name}});
            inner.put("configmaps", obj, EventType::Added).unwrap();
        }
        let key = |ns: &str, name: &str| (ns.to_string(), name.to_string());
        let all = ["a/x", "b/m", "b/n", "b/o", "c/y"];
        // (namespace, after, expected)
        let table: [(Option<&str>, Option<ObjKey>, &[&str]); 8] = [
            (None, None, &all),
            (None, Some(key("b", "m")), &all[2..]),
            (None, Some(key("b", "zz")), &["c/y"]),
            (None, Some(key("c", "y")), &[]),
            (Some("b"), None, &all[1..4]),
            (Some("b"), Some(key("b", "n")), &["b/o"]),
            (Some("b"), Some(key("a", "x")), &all[1..4]),
            (Some("b"), Some(key("c", "a")), &[]),
        ];
        for (ns, after, expected) in table {
            assert_eq!(
                names(inner.list_after("configmaps", ns, after.as_ref())),
                expected,
                "namespace {ns:?}, after {after:?}"
            );
        }
        assert!(names(inner.list_after("pods", None, None)).is_empty());
    }
}
