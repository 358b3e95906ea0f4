//! Watch streams: a resource, a starting resourceVersion and selectors in, a stream of
//! `{"type","object"}` lines out (ADDED/MODIFIED/DELETED/BOOKMARK, or one ERROR with a 410
//! Expired Status when the starting point is older than the event history).

use super::resources::ResourceInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventType, Store, WatchEvent};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// What one watch request asked for.
pub struct WatchRequest {
    /// The resource as the endpoint shows it (kind and apiVersion of events).
    pub info: Arc<ResourceInfo>,
    /// Storage key of the objects watched.
    pub key: String,
    /// Turns a stored object into the endpoint's version, where they differ.
    pub convert: Option<fn(&Value) -> Value>,
    /// `Some(includeObject)` when the client asked for Tables (`kubectl get -w`): each event's
    /// object is a one-row Table.
    pub table: Option<String>,
    /// `as=PartialObjectMetadata` (metadata informers, kube's `Api<PartialObjectMeta<K>>`):
    /// each event's object is reduced to its metadata.
    pub metadata_only: bool,
    pub namespace: Option<String>,
    /// `None` for "" or "0": start with the current state as ADDED events.
    pub resource_version: Option<u64>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: initial ADDED events end with an annotated BOOKMARK.
    pub send_initial_events: bool,
    pub timeout: Duration,
    pub bookmark_interval: Duration,
}

impl WatchRequest {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event type this watcher sees for `e`, if any (selector transitions become ADDED or
    /// DELETED, as in the real watch cache).
    fn translate(&self, e: &WatchEvent) -> Option<&'static str> {
        if e.key != self.key {
            return None;
        }
        let now = self.matches(&e.object);
        match e.event_type {
            EventType::Modified => {
                let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
            other => now.then_some(other.as_str()),
        }
    }

    fn line(&self, type_: &str, obj: &Value) -> Bytes {
        let mut o = match self.convert {
            Some(f) => f(obj),
            None => obj.clone(),
        };
        o["apiVersion"] = json!(self.info.api_version());
        if self.metadata_only {
            o = super::table::partial_metadata(&o);
        } else if let Some(include) = &self.table {
            let rv = o
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            o = super::table::table(&self.info, &[o], &rv, None, include, now);
        }
        let mut line = serde_json::to_vec(&json!({"type": type_, "object": o})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = if self.metadata_only {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
        } else {
            json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata})
        };
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Starts a watch; returns the receiving end of its lines. The first lines (backlog or
/// initial state) are computed under the store lock together with the subscription, so no
/// event falls between them.
pub fn start(store: Arc<Store>, req: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let key = req.key.clone();
    let (first, start_rv, live) = {
        let inner = store.lock();
        let live = store.subscribe();
        let current = inner.rv();
        match req.resource_version {
            None => {
                let mut lines: Vec<Bytes> = inner
                    .list(&key, req.namespace.as_deref())
                    .filter(|o| req.matches(o))
                    .map(|o| req.line("ADDED", o))
                    .collect();
                if req.send_initial_events && req.bookmarks {
                    lines.push(req.bookmark(current, true));
                }
                (Ok(lines), current, live)
            }
            Some(rv) => match inner.events_since(&key, rv) {
                Ok(events) => {
                    let lines = events
                        .iter()
                        .filter_map(|e| req.translate(e).map(|t| req.line(t, &e.object)))
                        .collect();
                    (Ok(lines), current.max(rv), live)
                }
                Err(e) => (Err(e), current, live),
            },
        }
    };
    tokio::spawn(async move {
        match first {
            Err(e) => {
                let _ = tx.send(error_line(&e)).await;
            }
            Ok(lines) => {
                for l in lines {
                    if tx.send(l).await.is_err() {
                        return;
                    }
                }
                stream_live(req, live, start_rv, tx).await;
            }
        }
    });
    rx
}

async fn stream_live(
    req: WatchRequest,
    mut live: broadcast::Receiver<Arc<WatchEvent>>,
    mut seen: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(req.bookmark_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if req.bookmarks => {
                if tx.send(req.bookmark(seen, false)).await.is_err() {
                    return;
                }
            }
            got = live.recv() => match got {
                Ok(e) => {
                    if e.rv <= seen {
                        continue;
                    }
                    seen = e.rv;
                    if let Some(t) = req.translate(&e)
                        && tx.send(req.line(t, &e.object)).await.is_err()
                    {
                        return;
                    }
                }
                // A watcher too slow to keep up is ended; the client resumes from its last
                // resourceVersion (or relists on 410), as with the real server.
                Err(_) => return,
            },
        }
    }
}
