//! What the controller reads, kept in memory by watches: the watch events of Jobs, ConfigMaps and
//! Pods in, stores indexed by controlling owner out, so a reconcile makes no GET or LIST.
//!
//! Each store holds only what a reconcile reads ([`slim_job`], [`slim_config_map`],
//! [`slim_pod`]): no managedFields, no ConfigMap data (the markdown), no pod templates, no
//! labels on ConfigMaps and Pods (owner references, not labels, tie them to their TaskRun and
//! Job; at 10,000 TaskRuns the ten labels of each Pod were about 10 MiB).
//! Jobs and ConfigMaps are indexed by the uid of the TaskRun that controls them; Pods by the uid
//! of their Job, for the Pod-derived phases that build on [`Caches::pods_of_job`].
//!
//! A cache can be behind the server. The write paths make that safe: a Job is created with a
//! create that answers 409 when it already exists (then it is read once and treated as existing),
//! and a ConfigMap is server-side applied, which is idempotent. Names are fixed per TaskRun and
//! version, so a stale cache can never make a second Job for one TaskRun and version.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

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
    pub fn seeded(objects: Vec<K>) -> OwnedStore<K> {
        let (store, mut writer) = owned_store();
        writer.apply(&watcher::Event::Init);
        for obj in objects {
            writer.apply(&watcher::Event::InitApply(obj));
        }
        writer.apply(&watcher::Event::InitDone);
        store
    }
}

/// The controller's caches of its children (and their pods).
#[derive(Clone)]
pub struct Caches {
    pub jobs: OwnedStore<Job>,
    pub config_maps: OwnedStore<ConfigMap>,
    pub pods: OwnedStore<Pod>,
}

impl Caches {
    /// The current version's Job as last seen.
    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.jobs.get(namespace, name)
    }

    /// The pods of the Job with `job_uid`, as last seen.
    pub fn pods_of_job(&self, job_uid: &str) -> Vec<Arc<Pod>> {
        self.pods.owned_by(job_uid)
    }

    /// Resolves once Jobs, ConfigMaps and Pods are listed.
    pub async fn ready(&self) {
        self.jobs.ready().await;
        self.config_maps.ready().await;
        self.pods.ready().await;
    }
}

/// Keeps of a Job what the reconcile reads: metadata (without managedFields), status and the spec
/// without its pod template and selector.
pub fn slim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    if let Some(spec) = job.spec.as_mut() {
        spec.template = Default::default();
        // The server's controller-uid selector: never read here.
        spec.selector = None;
    }
}

/// Keeps of a ConfigMap its metadata (without managedFields and labels); the markdown files are
/// dropped.
pub fn slim_config_map(cm: &mut ConfigMap) {
    cm.metadata.managed_fields = None;
    cm.metadata.labels = None;
    cm.data = None;
    cm.binary_data = None;
}

/// Keeps of a Pod its metadata (without managedFields and labels) and status; the spec is
/// dropped.
pub fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.labels = None;
    pod.spec = None;
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

        let mut job = Job::default();
        job.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        job.spec = Some(Default::default());
        job.spec.as_mut().unwrap().template.metadata = Some(Default::default());
        job.spec.as_mut().unwrap().selector = Some(Default::default());
        job.status = Some(Default::default());
        slim_job(&mut job);
        assert_eq!(job.metadata.managed_fields, None);
        assert_eq!(job.spec.as_ref().unwrap().selector, None);
        assert_eq!(job.spec.unwrap().template, Default::default());
        assert!(job.status.is_some());

        let mut pod = Pod {
            spec: Some(Default::default()),
            status: Some(Default::default()),
            ..Pod::default()
        };
        pod.metadata.labels = Some([("job-name".to_string(), "j".to_string())].into());
        pod.metadata.owner_references = Some(vec![OwnerReference::default()]);
        slim_pod(&mut pod);
        assert!(pod.spec.is_none() && pod.status.is_some());
        assert_eq!(pod.metadata.labels, None);
        assert!(
            pod.metadata.owner_references.is_some(),
            "how a Pod finds its Job"
        );
    }
}
