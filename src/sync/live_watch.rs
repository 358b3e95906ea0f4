//! The TaskRuns' metadata kept current by a watch, so that a re-sync reads memory instead of
//! listing every TaskRun: a no-op re-sync of 10,000 TaskRuns makes no request at all.
//!
//! The watch is trusted only while it is known to be current: from its first complete listing
//! until its next error. While it reconnects, [`LiveWatch::current`] answers `None` and the
//! syncer lists instead, so a broken watch costs speed, never correctness.

use crate::crd::TaskRun;
use crate::desired::{KnownTaskRuns, trim_metadata};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::task::JoinHandle;
use tracing::debug;

/// The metadata of one namespace's TaskRuns, as the watch last reported them.
pub type LiveMeta = Arc<PartialObjectMeta<TaskRun>>;

/// A running metadata watch; stops when dropped.
pub struct LiveWatch {
    store: Store<PartialObjectMeta<TaskRun>>,
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
        let (store, writer) = reflector::store();
        let current = Arc::new(AtomicBool::new(false));
        let flag = current.clone();
        let seen = Arc::new(AtomicU64::new(0));
        let seen_w = seen.clone();
        // The store keeps only what the sync reads (managedFields alone are most of a
        // TaskRun's metadata); the resourceVersion `seen` counts is kept.
        let metas = watcher(meta_api, watcher::Config::default())
            .modify(|meta| trim_metadata(&mut meta.metadata));
        let events =
            reflector::reflector(writer, metas).backoff(crate::watch_backoff::watch_backoff());
        let task = tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                if let Some(rv) = event_resource_version(&event) {
                    seen_w.fetch_max(rv, Ordering::AcqRel);
                }
                flag.store(trusts(&event), Ordering::Release);
                if let Err(e) = event {
                    debug!(error = %e, "TaskRun metadata watch interrupted; re-syncs list until it resumes");
                }
            }
        });
        Self {
            store,
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

    /// Every TaskRun's metadata, or `None` when the watch may be behind (not listed yet, or
    /// reconnecting after an error).
    pub fn current(&self) -> Option<Vec<LiveMeta>> {
        self.current
            .load(Ordering::Acquire)
            .then(|| self.store.state())
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

/// Brings `known`, the TaskRuns as the last sync saw them, up to `metas`, the metadata of every
/// live TaskRun. A TaskRun whose uid and generation are unchanged keeps the spec known (status
/// writes and metadata edits do not bump the generation, a spec edit does) and takes the fresh
/// metadata. Returns the names to read again: new, spec changed, or absent from `metas`
/// (deleted, or created so recently that the watch has not shown it yet).
pub fn merge_metadata(known: &mut KnownTaskRuns, metas: &[&ObjectMeta]) -> Vec<String> {
    let mut stale = Vec::new();
    let mut matched = 0;
    for meta in metas {
        let Some(name) = &meta.name else { continue };
        match known.get_mut(name) {
            Some(tr)
                if tr.metadata.generation.is_some()
                    && tr.metadata.uid == meta.uid
                    && tr.metadata.generation == meta.generation =>
            {
                matched += 1;
                if tr.metadata.resource_version != meta.resource_version {
                    tr.metadata = (*meta).clone();
                    trim_metadata(&mut tr.metadata);
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
        let present: HashSet<&str> = metas.iter().filter_map(|m| m.name.as_deref()).collect();
        stale.extend(
            known
                .keys()
                .filter(|name| !present.contains(name.as_str()))
                .cloned(),
        );
    }
    stale.sort();
    stale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaskRunSpec;
    use crate::desired::LiveTaskRun;
    use crate::names;

    fn live(name: &str, uid: &str, generation: i64, rv: &str) -> LiveTaskRun {
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
        tr.into()
    }

    #[test]
    fn merging_metadata_keeps_known_specs_and_names_what_to_read_again() {
        let known_before: KnownTaskRuns = [
            live("same", "u1", 1, "10"),
            live("status-moved", "u2", 1, "11"),
            live("spec-edited", "u3", 1, "12"),
            live("recreated", "u4", 1, "13"),
            live("gone", "u5", 1, "14"),
        ]
        .into_iter()
        .map(|tr| (tr.metadata.name.clone().unwrap(), tr))
        .collect();
        let mut status_moved = live("status-moved", "u2", 1, "21").metadata;
        status_moved.annotations = Some(
            [
                (names::ANNOTATION_PRUNE, names::PRUNE_DISABLED),
                ("someone-else.io/note", "not read by the sync"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        );
        status_moved.finalizers = Some(vec![names::FINALIZER.into()]);
        let metas = [
            live("same", "u1", 1, "10").metadata,
            status_moved.clone(),
            live("spec-edited", "u3", 2, "22").metadata,
            live("recreated", "u9", 1, "23").metadata,
            live("new", "u6", 1, "24").metadata,
        ];
        let mut known = known_before.clone();
        let stale = merge_metadata(&mut known, &metas.iter().collect::<Vec<_>>());
        assert_eq!(stale, ["gone", "new", "recreated", "spec-edited"]);
        assert_eq!(known["same"], known_before["same"]);
        let mut kept = status_moved.clone();
        trim_metadata(&mut kept);
        assert_eq!(known["status-moved"].metadata, kept);
        assert_eq!(
            kept.annotations,
            Some(
                [(
                    names::ANNOTATION_PRUNE.to_string(),
                    names::PRUNE_DISABLED.to_string()
                )]
                .into()
            ),
            "the prune opt-out is kept, other writers' keys are not"
        );
        assert_eq!(kept.finalizers, None);
        assert_eq!(
            known["status-moved"].spec,
            known_before["status-moved"].spec
        );
    }

    #[test]
    fn a_known_task_run_without_a_generation_is_always_read_again() {
        let mut tr = live("old-server", "u1", 1, "10");
        tr.metadata.generation = None;
        let meta = tr.metadata.clone();
        let mut known = KnownTaskRuns::from([("old-server".to_string(), tr)]);
        assert_eq!(merge_metadata(&mut known, &[&meta]), ["old-server"]);
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
