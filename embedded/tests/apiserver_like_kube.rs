//! Where kube-apiserver v1.28 was seen to answer differently from the embedded server, driven
//! through kube-rs: each test passes unchanged against a real cluster (`KUBECONFIG`) and
//! against the embedded one. See DESIGN.md, "Checked on kube-apiserver v1.28.7".

mod support;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube_envtest::{ApiServerConfig, KubernetesVersion};
use serde_json::json;
use std::time::Duration;
use support::{cluster, embedded_cluster, install_crd, unique_name, wait_until};

fn cm(name: &str, extra: serde_json::Value) -> ConfigMap {
    let mut v = json!({"metadata": {"name": name}, "data": {"k": "v"}});
    if let Some(m) = extra.as_object() {
        for (k, x) in m {
            v["metadata"][k] = x.clone();
        }
    }
    serde_json::from_value(v).unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(e) => *e,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn a_watch_from_before_the_servers_window_gets_410_expired() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    // `1` is older than any watch cache: the real one holds only what happened since it
    // started, within a bounded window.
    let mut stream = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the watch answers")
        .expect("one event");
    match first.expect("a watch event") {
        WatchEvent::Error(s) => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"), "{s:?}");
        }
        other => panic!("expected ERROR 410 Expired, got {other:?}"),
    }
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let dependent = cm(
        "dependent",
        json!({
            "finalizers": ["example.com/hold"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                 "uid": uid, "blockOwnerDeletion": true}],
        }),
    );
    api.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    // A dependent that does not block: deleted too, but it does not hold the owner.
    let loose = cm(
        "loose",
        json!({
            "finalizers": ["example.com/hold"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                 "uid": uid, "blockOwnerDeletion": false}],
        }),
    );
    api.create(&PostParams::default(), &loose).await.unwrap();
    api.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();

    // The garbage collector deletes the dependent; its finalizer holds it, and it holds the
    // owner.
    wait_until(Duration::from_secs(30), || async {
        api.get("dependent")
            .await
            .is_ok_and(|d| d.metadata.deletion_timestamp.is_some())
    })
    .await
    .expect("the dependent is being deleted");
    let held = api.get("owner").await.expect("the owner is still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(
        held.metadata.finalizers.as_deref(),
        Some(&["foregroundDeletion".to_string()][..])
    );

    api.patch(
        "dependent",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(30), || async {
        matches!(api.get_opt("owner").await, Ok(None))
    })
    .await
    .expect("the owner goes once its blocking dependent is gone");
    let loose = api
        .get("loose")
        .await
        .expect("the non-blocking dependent still waits on its finalizer");
    assert!(loose.metadata.deletion_timestamp.is_some());
    api.patch(
        "loose",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_empty_in_set_is_valid_and_matches_nothing() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    api.create(
        &PostParams::default(),
        &cm("a", json!({"labels": {"app": "web"}})),
    )
    .await
    .unwrap();
    let none = api
        .list(&ListParams::default().labels("app in ()"))
        .await
        .expect("`in ()` is a valid selector");
    assert!(none.items.is_empty());
    let all = api
        .list(&ListParams::default().labels("app notin ()"))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
}

fn job(name: &str, image: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"suspend": true, "template": {"metadata": {"labels": {"app": "a"}}, "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "command": ["true"]}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_job_gets_a_generated_selector_and_its_template_is_immutable() {
    let c = cluster().await;
    let jobs: Api<Job> = c.api();
    // Suspended, so that nothing runs on a real cluster either.
    let created = jobs
        .create(&PostParams::default(), &job("imm", "busybox:1"))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let spec = created.spec.clone().unwrap();
    let selector = spec.selector.unwrap().match_labels.unwrap();
    assert_eq!(selector["batch.kubernetes.io/controller-uid"], uid);
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["controller-uid"], uid);
    assert_eq!(labels["batch.kubernetes.io/job-name"], "imm");
    assert_eq!(labels["job-name"], "imm");
    assert_eq!(labels["app"], "a");

    let immutable = |e: kube::Error, how: &str| {
        let e = api_error(e);
        assert_eq!(
            (e.code, e.reason.as_str()),
            (422, "Invalid"),
            "{how}: {e:?}"
        );
        assert!(
            e.message.contains("spec.template") && e.message.contains("field is immutable"),
            "{how}: {}",
            e.message
        );
    };
    let mut changed = created.clone();
    changed
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("busybox:2".into());
    immutable(
        jobs.replace("imm", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
        "update",
    );
    let image_patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}});
    immutable(
        jobs.patch(
            "imm",
            &PatchParams::default(),
            &Patch::Strategic(&image_patch),
        )
        .await
        .unwrap_err(),
        "strategic merge patch",
    );
    let mut applied = job("imm", "busybox:2");
    applied.metadata.managed_fields = None;
    immutable(
        jobs.patch(
            "imm",
            &PatchParams::apply("envtest-tests").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap_err(),
        "server-side apply",
    );
    // What may change still changes.
    jobs.patch(
        "imm",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 30}})),
    )
    .await
    .expect("activeDeadlineSeconds is mutable");
}

#[tokio::test]
async fn an_events_v1_note_is_immutable() {
    use k8s_openapi::api::events::v1::Event;
    let c = cluster().await;
    let events: Api<Event> = c.api();
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "ev"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": {"kind": "ConfigMap", "name": "x", "namespace": c.namespace, "apiVersion": "v1"},
        "note": "first", "reason": "Tested", "type": "Normal", "action": "Test",
        "reportingController": "example.com/tests", "reportingInstance": "tests-1",
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let e = api_error(
        events
            .patch(
                "ev",
                &PatchParams::default(),
                &Patch::Merge(json!({"note": "second"})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(e.message.contains("field is immutable"), "{}", e.message);
    // The series may change.
    events
        .patch(
            "ev",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}}),
            ),
        )
        .await
        .expect("the series of an Event is mutable");
}

#[tokio::test]
async fn an_enum_error_lists_null_for_a_nullable_enum_as_the_real_server_does() {
    let c = cluster().await;
    let group = format!("{}.example.com", unique_name("enum"));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        // What schemars generates for an Option<enum>.
                        "phase": {"type": "string", "nullable": true,
                                  "enum": ["Pending", "Running", null]}}}}}}}]}
    }))
    .unwrap();
    install_crd(&c.client, &crd).await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Gadget"));
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &c.namespace, &ar);
    let mut obj = DynamicObject::new("g", &ar);
    obj.data = json!({"spec": {"phase": "Bogus"}});
    let e = api_error(api.create(&PostParams::default(), &obj).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains(r#"spec.phase: Unsupported value: "Bogus": supported values: "Pending", "Running", "null""#),
        "{}",
        e.message
    );
    let _ = Api::<CustomResourceDefinition>::all(c.client.clone())
        .delete(&format!("gadgets.{group}"), &DeleteParams::default())
        .await;
}

async fn send_initial_events(c: &support::TestCluster) -> Result<(), kube::core::Status> {
    let api: Api<ConfigMap> = c.api();
    let wp = WatchParams::streaming_lists();
    let mut stream = api.watch(&wp, "").await.map_err(api_error)?.boxed();
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(WatchEvent::Error(s)))) => Err(*s),
        Ok(Some(Err(e))) => Err(api_error(e)),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn send_initial_events_follows_the_servers_kubernetes_version() {
    let c = cluster().await;
    let info = c.client.apiserver_version().await.unwrap();
    let version: KubernetesVersion = format!("{}.{}", info.major, info.minor.trim_end_matches('+'))
        .parse()
        .unwrap();
    let refused = |e: &kube::core::Status| {
        e.code == 422
            && e.message.contains(
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
            )
    };
    match send_initial_events(&c).await {
        Ok(()) => assert!(version.serves_watch_list(), "v{version} accepted it"),
        Err(e) => assert!(
            !version.serves_watch_list() && refused(&e),
            "v{version}: {e:?}"
        ),
    }
    if c.is_embedded() {
        let old = embedded_cluster(ApiServerConfig {
            kubernetes_version: KubernetesVersion::new(1, 28),
            ..Default::default()
        })
        .await;
        let v = old.client.apiserver_version().await.unwrap();
        assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "28"));
        let e = send_initial_events(&old)
            .await
            .expect_err("v1.28 refuses it");
        assert!(refused(&e), "{e:?}");
    }
}

#[tokio::test]
async fn a_job_whose_pod_cannot_be_created_stays_active_with_failed_create_events() {
    use k8s_openapi::api::core::v1::{Event, Pod};
    use kube_envtest::runner::{JobRunner, RunnerConfig};
    let c = cluster().await;
    // The Job controller's part: kube-controller-manager on a real cluster, the local runner
    // here (no kubelet is needed: the Pod is never created).
    let logs = tempfile::tempdir().unwrap();
    let runner = c.is_embedded().then(|| {
        JobRunner::start(
            c.client.clone(),
            RunnerConfig {
                namespace: Some(c.namespace.clone()),
                ..RunnerConfig::new(logs.path())
            },
        )
    });
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "no-sa"},
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 300, "template": {"spec": {
            "restartPolicy": "Never", "serviceAccountName": "missing-sa",
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}
    }))
    .unwrap();
    let jobs: Api<Job> = c.api();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let events: Api<Event> = c.api();
    let found = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    wait_until(Duration::from_secs(60), || {
        let events = events.clone();
        let found = found.clone();
        async move {
            let list = events
                .list(&ListParams::default().fields("involvedObject.name=no-sa"))
                .await
                .unwrap();
            let event = list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("FailedCreate") && e.type_.as_deref() == Some("Warning")
            });
            let seen = event.is_some();
            *found.lock().unwrap() = event.and_then(|e| e.message);
            seen
        }
    })
    .await
    .expect("a FailedCreate Warning event on the Job");
    let message = found.lock().unwrap().clone().unwrap_or_default();
    assert!(
        message.contains(r#"serviceaccount "missing-sa" not found"#),
        "{message}"
    );
    let pods: Api<Pod> = c.api();
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let status = jobs.get("no-sa").await.unwrap().status.unwrap_or_default();
    assert!(
        !status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True"),
        "the Job waits for its deadline, it does not fail at once"
    );
    assert_eq!(status.failed, None);
    if let Some(r) = runner {
        r.shutdown().await;
    }
}
