//! Removes what deploy/ installed, in an order that leaves nothing Terminating: a namespace
//! and flags in; progress lines out, and the objects gone. The controller is stopped first,
//! the TaskRuns are deleted while something can still release their finalizer (the controller
//! when one runs, else this command), and only then the rest, the namespace and the CRD.
//!
//! What to do is decided by pure functions ([`controller_running`], [`held_by_finalizer`],
//! [`namespace_is_ours`]); the functions with a client carry it out.

use crate::crd::TaskRun;
use crate::leader::{LeaseDecision, decide};
use crate::names::FINALIZER;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, ResourceExt};
use std::time::{Duration, Instant};

/// The label kustomize puts on everything deploy/ installs.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const PART_OF: &str = "orchestrator";

/// How long to wait between two looks at something that is going away.
const POLL: Duration = Duration::from_millis(200);

/// The namespaced kinds deploy/ installs, in the order they are deleted (what serves traffic
/// first, what grants rights last). ServiceMonitor comes from deploy/optional and is skipped
/// when the cluster does not serve it.
const NAMESPACED_KINDS: &[(&str, &str, &str, &str)] = &[
    (
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
        "servicemonitors",
    ),
    ("", "v1", "Service", "services"),
    ("apps", "v1", "Deployment", "deployments"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ("", "v1", "ServiceAccount", "serviceaccounts"),
];

/// The cluster-scoped kinds deploy/ installs (the CRD apart), in deletion order.
const CLUSTER_KINDS: &[(&str, &str, &str, &str)] = &[
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
    ),
];

/// What to remove and how long each wait may last.
#[derive(Clone, Debug)]
pub struct UninstallOptions {
    pub namespace: String,
    pub keep_crd: bool,
    /// The Lease a running controller holds (`run --leader-elect --lease-name`).
    pub lease_name: String,
    /// How long a running controller gets to release the TaskRuns' finalizers.
    pub release_timeout: Duration,
    /// How long each other wait may last (pods to stop, the namespace and the CRD to go).
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    #[error(
        "TaskRuns exist in namespace(s) {namespaces} besides {namespace}; deleting the TaskRun \
         CRD would delete them too. Uninstall those first, or pass --keep-crd"
    )]
    OtherTaskRuns {
        namespace: String,
        namespaces: String,
    },
    #[error("{step}: {source}")]
    Api {
        step: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{what} is still there after {timeout:?}: {detail}. Look with `kubectl get {what_kubectl} \
         -o yaml`, then run `orchestrator uninstall` again"
    )]
    Stuck {
        what: String,
        what_kubectl: String,
        timeout: Duration,
        detail: String,
    },
}

fn api_error(step: impl Into<String>) -> impl FnOnce(kube::Error) -> UninstallError {
    let step = step.into();
    move |source| UninstallError::Api { step, source }
}

/// Whether a controller holds the lease now (a live, unexpired holder). Pure.
pub fn controller_running(
    lease: Option<&Lease>,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<String> {
    let spec = lease?.spec.as_ref()?;
    match decide(Some(spec), "orchestrator-uninstall", now) {
        LeaseDecision::Follow { holder } => Some(holder),
        _ => None,
    }
}

/// The TaskRuns that are being deleted and still carry the controller's finalizer. Pure.
pub fn held_by_finalizer(task_runs: &[TaskRun]) -> Vec<&TaskRun> {
    task_runs
        .iter()
        .filter(|tr| tr.finalizers().iter().any(|f| f == FINALIZER))
        .collect()
}

/// A namespace is deleted only when deploy/ made it (it carries the part-of label); a namespace
/// orchestrator was installed into is kept. Pure.
pub fn namespace_is_ours(ns: &Namespace) -> bool {
    ns.labels().get(LABEL_PART_OF).map(String::as_str) == Some(PART_OF)
}

/// Runs the uninstall, printing one line per step through `say`.
pub async fn uninstall(
    client: Client,
    options: &UninstallOptions,
    say: &mut dyn FnMut(String),
) -> Result<(), UninstallError> {
    let ns = options.namespace.as_str();
    let crd_name = crate::crd::task_run_crd().name_any();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_present = crds
        .get_opt(&crd_name)
        .await
        .map_err(api_error(format!(
            "reading CustomResourceDefinition {crd_name}"
        )))?
        .is_some();
    let all_task_runs: Vec<TaskRun> = if crd_present {
        Api::<TaskRun>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_error("listing TaskRuns"))?
            .items
    } else {
        Vec::new()
    };
    if !options.keep_crd {
        let mut others: Vec<String> = all_task_runs
            .iter()
            .filter_map(|tr| tr.namespace())
            .filter(|n| n != ns)
            .collect();
        others.sort();
        others.dedup();
        if !others.is_empty() {
            return Err(UninstallError::OtherTaskRuns {
                namespace: ns.to_string(),
                namespaces: others.join(", "),
            });
        }
    }

    stop_deployments(&client, options, say).await?;
    if crd_present {
        release_task_runs(&client, options, say).await?;
    }
    delete_labelled(&client, Some(ns), NAMESPACED_KINDS, say).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    if delete_if_present(&leases, &options.lease_name).await? {
        say(format!("deleted Lease {ns}/{}", options.lease_name));
    }
    delete_labelled(&client, None, CLUSTER_KINDS, say).await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces
        .get_opt(ns)
        .await
        .map_err(api_error(format!("reading namespace {ns}")))?
    {
        Some(found) if namespace_is_ours(&found) => {
            delete_if_present(&namespaces, ns).await?;
            say(format!("deleting namespace {ns} ..."));
            let waited = wait_gone(&namespaces, ns, options.timeout, || {
                format!("namespace {ns}")
            })
            .await?;
            say(format!("namespace {ns} is gone ({})", secs(waited)));
        }
        Some(_) => say(format!(
            "namespace {ns} was not created by deploy/ (no {LABEL_PART_OF}={PART_OF} label): kept"
        )),
        None => say(format!("namespace {ns} is gone")),
    }

    if options.keep_crd {
        say(format!(
            "--keep-crd: kept CustomResourceDefinition {crd_name}"
        ));
    } else if crd_present {
        delete_if_present(&crds, &crd_name).await?;
        say(format!("deleting CustomResourceDefinition {crd_name} ..."));
        let waited = wait_gone(&crds, &crd_name, options.timeout, || {
            format!("customresourcedefinition {crd_name}")
        })
        .await?;
        say(format!(
            "CustomResourceDefinition {crd_name} is gone ({})",
            secs(waited)
        ));
    }
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Scales deploy/'s Deployments to zero and waits until their pods are gone, so no new work
/// starts and no replica recreates what is being deleted.
async fn stop_deployments(
    client: &Client,
    options: &UninstallOptions,
    say: &mut dyn FnMut(String),
) -> Result<(), UninstallError> {
    let ns = options.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let selector = format!("{LABEL_PART_OF}={PART_OF}");
    let found = match deployments
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(e) => return Err(api_error(format!("listing Deployments in {ns}"))(e)),
    };
    for deployment in found {
        let name = deployment.name_any();
        deployments
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
            )
            .await
            .map_err(api_error(format!("scaling Deployment {ns}/{name} to zero")))?;
        say(format!("scaled Deployment {ns}/{name} to 0 replicas"));
        let labels = deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        if labels.is_empty() {
            continue;
        }
        let pod_selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let params = ListParams::default().labels(&pod_selector.join(","));
        let started = Instant::now();
        loop {
            let left = pods
                .list(&params)
                .await
                .map_err(api_error(format!(
                    "listing the pods of Deployment {ns}/{name}"
                )))?
                .items;
            if left.is_empty() {
                break;
            }
            if started.elapsed() > options.timeout {
                return Err(UninstallError::Stuck {
                    what: format!("the pods of Deployment {ns}/{name}"),
                    what_kubectl: format!("pods -n {ns} -l {}", pod_selector.join(",")),
                    timeout: options.timeout,
                    detail: format!("{} pod(s) still run", left.len()),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        say(format!(
            "the pods of Deployment {ns}/{name} are gone ({})",
            secs(started.elapsed())
        ));
    }
    Ok(())
}

/// Deletes the namespace's TaskRuns; a running controller (a live lease) gets
/// `release_timeout` to release their finalizers, and whatever is still held after that, or at
/// once when no controller runs, is released here.
async fn release_task_runs(
    client: &Client,
    options: &UninstallOptions,
    say: &mut dyn FnMut(String),
) -> Result<(), UninstallError> {
    let ns = options.namespace.as_str();
    let api: Api<TaskRun> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!("listing TaskRuns in {ns}")))?
        .items;
    if list.is_empty() {
        say(format!("no TaskRuns in {ns}"));
        return Ok(());
    }
    for tr in &list {
        delete_if_present(&api, &tr.name_any()).await?;
    }
    say(format!("deleting {} TaskRun(s) in {ns}", list.len()));
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let lease = leases
        .get_opt(&options.lease_name)
        .await
        .map_err(api_error(format!(
            "reading Lease {ns}/{}",
            options.lease_name
        )))?;
    let started = Instant::now();
    match controller_running(lease.as_ref(), k8s_openapi::jiff::Timestamp::now()) {
        Some(holder) => {
            say(format!(
                "the controller {holder} holds the lease {}; waiting up to {:?} for it to \
                 release them",
                options.lease_name, options.release_timeout
            ));
            let mut released_by_controller = false;
            let mut lease_lapsed = false;
            while started.elapsed() < options.release_timeout {
                let left = api
                    .list(&ListParams::default())
                    .await
                    .map_err(api_error(format!("listing TaskRuns in {ns}")))?
                    .items;
                if left.is_empty() {
                    released_by_controller = true;
                    break;
                }
                // A holder that was killed stops renewing: once its lease lapses, nobody
                // will release them.
                let lease = leases
                    .get_opt(&options.lease_name)
                    .await
                    .map_err(api_error(format!(
                        "reading Lease {ns}/{}",
                        options.lease_name
                    )))?;
                if controller_running(lease.as_ref(), k8s_openapi::jiff::Timestamp::now()).is_none()
                {
                    lease_lapsed = true;
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            if released_by_controller {
                say(format!(
                    "the controller released every TaskRun ({})",
                    secs(started.elapsed())
                ));
                return Ok(());
            }
            say(if lease_lapsed {
                format!(
                    "the lease {} lapsed after {} (its holder stopped): releasing the \
                     finalizers myself",
                    options.lease_name,
                    secs(started.elapsed())
                )
            } else {
                format!(
                    "the controller did not release them within {:?}: releasing the finalizers \
                     myself",
                    options.release_timeout
                )
            });
        }
        None => say(format!(
            "no controller runs (no live holder of the lease {}): releasing the finalizers \
             myself; the Jobs and ConfigMaps they own are garbage-collected",
            options.lease_name
        )),
    }
    let left = api
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!("listing TaskRuns in {ns}")))?
        .items;
    let held = held_by_finalizer(&left);
    for tr in &held {
        let name = tr.name_any();
        let keep: Vec<String> = tr
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        // The resourceVersion makes this a compare-and-swap: a controller that released it
        // meanwhile wins, and the conflict is answered by looking again.
        let patch = serde_json::json!({
            "metadata": {"finalizers": keep, "resourceVersion": tr.resource_version()}
        });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                return Err(api_error(format!(
                    "removing the finalizer {FINALIZER} from TaskRun {ns}/{name}"
                ))(e));
            }
        }
    }
    if !held.is_empty() {
        say(format!(
            "released the finalizer of {} TaskRun(s) in {ns}",
            held.len()
        ));
    }
    let waited = wait_empty(&api, options.timeout, ns).await?;
    say(format!("every TaskRun in {ns} is gone ({})", secs(waited)));
    Ok(())
}

async fn wait_empty(
    api: &Api<TaskRun>,
    timeout: Duration,
    ns: &str,
) -> Result<Duration, UninstallError> {
    let started = Instant::now();
    loop {
        let left = api
            .list(&ListParams::default())
            .await
            .map_err(api_error(format!("listing TaskRuns in {ns}")))?
            .items;
        if left.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            let detail = left
                .iter()
                .map(|tr| format!("{} (finalizers {:?})", tr.name_any(), tr.finalizers()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(UninstallError::Stuck {
                what: format!("TaskRuns in {ns}"),
                what_kubectl: format!("taskruns -n {ns}"),
                timeout,
                detail,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Deletes every object of `kinds` with deploy/'s label, kind by kind; a kind the cluster does
/// not serve is skipped.
async fn delete_labelled(
    client: &Client,
    namespace: Option<&str>,
    kinds: &[(&str, &str, &str, &str)],
    say: &mut dyn FnMut(String),
) -> Result<(), UninstallError> {
    let selector = format!("{LABEL_PART_OF}={PART_OF}");
    for (group, version, kind, plural) in kinds {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let found = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            // Not served here (no Prometheus Operator): nothing of it was installed.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(api_error(format!("listing {kind}s"))(e)),
        };
        for object in found {
            let name = object.name_any();
            if delete_if_present(&api, &name).await? {
                let place = namespace.map_or(String::new(), |ns| format!("{ns}/"));
                say(format!("deleted {kind} {place}{name}"));
            }
        }
    }
    Ok(())
}

/// Deletes one object in the background; `false` when it was already gone.
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, UninstallError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(api_error(format!("deleting {name}"))(e)),
    }
}

/// Waits until `name` is gone; names what holds it when it is not within `timeout`.
async fn wait_gone<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    describe: impl Fn() -> String,
) -> Result<Duration, UninstallError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let started = Instant::now();
    loop {
        let found = api
            .get_opt(name)
            .await
            .map_err(api_error(format!("reading {}", describe())))?;
        let Some(found) = found else {
            return Ok(started.elapsed());
        };
        if started.elapsed() > timeout {
            let value = serde_json::to_value(&found).unwrap_or_default();
            let conditions = value
                .pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .map(|c| {
                    c.iter()
                        .filter_map(|c| c["message"].as_str().map(String::from))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(UninstallError::Stuck {
                what: describe(),
                what_kubectl: describe(),
                timeout,
                detail: format!(
                    "finalizers {:?}{}",
                    found.finalizers(),
                    if conditions.is_empty() {
                        String::new()
                    } else {
                        format!(", {conditions}")
                    }
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        let now = k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap();
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(
                        renewed_secs_ago,
                    ))
                    .unwrap(),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_controller_runs_while_someone_holds_a_live_lease() {
        let now = k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap();
        for (lease, want) in [
            (None, None),
            (Some(lease("pod-a", 2, 15)), Some("pod-a".to_string())),
            (Some(lease("pod-a", 20, 15)), None),
            (Some(lease("", 1, 15)), None),
        ] {
            assert_eq!(controller_running(lease.as_ref(), now), want, "{lease:?}");
        }
    }

    fn task_run(finalizers: &[&str]) -> TaskRun {
        let mut tr = TaskRun::new(
            "task-1",
            serde_json::from_value(serde_json::json!({
                "taskId": 1, "serviceName": "web", "agentName": "a",
                "contextVersion": 1, "markdownFiles": []
            }))
            .unwrap(),
        );
        tr.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        tr
    }

    #[test]
    fn only_our_finalizer_is_released() {
        let runs = [
            task_run(&[FINALIZER]),
            task_run(&[]),
            task_run(&["someone.else/finalizer"]),
        ];
        assert_eq!(held_by_finalizer(&runs).len(), 1);
    }

    #[test]
    fn only_a_namespace_deploy_made_is_deleted() {
        let mut ns = Namespace::default();
        assert!(!namespace_is_ours(&ns));
        ns.metadata.labels = Some([(LABEL_PART_OF.to_string(), PART_OF.to_string())].into());
        assert!(namespace_is_ours(&ns));
    }
}
