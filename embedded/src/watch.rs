//! Watch streams: a resource, a starting resourceVersion and selectors in, a stream of
//! `{"type","object"}` lines out (ADDED/MODIFIED/DELETED/BOOKMARK, or one ERROR with a 410
//! Expired Status when the starting point is older than the event history).
//!
//! A change is encoded once for all the watchers that send it the same way ([`EncodedLines`]),
//! as kube-apiserver's watch cache serializes an event once per encoding and shares the bytes
//! between its watchers (`cachingObject`); Table, metadata-only and converting watchers encode
//! their own.

use super::resources::ResourceInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventType, Store, WatchEvent};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// The plain-JSON watch lines of one change, by event type and apiVersion (a watcher whose
/// selector the object starts or stops matching sees ADDED or DELETED for a MODIFIED; a CRD
/// served at several versions without conversion is sent at each endpoint's apiVersion): the
/// first watcher to send one encodes it, the others share its bytes.
#[derive(Debug, Default)]
pub struct EncodedLines(Mutex<Vec<(&'static str, String, Bytes)>>);

/// Changes this far back in the history keep their lines no longer: a watcher that lags more
/// (or replays the history from an old resourceVersion) encodes its own, and the history does not
/// hold a second copy of every object (kube-apiserver's watch cache keeps its shared
/// serializations for the events of its bounded cache, as here).
pub const ENCODED_EVENTS_KEPT: usize = 1024;

impl EncodedLines {
    /// Forgets the lines encoded so far.
    pub fn forget(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn get_or_encode(
        &self,
        type_: &'static str,
        api_version: &str,
        encode: impl FnOnce() -> Bytes,
    ) -> Bytes {
        // Encoding under the lock: a watcher that arrives meanwhile waits for the bytes rather
        // than encoding them a second time.
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, line)) = lines
            .iter()
            .find(|(t, v, _)| *t == type_ && v == api_version)
        {
            return line.clone();
        }
        let line = encode();
        lines.push((type_, api_version.to_string(), line.clone()));
        line
    }
}

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

    /// The line for change `e` seen as `type_`: shared with the other watchers that send it the
    /// same way when this watcher sends plain objects.
    fn event_line(&self, type_: &'static str, e: &WatchEvent) -> Bytes {
        if self.convert.is_some() || self.table.is_some() || self.metadata_only {
            return self.line(type_, &e.object);
        }
        e.encoded
            .get_or_encode(type_, &self.info.api_version(), || {
                self.line(type_, &e.object)
            })
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
                        .filter_map(|e| req.translate(e).map(|t| req.event_line(t, e)))
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
                        && tx.send(req.event_line(t, &e)).await.is_err()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin_resources;

    fn request(labels: &str, table: Option<&str>, metadata_only: bool) -> WatchRequest {
        let info = builtin_resources()
            .into_iter()
            .find(|r| r.plural == "configmaps")
            .unwrap();
        WatchRequest {
            info: Arc::new(info),
            key: "configmaps".into(),
            convert: None,
            table: table.map(str::to_string),
            metadata_only,
            namespace: Some("ns".into()),
            resource_version: None,
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::parse("", "configmaps").unwrap(),
            bookmarks: false,
            send_initial_events: false,
            timeout: Duration::from_secs(60),
            bookmark_interval: Duration::from_secs(60),
        }
    }

    fn config_map(app: &str) -> Arc<Value> {
        Arc::new(json!({
            "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7",
                         "labels": {"app": app}},
            "data": {"k": "v"},
        }))
    }

    fn decoded(line: &Bytes) -> Value {
        serde_json::from_slice(line).unwrap()
    }

    #[test]
    fn plain_watchers_share_one_encoding_per_event_type_and_the_others_encode_their_own() {
        let event = WatchEvent {
            rv: 7,
            key: "configmaps".into(),
            event_type: EventType::Modified,
            object: config_map("web"),
            prev: Some(config_map("db")),
            encoded: EncodedLines::default(),
        };
        let all = request("", None, false);
        let also_all = request("", None, false);
        let web = request("app=web", None, false);
        let table = request("", Some("Object"), false);
        let metadata = request("", None, true);

        let first = all.event_line(all.translate(&event).unwrap(), &event);
        let second = also_all.event_line(also_all.translate(&event).unwrap(), &event);
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the same bytes, encoded once"
        );
        assert_eq!(
            first,
            all.line("MODIFIED", &event.object),
            "as encoded alone"
        );
        assert_eq!(decoded(&first)["type"], "MODIFIED");
        assert_eq!(decoded(&first)["object"]["apiVersion"], "v1");
        assert_eq!(decoded(&first)["object"]["data"]["k"], "v");

        // The object starts matching `app=web` with this change: ADDED, its own line.
        let added = web.event_line(web.translate(&event).unwrap(), &event);
        assert_eq!(decoded(&added)["type"], "ADDED");
        assert_eq!(decoded(&added)["object"], decoded(&first)["object"]);
        assert_ne!(added.as_ptr(), first.as_ptr());

        let as_table = table.event_line("MODIFIED", &event);
        assert_eq!(decoded(&as_table)["object"]["kind"], "Table");
        let meta = metadata.event_line("MODIFIED", &event);
        assert_eq!(decoded(&meta)["object"]["kind"], "PartialObjectMetadata");
        assert!(decoded(&meta)["object"].get("data").is_none());
        assert_eq!(
            event.encoded.0.lock().unwrap().len(),
            2,
            "MODIFIED and ADDED at v1; the Table and metadata lines are not shared"
        );
    }

    /// The history holds the shared lines of its last [`ENCODED_EVENTS_KEPT`] changes only; an
    /// older change is encoded again, to the same bytes, for a watcher that replays it.
    #[test]
    fn the_history_keeps_the_lines_of_recent_changes_only() {
        let store = Store::new(10_000, None).unwrap();
        let all = request("", None, false);
        let put = |name: String| {
            let mut cm = (*config_map("web")).clone();
            cm["metadata"]["name"] = json!(name);
            store
                .lock()
                .put("configmaps", cm, EventType::Added)
                .unwrap();
        };
        put("first".into());
        let first = store.lock().events_since("configmaps", 0).unwrap()[0].clone();
        let line = all.event_line("ADDED", &first);
        assert_eq!(first.encoded.0.lock().unwrap().len(), 1);
        for i in 0..ENCODED_EVENTS_KEPT - 1 {
            put(format!("cm-{i}"));
        }
        assert_eq!(first.encoded.0.lock().unwrap().len(), 1, "still recent");
        put("last".into());
        assert!(first.encoded.0.lock().unwrap().is_empty(), "forgotten");
        let again = all.event_line("ADDED", &first);
        assert_eq!(again, line);
        assert_ne!(again.as_ptr(), line.as_ptr());
    }
}
