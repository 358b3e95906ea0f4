//! What the controller reads, kept in memory by watches: the watch events of Jobs, ConfigMaps and
//! Pods in, stores indexed by controlling owner out, so a reconcile makes no GET or LIST.
//!
//! Each store holds only what a reconcile reads: Jobs and Pods as [`CachedJob`] and
//! [`CachedPod`], decoded straight from the watch into structs of the fields read (a k8s-openapi
//! `Job` is 2,592 bytes and a `Pod` 2,176 before any string, pod template and Pod spec included
//! even when empty; at 10,000 TaskRuns that alone was about 45 MiB), and [`slim_job`],
//! [`slim_config_map`], [`slim_pod`] drop the rest: no managedFields, no ConfigMap data (the
//! markdown), no labels on ConfigMaps and Pods (owner references, not labels, tie them to their
//! TaskRun and Job; at 10,000 TaskRuns the ten labels of each Pod were about 10 MiB).
//! Jobs and ConfigMaps are indexed by the uid of the TaskRun that controls them; Pods by the uid
//! of their Job, for the Pod-derived phases that build on [`Caches::pods_of_job`].
//!
//! A cache can be behind the server. The write paths make that safe: a Job is created with a
//! create that answers 409 when it already exists (then it is read once and treated as existing),
//! and a ConfigMap is server-side applied, which is idempotent. Names are fixed per TaskRun and
//! version, so a stale cache can never make a second Job for one TaskRun and version.

use super::job_phase;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A Job as the cache keeps it: metadata, `spec.suspend` and status, all the reconcile reads.
/// Read from the Job watch as a Job (same kind, group, version and endpoint); the rest of the
/// spec is never decoded.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedJob {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<CachedJobSpec>,
    #[serde(default)]
    pub status: Option<JobStatus>,
}

/// Of a Job's spec, what the reconcile reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedJobSpec {
    #[serde(default)]
    pub suspend: Option<bool>,
}

impl CachedJob {
    /// The Job the decision functions take (`job_phase`, `lifecycle`, the queue): these fields,
    /// the rest of the spec empty.
    pub fn to_job(&self) -> Job {
        Job {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|s| JobSpec {
                suspend: s.suspend,
                ..JobSpec::default()
            }),
            status: self.status.clone(),
        }
    }

    /// [`job_phase::holds_slot`], without building a `Job`.
    pub fn holds_slot(&self) -> bool {
        job_phase::holds_slot(
            self.spec.as_ref().and_then(|s| s.suspend),
            self.status.as_ref(),
        )
    }
}

impl From<Job> for CachedJob {
    fn from(job: Job) -> CachedJob {
        CachedJob {
            metadata: job.metadata,
            spec: job.spec.map(|s| CachedJobSpec { suspend: s.suspend }),
            status: job.status,
        }
    }
}

/// A Pod as the cache keeps it: metadata and status (the spec is never decoded).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: Option<PodStatus>,
}

impl CachedPod {
    /// The Pod the lifecycle functions take: these fields, no spec.
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.clone(),
            spec: None,
            status: self.status.clone(),
        }
    }
}

impl From<Pod> for CachedPod {
    fn from(pod: Pod) -> CachedPod {
        CachedPod {
            metadata: pod.metadata,
            status: pod.status,
        }
    }
}

/// A cached type served at the endpoint of the k8s-openapi type `$full`.
macro_rules! served_as {
    ($cached:ty, $full:ty) => {
        impl Resource for $cached {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$full as Resource>::kind(&())
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$full as Resource>::group(&())
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$full as Resource>::version(&())
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$full as Resource>::plural(&())
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

served_as!(CachedJob, Job);
served_as!(CachedPod, Pod);

/// A reflector store plus an index from controlling owner uid to the objects it controls.
pub struct OwnedStore<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    by_owner: Arc<Mutex<HashMap<String, HashSet<ObjectRef<K>>>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for OwnedStore<K> {
    fn clone(&self) -> Self {
        OwnedStore {
            store: self.store.clone(),
            by_owner: self.by_owner.clone(),
        }
    }
}

/// Feeds an [`OwnedStore`]: every watch event goes through [`OwnedStoreWriter::apply`].
pub struct OwnedStoreWriter<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: reflector::store::Writer<K>,
    by_owner: Arc<Mutex<HashMap<String, HashSet<ObjectRef<K>>>>>,
}

/// An empty store and its writer.
pub fn owned_store<K>() -> (OwnedStore<K>, OwnedStoreWriter<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, writer) = reflector::store();
    let by_owner = Arc::new(Mutex::new(HashMap::new()));
    (
        OwnedStore {
            store,
            by_owner: by_owner.clone(),
        },
        OwnedStoreWriter { writer, by_owner },
    )
}

fn controller_uid<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

impl<K> OwnedStoreWriter<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Applies one watch event to the store and the index. The index may name objects the
    /// store no longer holds (a delete missed while disconnected): lookups go through the
    /// store, and a completed relist drops such entries.
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        self.writer.apply_watcher_event(event);
        let mut index = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                if let Some(uid) = controller_uid(obj) {
                    index
                        .entry(uid.to_string())
                        .or_default()
                        .insert(ObjectRef::from_obj(obj));
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some(uid) = controller_uid(obj)
                    && let Some(set) = index.get_mut(uid)
                {
                    set.remove(&ObjectRef::from_obj(obj));
                    if set.is_empty() {
                        index.remove(uid);
                    }
                }
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                let store = self.writer.as_reader();
                index.retain(|_, set| {
                    set.retain(|r| store.get(r).is_some());
                    !set.is_empty()
                });
            }
        }
    }
}

impl<K> OwnedStore<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The object `name` in `namespace`, as last seen.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// The objects controlled by the owner with `uid`, as last seen.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<K>> {
        let refs: Vec<ObjectRef<K>> = {
            let index = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
            index
                .get(uid)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        let mut objects: Vec<Arc<K>> = refs.iter().filter_map(|r| self.store.get(r)).collect();
        objects.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
        objects
    }

    /// Resolves once the first complete listing is in.
    pub async fn ready(&self) {
        // Fails only when the writer is gone, and then nothing will ever fill the store.
        let _ = self.store.wait_until_ready().await;
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.store.state().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A store holding exactly `objects`, as if a listing had just completed; no watch keeps it
    /// current. For tests that must see what a cache that is behind the server does.
    pub fn seeded<T: Into<K>>(objects: Vec<T>) -> OwnedStore<K> {
        let (store, mut writer) = owned_store();
        writer.apply(&watcher::Event::Init);
        for obj in objects {
            writer.apply(&watcher::Event::InitApply(obj.into()));
        }
        writer.apply(&watcher::Event::InitDone);
        store
    }
}

/// The controller's caches of its children (and their pods).
#[derive(Clone)]
pub struct Caches {
    pub jobs: OwnedStore<CachedJob>,
    pub config_maps: OwnedStore<ConfigMap>,
    pub pods: OwnedStore<CachedPod>,
}

impl Caches {
    /// The Job `name` as last seen.
    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.jobs
            .get(namespace, name)
            .map(|job| Arc::new(job.to_job()))
    }

    /// Whether the Job `namespace/name` holds a queue slot (neither suspended nor finished), as
    /// last seen; `None` when the cache does not show it. Copies nothing: the queue asks this of
    /// every TaskRun it plans.
    pub fn job_holds_slot(&self, namespace: &str, name: &str) -> Option<bool> {
        self.jobs.get(namespace, name).map(|job| job.holds_slot())
    }

    /// The pods of the Job with `job_uid`, as last seen.
    pub fn pods_of_job(&self, job_uid: &str) -> Vec<Pod> {
        self.pods
            .owned_by(job_uid)
            .iter()
            .map(|pod| pod.to_pod())
            .collect()
    }

    /// Resolves once Jobs, ConfigMaps and Pods are listed.
    pub async fn ready(&self) {
        self.jobs.ready().await;
        self.config_maps.ready().await;
        self.pods.ready().await;
    }
}

/// Keeps of a cached Job what the reconcile reads: all but managedFields.
pub fn slim_job(job: &mut CachedJob) {
    job.metadata.managed_fields = None;
}

/// Keeps of a ConfigMap its metadata (without managedFields and labels); the markdown files are
/// dropped.
pub fn slim_config_map(cm: &mut ConfigMap) {
    cm.metadata.managed_fields = None;
    cm.metadata.labels = None;
    cm.data = None;
    cm.binary_data = None;
}

/// Keeps of a cached Pod its metadata without managedFields and labels, and its status.
pub fn slim_pod(pod: &mut CachedPod) {
    pod.metadata.managed_fields = None;
    pod.metadata.labels = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};

    fn cm(name: &str, owner: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("ns".into());
        cm.metadata.owner_references = Some(vec![OwnerReference {
            uid: owner.into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        cm
    }

    #[test]
    fn a_cached_job_holds_a_slot_exactly_when_the_queue_counts_its_job_as_running() {
        use crate::controller::queue::{EntryState, entry_state};
        let condition =
            |type_: &str, status: &str| serde_json::json!({"type": type_, "status": status});
        let cases = [
            ("new", serde_json::json!({}), false, true),
            ("active", serde_json::json!({"active": 1}), false, true),
            ("suspended", serde_json::json!({}), true, false),
            (
                "complete",
                serde_json::json!({"conditions": [condition("Complete", "True")]}),
                false,
                false,
            ),
            (
                "failed",
                serde_json::json!({"conditions": [condition("Failed", "True")]}),
                false,
                false,
            ),
            (
                "failed, suspended",
                serde_json::json!({"conditions": [condition("Failed", "True")]}),
                true,
                false,
            ),
            (
                "a condition not yet true",
                serde_json::json!({"active": 1, "conditions": [condition("Failed", "False")]}),
                false,
                true,
            ),
            (
                "another condition",
                serde_json::json!({"active": 1, "conditions": [condition("Suspended", "True")]}),
                false,
                true,
            ),
        ];
        for (what, status, suspend, holds) in cases {
            let job: Job = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "j"},
                "spec": {"suspend": suspend, "template": {}},
                "status": status,
            }))
            .unwrap();
            let cached = CachedJob::from(job.clone());
            assert_eq!(cached.holds_slot(), holds, "{what}");
            let counted = entry_state(Some(&job), false) == Some(EntryState::Running);
            assert_eq!(counted, holds, "{what}: the queue's own rule");
        }
    }

    #[test]
    fn the_index_follows_applies_deletes_and_relists() {
        let (store, mut w) = owned_store::<ConfigMap>();
        w.apply(&watcher::Event::Init);
        w.apply(&watcher::Event::InitApply(cm("a-v1", "a")));
        w.apply(&watcher::Event::InitApply(cm("b-v1", "b")));
        w.apply(&watcher::Event::InitDone);
        w.apply(&watcher::Event::Apply(cm("a-v2", "a")));
        let names = |uid| {
            store
                .owned_by(uid)
                .iter()
                .map(|c| c.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("a"), ["a-v1", "a-v2"]);
        w.apply(&watcher::Event::Delete(cm("a-v1", "a")));
        assert_eq!(names("a"), ["a-v2"]);
        // b-v1 was deleted while the watch was down: the relist no longer has it.
        w.apply(&watcher::Event::Init);
        w.apply(&watcher::Event::InitApply(cm("a-v2", "a")));
        assert_eq!(
            names("b"),
            ["b-v1"],
            "the old state holds until the relist completes"
        );
        w.apply(&watcher::Event::InitDone);
        assert!(names("b").is_empty());
        assert_eq!(names("a"), ["a-v2"]);
        assert!(store.get("ns", "a-v2").is_some());
        assert!(store.get("other", "a-v2").is_none());
        let uncontrolled = {
            let mut c = cm("free", "x");
            c.metadata.owner_references = None;
            c
        };
        w.apply(&watcher::Event::Apply(uncontrolled));
        assert!(store.get("ns", "free").is_some());
        assert!(names("x").is_empty());
    }

    #[test]
    fn slimming_keeps_what_the_reconcile_reads() {
        let mut c = cm("a", "u");
        c.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        c.data = Some([("prompt.md".to_string(), "# big".to_string())].into());
        c.metadata.labels = Some([("orchestrator.io/task-id".to_string(), "1".to_string())].into());
        slim_config_map(&mut c);
        assert_eq!(c.metadata.managed_fields, None);
        assert_eq!(c.metadata.labels, None);
        assert_eq!(c.data, None);
        assert_eq!(c.metadata.owner_references.as_ref().map(Vec::len), Some(1));
    }

    /// A Job and a Pod as the server sends them, decoded into the cached types and slimmed: what
    /// the reconcile reads survives, as the decision functions see it through `to_job`/`to_pod`.
    #[test]
    fn cached_jobs_and_pods_keep_what_the_reconcile_reads() {
        let owner = serde_json::json!([{"apiVersion": "orchestrator.io/v1alpha1", "kind": "TaskRun",
            "name": "task-1", "uid": "tr-uid", "controller": true}]);
        let job: CachedJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "web-1-v1", "namespace": "ns", "uid": "job-uid",
                "creationTimestamp": "2026-01-01T10:00:00Z",
                "labels": {"orchestrator.io/task-id": "1"},
                "annotations": {"orchestrator.io/spec-hash": "abc"},
                "ownerReferences": owner,
                "managedFields": [{"manager": "orchestrator-controller", "operation": "Update"}]},
            "spec": {"suspend": true, "backoffLimit": 2,
                "selector": {"matchLabels": {"controller-uid": "job-uid"}},
                "template": {"spec": {"containers": [{"name": "agent", "image": "img:1"}]}}},
            "status": {"active": 1, "ready": 1, "startTime": "2026-01-01T10:00:01Z",
                "conditions": [{"type": "Suspended", "status": "True"}]},
        }))
        .unwrap();
        let mut slim = job.clone();
        slim_job(&mut slim);
        assert_eq!(slim.metadata.managed_fields, None);
        let full = slim.to_job();
        assert_eq!(full.metadata.uid.as_deref(), Some("job-uid"));
        assert_eq!(
            full.metadata.annotations.as_ref().unwrap()["orchestrator.io/spec-hash"],
            "abc"
        );
        assert_eq!(
            full.metadata.owner_references.as_ref().unwrap()[0].uid,
            "tr-uid"
        );
        assert!(full.metadata.creation_timestamp.is_some());
        assert_eq!(full.spec.as_ref().unwrap().suspend, Some(true));
        assert_eq!(full.spec.as_ref().unwrap().template, Default::default());
        assert_eq!(full.status, job.status);
        assert_eq!(full.status.as_ref().unwrap().ready, Some(1));
        assert_eq!(CachedJob::from(full.clone()).to_job(), full, "round trip");
        assert_eq!(
            ObjectRef::from_obj(&slim),
            ObjectRef::new("web-1-v1").within("ns")
        );
        assert_eq!(CachedJob::plural(&()), "jobs");
        assert_eq!(CachedJob::api_version(&()), "batch/v1");

        let mut pod: CachedPod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1-v1-x", "namespace": "ns",
                "labels": {"job-name": "web-1-v1"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "web-1-v1",
                    "uid": "job-uid", "controller": true}]},
            "spec": {"containers": [{"name": "agent", "image": "img:1"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "img:1",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]},
        }))
        .unwrap();
        slim_pod(&mut pod);
        assert_eq!(pod.metadata.labels, None);
        let full = pod.to_pod();
        assert!(full.spec.is_none());
        assert_eq!(
            full.metadata.owner_references.as_ref().unwrap()[0].uid,
            "job-uid",
            "how a Pod finds its Job"
        );
        let waiting = full
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .clone()
            .unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));
        assert_eq!(CachedPod::plural(&()), "pods");
        assert_eq!(CachedPod::api_version(&()), "v1");
    }

    /// What the cached types are for: a fraction of the k8s-openapi objects' inline size.
    #[test]
    fn cached_jobs_and_pods_are_a_fraction_of_the_full_objects() {
        use std::mem::size_of;
        assert!(
            size_of::<CachedJob>() * 2 < size_of::<Job>(),
            "CachedJob {} B, Job {} B",
            size_of::<CachedJob>(),
            size_of::<Job>()
        );
        assert!(
            size_of::<CachedPod>() * 3 < size_of::<Pod>() * 2,
            "CachedPod {} B, Pod {} B",
            size_of::<CachedPod>(),
            size_of::<Pod>()
        );
    }
}
