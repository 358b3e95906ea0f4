//! Events on TaskRuns (and on the agents ConfigMap): a fixed reason and a note in, an
//! events.k8s.io/v1 Event out. A failed publish is logged and never fails the reconcile.
//!
//! [`Recorder`] writes the same Event that kube-runtime's `Recorder` writes (name
//! `<regarding>.<nanoseconds in hex>`, eventTime, action, reason, note, regarding, related,
//! reportingController, reportingInstance, type), and like it folds a repeat of the same event on
//! the same object version into the first Event's `series` with a merge patch. kube-runtime's
//! Recorder keeps every event for six minutes and scans them all under a write lock on every
//! publish, which is quadratic in the number of TaskRuns (20,000 events at 10,000 TaskRuns). This
//! one remembers at most [`RECENT_CAPACITY`] events, for at most [`RECENT_TTL`], in insertion
//! order, so a publish costs O(1) besides its one request. The controller publishes one event per
//! transition, so a repeat is rare; forgetting an old one only means a repeat becomes an Event of
//! its own instead of a series count.

use super::reasons::EventReason;
use crate::crd::TaskRun;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::{Event, EventType};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "orchestrator-controller";

/// Events remembered for folding repeats into a series.
pub const RECENT_CAPACITY: usize = 1024;
/// How long an event is remembered for folding repeats (kube-runtime's CACHE_TTL).
pub const RECENT_TTL: Duration = Duration::from_secs(6 * 60);

/// Publishes events.k8s.io/v1 Events; cheap per publish whatever the number of objects.
pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent<String>>,
}

pub fn recorder(client: kube::Client) -> Recorder {
    Recorder {
        client,
        controller: REPORTING_CONTROLLER.to_string(),
        instance: std::env::var("POD_NAME").unwrap_or_else(|_| REPORTING_CONTROLLER.to_string()),
        recent: Mutex::new(Recent::new(RECENT_CAPACITY, RECENT_TTL)),
    }
}

/// The identity of an event for folding repeats: what kube-runtime's Recorder keys on
/// (type, action, reason, regarding and related, reporter).
fn event_key(ev: &Event, regarding: &ObjectReference) -> String {
    fn reference(r: &ObjectReference) -> String {
        format!(
            "{}/{}/{}/{}/{}/{}",
            r.api_version.as_deref().unwrap_or(""),
            r.kind.as_deref().unwrap_or(""),
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or(""),
            r.uid.as_deref().unwrap_or(""),
            r.resource_version.as_deref().unwrap_or(""),
        )
    }
    format!(
        "{:?}\n{}\n{}\n{}\n{}",
        ev.type_,
        ev.action,
        ev.reason,
        reference(regarding),
        ev.secondary.as_ref().map(reference).unwrap_or_default()
    )
}

/// An event already written: its name and namespace, and how often it was seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub name: String,
    pub namespace: String,
    pub count: i32,
}

/// At most `capacity` remembered events, each for at most `ttl` after it was first written;
/// the oldest go first. Every operation is O(1) amortized.
#[derive(Debug)]
pub struct Recent<K> {
    capacity: usize,
    ttl: Duration,
    by_key: HashMap<K, (Seen, Instant)>,
    order: VecDeque<(K, Instant)>,
}

impl<K: std::hash::Hash + Eq + Clone> Recent<K> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Recent {
            capacity,
            ttl,
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            if self.order.len() <= self.capacity && now.duration_since(*at) < self.ttl {
                break;
            }
            // The map entry may have been replaced since; drop it only if it is this one.
            if self.by_key.get(key).is_some_and(|(_, a)| a == at) {
                self.by_key.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// The event written for `key`, counting this repeat, if it is still remembered.
    pub fn repeat(&mut self, key: &K, now: Instant) -> Option<Seen> {
        self.expire(now);
        let (seen, _) = self.by_key.get_mut(key)?;
        seen.count += 1;
        Some(seen.clone())
    }

    /// Remembers a newly written event.
    pub fn insert(&mut self, key: K, seen: Seen, now: Instant) {
        self.order.push_back((key.clone(), now));
        self.by_key.insert(key, (seen, now));
        self.expire(now);
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

impl Recorder {
    fn event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            related: ev.secondary.clone(),
            ..Default::default()
        }
    }

    /// Writes `ev` about `regarding` (in its namespace, or `default` for a cluster-scoped
    /// object): a new Event, or a series patch of the remembered one for a repeat.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let key = event_key(ev, regarding);
        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.repeat(&key, Instant::now())
        };
        let now = Timestamp::now();
        if let Some(seen) = repeat {
            let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &seen.namespace);
            let patch = serde_json::json!({
                "series": EventSeries { count: seen.count, last_observed_time: MicroTime(now) }
            });
            events
                .patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok(());
        }
        let event = self.event(ev, regarding, now);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        events.create(&PostParams::default(), &event).await?;
        let seen = Seen {
            name: event.metadata.name.unwrap_or_default(),
            namespace: namespace.to_string(),
            count: 1,
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.insert(key, seen, Instant::now());
        Ok(())
    }
}

/// Publishes one event on `tr`. `related` names the child the event is about, which keeps, say,
/// the JobCreated events of two context versions apart.
pub async fn publish(
    recorder: &Recorder,
    tr: &TaskRun,
    reason: EventReason,
    note: String,
    related: Option<ObjectReference>,
) {
    let event = Event {
        type_: if reason.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.as_str().to_string(),
        note: Some(note),
        action: reason.action().to_string(),
        secondary: related,
    };
    match recorder.publish(&event, &tr.object_ref(&())).await {
        // The API server went away: the reconcile's own requests fail too and the controller's
        // outage log says so once; a line per TaskRun here would multiply it.
        Err(e) if crate::outage_log::is_connection_error(&e) => tracing::debug!(
            task_run = tr.metadata.name.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            error = %e,
            "could not publish event while the API server is unreachable"
        ),
        Err(e) => tracing::warn!(
            task_run = tr.metadata.name.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            error = %e,
            "could not publish event"
        ),
        Ok(()) => {}
    }
}

/// A reference to a child for an event's `related` field.
pub fn related<K: Resource<DynamicType = ()>>(child: &K) -> ObjectReference {
    child.object_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(name: &str, count: i32) -> Seen {
        Seen {
            name: name.to_string(),
            namespace: "ns".to_string(),
            count,
        }
    }

    #[test]
    fn a_repeat_is_counted_while_remembered_and_memory_stays_bounded() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut recent: Recent<&str> = Recent::new(3, ttl);
        assert_eq!(recent.repeat(&"a", t0), None, "never written");
        recent.insert("a", seen("a.1", 1), t0);
        assert_eq!(recent.repeat(&"a", t0), Some(seen("a.1", 2)));
        assert_eq!(recent.repeat(&"a", t0), Some(seen("a.1", 3)));
        // Capacity: the oldest goes first.
        for k in ["b", "c", "d"] {
            recent.insert(k, seen(k, 1), t0);
        }
        assert_eq!(recent.len(), 3);
        assert_eq!(recent.repeat(&"a", t0), None, "evicted by capacity");
        assert_eq!(recent.repeat(&"b", t0), Some(seen("b", 2)));
        // Time: everything first written a ttl ago is forgotten.
        let later = t0 + ttl;
        assert_eq!(recent.repeat(&"b", later), None, "expired");
        assert!(recent.is_empty());
        // A key written again after it expired is remembered afresh, and the older queue entry
        // for the same key does not take the new one with it.
        let mut recent: Recent<&str> = Recent::new(3, ttl);
        recent.insert("a", seen("a.1", 1), t0);
        recent.insert("a", seen("a.2", 1), t0 + Duration::from_secs(30));
        assert_eq!(
            recent.repeat(&"a", t0 + ttl),
            Some(seen("a.2", 2)),
            "the newer write outlives the older entry's expiry"
        );
        assert_eq!(
            recent.repeat(&"a", t0 + ttl + Duration::from_secs(30)),
            None
        );
    }

    #[test]
    fn the_key_is_what_kube_runtime_folds_on() {
        let tr = |rv: &str| ObjectReference {
            kind: Some("TaskRun".into()),
            namespace: Some("ns".into()),
            name: Some("t".into()),
            uid: Some("u".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        };
        let ev = |reason: &str, related: Option<&str>| Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some("a note".into()),
            action: "Run".into(),
            secondary: related.map(|n| ObjectReference {
                name: Some(n.into()),
                ..Default::default()
            }),
        };
        let base = event_key(&ev("JobCreated", Some("j1")), &tr("1"));
        let mut other_note = ev("JobCreated", Some("j1"));
        other_note.note = Some("another note".into());
        assert_eq!(
            event_key(&other_note, &tr("1")),
            base,
            "the note is not part of it"
        );
        for (what, key) in [
            ("reason", event_key(&ev("Succeeded", Some("j1")), &tr("1"))),
            (
                "related",
                event_key(&ev("JobCreated", Some("j2")), &tr("1")),
            ),
            ("no related", event_key(&ev("JobCreated", None), &tr("1"))),
            (
                "version",
                event_key(&ev("JobCreated", Some("j1")), &tr("2")),
            ),
        ] {
            assert_ne!(key, base, "{what} is part of the key");
        }
    }
}
