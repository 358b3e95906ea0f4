//! The TaskRuns' metadata kept current by a watch, so that a re-sync reads memory instead of
//! listing every TaskRun: a no-op re-sync of 10,000 TaskRuns makes no request at all.
//!
//! The watch keeps two fields per TaskRun ([`WatchedMeta`]: its resourceVersion, and one hash of
//! its uid, generation and the labels and annotations the sync reads), not the metadata itself:
//! the sync's own record ([`KnownTaskRuns`]) holds that once.
//!
//! The watch is trusted only while it is known to be current: from its first complete listing
//! until its next error. While it reconnects, [`LiveWatch::with_current`] answers `None` and the
//! syncer lists instead, so a broken watch costs speed, never correctness.

use crate::crd::TaskRun;
use crate::desired::{KnownTaskRuns, Token, read_fingerprint};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::task::JoinHandle;
use tracing::debug;

/// What the watch keeps of one TaskRun: enough to tell whether the sync's record of it is
/// current, and no more (32 bytes and its name, where its metadata takes about 2 KiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedMeta {
    pub resource_version: Option<Token>,
    /// [`sync_view`] of the TaskRun: equal while it is the same object, at the same spec, and
    /// what the sync reads of its metadata is the same.
    pub view: u64,
}

impl WatchedMeta {
    pub fn of(meta: &ObjectMeta) -> Self {
        Self {
            resource_version: meta.resource_version.as_deref().map(Token::parse),
            view: sync_view(
                meta.uid.as_deref().map(Token::parse).as_ref(),
                meta.generation,
                read_fingerprint(meta),
            ),
        }
    }
}

/// One hash of a TaskRun's uid, generation and [`read_fingerprint`] (the labels, annotations and
/// deletion mark the sync reads), as the watch keeps it and as [`merge_metadata`] computes it
/// from the sync's record. Stable within one process.
pub fn sync_view(uid: Option<&Token>, generation: Option<i64>, read: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (uid, generation, read).hash(&mut hasher);
    hasher.finish()
}

/// Every TaskRun the watch has shown, by name.
pub type WatchedMetas = HashMap<String, WatchedMeta>;

/// The watch's view: the TaskRuns of the last complete listing with the events since, and the
/// listing in progress during a relist.
#[derive(Default)]
struct WatchState {
    current: WatchedMetas,
    relisting: Option<WatchedMetas>,
}

impl WatchState {
    fn apply(&mut self, event: &watcher::Event<PartialObjectMeta<TaskRun>>) {
        let named = |o: &PartialObjectMeta<TaskRun>| o.metadata.name.clone();
        match event {
            watcher::Event::Init => self.relisting = Some(WatchedMetas::new()),
            watcher::Event::InitApply(o) => {
                if let Some(name) = named(o) {
                    let meta = WatchedMeta::of(&o.metadata);
                    self.relisting.get_or_insert_default().insert(name, meta);
                }
            }
            watcher::Event::InitDone => {
                self.current = self.relisting.take().unwrap_or_default();
            }
            watcher::Event::Apply(o) => {
                if let Some(name) = named(o) {
                    self.current.insert(name, WatchedMeta::of(&o.metadata));
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(name) = &o.metadata.name {
                    self.current.remove(name);
                }
            }
        }
    }
}

/// A running metadata watch; stops when dropped.
pub struct LiveWatch {
    state: Arc<Mutex<WatchState>>,
    current: Arc<AtomicBool>,
    /// The largest resourceVersion an event has shown, so that a sync can wait for the watch
    /// to reach a write before it plans.
    seen: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl LiveWatch {
    /// Starts watching the TaskRuns `api` addresses (metadata only).
    pub fn start(api: &Api<TaskRun>) -> Self {
        let meta_api: Api<PartialObjectMeta<TaskRun>> = Api::namespaced(
            api.clone().into_client(),
            api.namespace().unwrap_or("default"),
        );
        let state = Arc::new(Mutex::new(WatchState::default()));
        let state_w = state.clone();
        let current = Arc::new(AtomicBool::new(false));
        let flag = current.clone();
        let seen = Arc::new(AtomicU64::new(0));
        let seen_w = seen.clone();
        let events = watcher(meta_api, watcher::Config::default())
            .backoff(crate::watch_backoff::watch_backoff());
        let task = tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                // The state first: a sync that waited for `seen` finds the event applied.
                match &event {
                    Ok(event) => state_w
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .apply(event),
                    Err(e) => {
                        debug!(error = %e, "TaskRun metadata watch interrupted; re-syncs list until it resumes");
                    }
                }
                if let Some(rv) = event_resource_version(&event) {
                    seen_w.fetch_max(rv, Ordering::AcqRel);
                }
                flag.store(trusts(&event), Ordering::Release);
            }
        });
        Self {
            state,
            current,
            seen,
            task,
        }
    }

    /// Waits until the watch has shown a change at `rv` or later (resourceVersions of one
    /// server grow); false when `timeout` passes first.
    pub async fn wait_until_seen(&self, rv: u64, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.seen.load(Ordering::Acquire) < rv {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// `read` of what the watch shows of every TaskRun, or `None` when the watch may be behind
    /// (not listed yet, or reconnecting after an error). `read` runs under the watch's lock:
    /// keep it short and synchronous.
    pub fn with_current<R>(&self, read: impl FnOnce(&WatchedMetas) -> R) -> Option<R> {
        if !self.current.load(Ordering::Acquire) {
            return None;
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Some(read(&state.current))
    }
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The resourceVersion of an event's object (a DELETED event carries the deletion's).
fn event_resource_version(
    event: &Result<watcher::Event<PartialObjectMeta<TaskRun>>, watcher::Error>,
) -> Option<u64> {
    match event {
        Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o)) => {
            o.metadata.resource_version.as_deref()?.parse().ok()
        }
        _ => None,
    }
}

/// Whether the store is current after `event`: yes once a listing completed or an event came
/// through; no after an error until the next event (a resumed watch that brings nothing new
/// stays untrusted, which only costs a list per sync).
fn trusts<K>(event: &Result<watcher::Event<K>, watcher::Error>) -> bool {
    match event {
        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
        Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) => true,
        Err(_) => false,
    }
}

/// Brings `known`, the TaskRuns as the last sync saw them, up to `metas`, what the watch (or a
/// metadata-only list) shows of every live TaskRun. A TaskRun whose uid, generation and marks
/// the sync reads are unchanged ([`sync_view`]) keeps the spec known (status writes and metadata
/// edits do not bump the generation, a spec edit does) and takes the new resourceVersion (a
/// status write, another writer's label). Returns the names to read again: new, spec changed,
/// the labels or annotations the sync reads changed, or absent from `metas` (deleted, or
/// created so recently that the watch has not shown it yet).
pub fn merge_metadata(known: &mut KnownTaskRuns, metas: &WatchedMetas) -> Vec<String> {
    let mut stale = Vec::new();
    let mut matched = 0;
    for (name, meta) in metas {
        match known.get_mut(name.as_str()) {
            // The same object at the same spec, and the same of what the sync reads: only its
            // resourceVersion can have moved (a status write, another writer's key).
            Some(tr)
                if tr.generation.is_some()
                    && sync_view(tr.uid.as_ref(), tr.generation, tr.read) == meta.view =>
            {
                matched += 1;
                if tr.resource_version != meta.resource_version {
                    tr.resource_version = meta.resource_version.clone();
                }
            }
            Some(_) => {
                matched += 1;
                stale.push(name.clone());
            }
            None => stale.push(name.clone()),
        }
    }
    if matched < known.len() {
        stale.extend(
            known
                .keys()
                .filter(|name| !metas.contains_key(&***name))
                .map(|name| name.to_string()),
        );
    }
    stale.sort();
    stale
}

/// [`WatchedMetas`] of a metadata-only list, for when the watch is not current.
pub fn watched_metas<'a>(metas: impl IntoIterator<Item = &'a ObjectMeta>) -> WatchedMetas {
    metas
        .into_iter()
        .filter_map(|m| Some((m.name.clone()?, WatchedMeta::of(m))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaskRunSpec;
    use crate::desired::LiveTaskRun;
    use crate::names;

    fn live(name: &str, uid: &str, generation: i64, rv: &str) -> TaskRun {
        let spec = TaskRunSpec {
            task_id: 1,
            service_name: "web".into(),
            agent_name: "claude-code".into(),
            context_version: generation,
            content_digest: format!("sha256:{rv}"),
            source_path: format!("tasks/1-{name}"),
            suspend: false,
            priority: 0,
            markdown_files: vec![],
        };
        let mut tr = TaskRun::new(name, spec);
        tr.metadata.uid = Some(uid.into());
        tr.metadata.generation = Some(generation);
        tr.metadata.resource_version = Some(rv.into());
        tr
    }

    #[test]
    fn merging_metadata_keeps_known_specs_and_names_what_to_read_again() {
        let known_before: KnownTaskRuns = [
            live("same", "u1", 1, "10"),
            live("status-moved", "u2", 1, "11"),
            live("spec-edited", "u3", 1, "12"),
            live("recreated", "u4", 1, "13"),
            live("gone", "u5", 1, "14"),
            live("opted-out", "u7", 1, "15"),
            live("deleting", "u8", 1, "16"),
        ]
        .into_iter()
        .map(|tr| {
            (
                tr.metadata.name.as_deref().unwrap().into(),
                Box::new(LiveTaskRun::from(tr)),
            )
        })
        .collect();
        // A status write, and labels, annotations and finalizers the sync does not read.
        let mut status_moved = live("status-moved", "u2", 1, "21").metadata;
        status_moved.annotations = Some(
            [("someone-else.io/note", "not read by the sync")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        );
        status_moved.finalizers = Some(vec![names::FINALIZER.into()]);
        let mut opted_out = live("opted-out", "u7", 1, "25").metadata;
        opted_out.annotations = Some(
            [(names::ANNOTATION_PRUNE, names::PRUNE_DISABLED)]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        );
        let mut deleting = live("deleting", "u8", 1, "26").metadata;
        deleting.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        let metas = [
            live("same", "u1", 1, "10").metadata,
            status_moved,
            live("spec-edited", "u3", 2, "22").metadata,
            live("recreated", "u9", 1, "23").metadata,
            live("new", "u6", 1, "24").metadata,
            opted_out,
            deleting,
        ];
        let mut known = known_before.clone();
        let stale = merge_metadata(&mut known, &watched_metas(&metas));
        assert_eq!(
            stale,
            [
                "deleting",
                "gone",
                "new",
                "opted-out",
                "recreated",
                "spec-edited"
            ],
            "a change of what the sync reads (the prune opt-out, a deletion) is read again"
        );
        assert_eq!(known["same"], known_before["same"]);
        let mut moved = known_before["status-moved"].clone();
        moved.resource_version = Some(Token::Number(21));
        assert_eq!(
            known["status-moved"], moved,
            "only the resourceVersion moves; other writers' keys are not kept"
        );
    }

    #[test]
    fn the_watch_keeps_a_fingerprint_of_what_the_sync_reads_not_the_metadata() {
        let tr = live("t", "u1", 1, "10");
        let mut meta = tr.metadata.clone();
        let before = WatchedMeta::of(&meta);
        meta.managed_fields = Some(vec![Default::default()]);
        meta.finalizers = Some(vec![names::FINALIZER.into()]);
        meta.labels
            .get_or_insert_default()
            .insert("someone-else.io/team".into(), "a".into());
        assert_eq!(
            WatchedMeta::of(&meta),
            before,
            "keys the sync does not read"
        );
        meta.labels
            .get_or_insert_default()
            .insert(names::LABEL_SERVICE_NAME.into(), "api".into());
        assert_ne!(WatchedMeta::of(&meta).view, before.view, "a label it sets");
    }

    #[test]
    fn a_known_task_run_without_a_generation_is_always_read_again() {
        let mut tr = live("old-server", "u1", 1, "10");
        tr.metadata.generation = None;
        let meta = tr.metadata.clone();
        let mut known = KnownTaskRuns::from([("old-server".into(), tr.into())]);
        assert_eq!(
            merge_metadata(&mut known, &watched_metas([&meta])),
            ["old-server"]
        );
    }

    #[test]
    fn the_store_is_trusted_between_a_complete_listing_and_the_next_error() {
        let cm = || k8s_openapi::api::core::v1::ConfigMap::default();
        let cases: Vec<(&str, Result<watcher::Event<_>, watcher::Error>, bool)> = vec![
            ("relist starts", Ok(watcher::Event::Init), false),
            (
                "relist in progress",
                Ok(watcher::Event::InitApply(cm())),
                false,
            ),
            ("relist complete", Ok(watcher::Event::InitDone), true),
            ("an object changed", Ok(watcher::Event::Apply(cm())), true),
            ("an object left", Ok(watcher::Event::Delete(cm())), true),
            (
                "the watch failed",
                Err(watcher::Error::NoResourceVersion),
                false,
            ),
        ];
        for (case, event, want) in cases {
            assert_eq!(trusts(&event), want, "{case}");
        }
    }
}
