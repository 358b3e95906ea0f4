//! The embedded API server (or the cluster in KUBECONFIG) driven through kube-rs: CRUD, error
//! codes, selectors, pagination, patches, status subresource, finalizers, garbage collection.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::response::Status;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::fixture::{TaskRun, TaskRunSpec};
use support::{cluster, wait_until};

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

fn api_error(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn rv(o: &impl kube::Resource) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn configmap_crud_with_optimistic_concurrency() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let created = api
        .create(&PostParams::default(), &cm("one", &[], &[("a", "1")]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.metadata.namespace.as_deref(),
        Some(c.namespace.as_str())
    );

    let got = api.get("one").await.unwrap();
    assert_eq!(got.data, created.data);
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut changed = got.clone();
    changed.data = Some([("a".to_string(), "2".to_string())].into());
    let replaced = api
        .replace("one", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert!(
        rv(&replaced) > rv(&created),
        "resourceVersion increases on update"
    );
    assert_eq!(replaced.metadata.uid, created.metadata.uid);

    // The same stale object again: 409 Conflict.
    let stale = api_error(
        api.replace("one", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    let dup = api_error(
        api.create(&PostParams::default(), &cm("one", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"one\" already exists");

    api.delete("one", &DeleteParams::default()).await.unwrap();
    let gone = api_error(api.get("one").await.unwrap_err());
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
    assert_eq!(gone.message, "configmaps \"one\" not found");
    let details = gone.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("one", "configmaps")
    );
}

#[tokio::test]
async fn generate_name_and_namespace_checks() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let mut o = cm("", &[], &[]);
    o.metadata.name = None;
    o.metadata.generate_name = Some("gen-".into());
    let a = api.create(&PostParams::default(), &o).await.unwrap();
    let b = api.create(&PostParams::default(), &o).await.unwrap();
    let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(na.starts_with("gen-") && na.len() == 9, "{na}");
    assert_ne!(na, nb);

    let mut nameless = cm("", &[], &[]);
    nameless.metadata.name = None;
    let e = api_error(
        api.create(&PostParams::default(), &nameless)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));

    let missing: Api<ConfigMap> = Api::namespaced(c.client.clone(), "no-such-namespace-xyz");
    let e = api_error(
        missing
            .create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "namespaces \"no-such-namespace-xyz\" not found");

    let bad = api_error(
        api.create(&PostParams::default(), &cm("Not_Valid", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 422);
    assert!(bad.message.contains("metadata.name"), "{}", bad.message);
}

#[tokio::test]
async fn label_and_field_selectors_on_list_and_deletecollection() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    for (name, app, tier) in [
        ("a", "web", "front"),
        ("b", "web", "back"),
        ("c", "db", "back"),
        ("d", "", ""),
    ] {
        let mut labels = vec![];
        if !app.is_empty() {
            labels.push(("app", app));
            labels.push(("tier", tier));
        }
        api.create(&PostParams::default(), &cm(name, &labels, &[]))
            .await
            .unwrap();
    }
    let names = |sel: &'static str, fields: &'static str| {
        let api = api.clone();
        async move {
            let mut lp = ListParams::default();
            if !sel.is_empty() {
                lp = lp.labels(sel);
            }
            if !fields.is_empty() {
                lp = lp.fields(fields);
            }
            let mut v: Vec<String> = api
                .list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|o| o.metadata.name.unwrap())
                .collect();
            v.sort();
            v.join(",")
        }
    };
    assert_eq!(names("app=web", "").await, "a,b");
    assert_eq!(names("app==web,tier=back", "").await, "b");
    assert_eq!(names("app!=web", "").await, "c,d");
    assert_eq!(names("app in (web,db)", "").await, "a,b,c");
    assert_eq!(names("app notin (web)", "").await, "c,d");
    assert_eq!(names("tier", "").await, "a,b,c");
    assert_eq!(names("!tier", "").await, "d");
    assert_eq!(names("", "metadata.name=c").await, "c");
    assert_eq!(names("", "metadata.name!=c").await, "a,b,d");
    assert_eq!(names("app=web", "metadata.name!=a").await, "b");

    let bad = api_error(
        api.list(&ListParams::default().fields("data.x=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);
    // `in ()` is valid on kube-apiserver and matches nothing.
    assert_eq!(names("app in ()", "").await, "");

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=back"),
    )
    .await
    .unwrap();
    assert_eq!(names("", "").await, "a,d");
}

#[tokio::test]
async fn list_pagination_with_limit_and_continue() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    for i in 0..25 {
        api.create(
            &PostParams::default(),
            &cm(&format!("cm-{i:02}"), &[("page", "yes")], &[]),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().labels("page=yes").limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items.into_iter().map(|o| o.metadata.name.unwrap()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
        assert!(page.metadata.remaining_item_count.unwrap_or(1) > 0);
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(seen, want, "every object exactly once, in name order");
}

#[tokio::test]
async fn merge_and_json_patches() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    api.create(
        &PostParams::default(),
        &cm("p", &[("app", "web")], &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();

    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "10", "b": null, "c": "3"}})),
        )
        .await
        .unwrap();
    let data = merged.data.unwrap();
    assert_eq!(data.get("a").map(String::as_str), Some("10"));
    assert!(
        !data.contains_key("b"),
        "null in a merge patch removes the key"
    );
    assert_eq!(data.get("c").map(String::as_str), Some("3"));

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/data/a", "value": "11"},
        {"op": "add", "path": "/metadata/labels/extra", "value": "yes"},
    ]))
    .unwrap();
    let patched = api
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["a"], "11");
    assert_eq!(patched.metadata.labels.unwrap()["extra"], "yes");

    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "nope"},
    ]))
    .unwrap();
    let e = api_error(
        api.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{e:?}");

    let stale = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"a": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        api_error(stale).code,
        409,
        "a resourceVersion in a patch is a precondition"
    );

    let missing = api_error(
        api.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(missing.code, 404);
}

fn task_run(name: &str, version: i64) -> TaskRun {
    TaskRun::new(
        name,
        TaskRunSpec {
            task_id: 7,
            service_name: "svc".into(),
            agent_name: "agent".into(),
            context_version: version,
            content_digest: "sha256:00".into(),
            source_path: "tasks/7-x".into(),
            markdown_files: vec![],
        },
    )
}

#[tokio::test]
async fn status_subresource_is_isolated_and_generation_tracks_spec() {
    let c = cluster().await;
    c.install_task_run_crd().await;
    let api: Api<TaskRun> = c.api();
    let mut tr = task_run("task-7", 1);
    tr.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    let created = api.create(&PostParams::default(), &tr).await.unwrap();
    assert!(
        created.status.is_none(),
        "create ignores status when the status subresource is on"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let st = api
        .patch_status(
            "task-7",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}, "spec": {"contextVersion": 99}})),
        )
        .await
        .unwrap();
    assert_eq!(
        st.status.as_ref().unwrap().phase.unwrap().as_str(),
        "Running"
    );
    assert_eq!(
        st.status.as_ref().unwrap().attempts,
        0,
        "schema default applied"
    );
    assert_eq!(
        st.spec.context_version, 1,
        "a status write leaves spec alone"
    );
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    let main = api
        .patch(
            "task-7",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"contextVersion": 2}, "status": {"phase": "Failed"}})),
        )
        .await
        .unwrap();
    assert_eq!(main.spec.context_version, 2);
    assert_eq!(
        main.status.as_ref().unwrap().phase.unwrap().as_str(),
        "Running",
        "main resource writes leave status alone"
    );
    assert_eq!(main.metadata.generation, Some(2));

    let labels_only = api
        .patch(
            "task-7",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labels_only.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let mut o = cm("fin", &[], &[]);
    o.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &o).await.unwrap();

    let pending = api.delete("fin", &DeleteParams::default()).await.unwrap();
    assert!(pending.is_left(), "deletion waits for the finalizer");
    let held = api.get("fin").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());

    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let e = api_error(api.get("fin").await.unwrap_err());
    assert_eq!(
        e.code, 404,
        "the object goes once its last finalizer is removed"
    );
}

async fn owner_with_dependents(c: &support::TestCluster, owner: &str, n: usize) -> Api<ConfigMap> {
    let api: Api<ConfigMap> = c.api();
    let o = api
        .create(&PostParams::default(), &cm(owner, &[], &[]))
        .await
        .unwrap();
    for i in 0..n {
        let mut d = cm(&format!("{owner}-dep-{i}"), &[], &[]);
        d.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.metadata.uid.clone().unwrap(),
            "blockOwnerDeletion": true,
        }))
        .unwrap()]);
        api.create(&PostParams::default(), &d).await.unwrap();
    }
    api
}

async fn names_with_prefix(api: &Api<ConfigMap>, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn garbage_collector_follows_propagation_policy() {
    let c = cluster().await;
    let t = Duration::from_secs(30);

    let api = owner_with_dependents(&c, "bg", 2).await;
    api.delete("bg", &DeleteParams::background()).await.unwrap();
    wait_until(t, || async {
        names_with_prefix(&api, "bg").await.is_empty()
    })
    .await
    .expect("background deletion removes the dependents");

    let api = owner_with_dependents(&c, "or", 2).await;
    api.delete("or", &DeleteParams::orphan()).await.unwrap();
    wait_until(t, || async {
        names_with_prefix(&api, "or").await == ["or-dep-0", "or-dep-1"]
    })
    .await
    .expect("orphan deletion removes the owner only");
    let dep = api.get("or-dep-0").await.unwrap();
    assert!(
        dep.metadata.owner_references.unwrap_or_default().is_empty(),
        "orphans lose the owner reference"
    );

    let api = owner_with_dependents(&c, "fg", 2).await;
    api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    wait_until(t, || async {
        names_with_prefix(&api, "fg").await.is_empty()
    })
    .await
    .expect("foreground deletion removes the dependents, then the owner");
}

#[tokio::test]
async fn raw_error_answers_are_clean_statuses() {
    let c = cluster().await;
    let ns = &c.namespace;
    let send = |method: &str, uri: String, content_type: &str, body: Vec<u8>| {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body)
            .unwrap();
        let client = c.client.clone();
        async move { client.request::<Value>(req).await.map_err(api_error) }
    };
    let path = format!("/api/v1/namespaces/{ns}/configmaps");

    let e = send(
        "POST",
        path.clone(),
        "application/json",
        b"{not json".to_vec(),
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));

    let e = send(
        "GET",
        format!("/api/v1/namespaces/{ns}/widgets"),
        "application/json",
        vec![],
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));

    let big = serde_json::to_vec(
        &json!({"metadata": {"name": "big"}, "data": {"x": "a".repeat(3 * 1024 * 1024 + 10)}}),
    )
    .unwrap();
    let e = send("POST", path.clone(), "application/json", big)
        .await
        .unwrap_err();
    assert_eq!((e.code, e.reason.as_str()), (413, "RequestEntityTooLarge"));

    let over_one_mib = serde_json::to_vec(
        &json!({"metadata": {"name": "big"}, "data": {"x": "a".repeat(1024 * 1024 + 1)}}),
    )
    .unwrap();
    let e = send("POST", path.clone(), "application/json", over_one_mib)
        .await
        .unwrap_err();
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));

    send(
        "POST",
        path.clone(),
        "application/json",
        serde_json::to_vec(&json!({"metadata": {"name": "p"}})).unwrap(),
    )
    .await
    .unwrap();
    let e = send(
        "PATCH",
        format!("{path}/p"),
        "application/json-patch+json",
        b"{\"op\": 1}".to_vec(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, 400, "a JSON patch that is not a list of operations");
    let e = send(
        "PATCH",
        format!("{path}/p"),
        "application/merge-patch+json",
        b"[1,".to_vec(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, 400);
    let e = send("PATCH", format!("{path}/p"), "text/plain", b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(e.code, 415);
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let c = cluster().await;
    let Some(server) = c.server() else {
        eprintln!("skipping: authentication of a real cluster is not ours to test");
        return;
    };
    let mut config = server.config();
    config.auth_info = Default::default();
    let anonymous = kube::Client::try_from(config).unwrap();
    let e = api_error(
        Api::<ConfigMap>::all(anonymous)
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));
}

#[tokio::test]
async fn request_stats_count_reads_and_writes() {
    let c = cluster().await;
    let Some(before) = c.request_stats() else {
        eprintln!("skipping: request counts exist only on the embedded server");
        return;
    };
    let api: Api<ConfigMap> = c.api();
    api.create(&PostParams::default(), &cm("s", &[], &[]))
        .await
        .unwrap();
    api.get("s").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    let d = c.request_stats().unwrap().since(&before);
    assert_eq!(d.writes(), 2);
    assert_eq!(d.reads(), 2);
    assert_eq!(d.count("configmaps", "patch"), 1);
    assert_eq!(d.writes_to("configmaps"), 2);
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_contents() {
    use k8s_openapi::api::core::v1::Namespace;
    let c = cluster().await;
    let name = support::unique_name("doomed");
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), &name);
    api.create(&PostParams::default(), &cm("inside", &[], &[]))
        .await
        .unwrap();

    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    // While it terminates (or once it is gone) nothing new can be created in it.
    let e = api_error(
        api.create(&PostParams::default(), &cm("late", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert!(matches!(e.code, 403 | 404), "{e:?}");
    wait_until(Duration::from_secs(60), || async {
        matches!(namespaces.get(&name).await, Err(kube::Error::Api(s)) if s.code == 404)
    })
    .await
    .expect("the namespace goes away once it is empty");
    let e = api_error(api.get("inside").await.unwrap_err());
    assert_eq!(e.code, 404);
}

#[tokio::test]
async fn events_are_one_store_seen_through_both_apis() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let c = cluster().await;
    let new_api: Api<Event> = c.api();
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "example.com/controller", "reportingInstance": "test",
        "action": "Reconcile", "reason": "Started", "type": "Normal", "note": "job started",
        "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": c.namespace},
    }))
    .unwrap();
    new_api.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<CoreEvent> = c.api();
    let seen = core.get("e1").await.unwrap();
    assert_eq!(seen.message.as_deref(), Some("job started"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("x"));
    let by_field = core
        .list(&ListParams::default().fields("involvedObject.name=x"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    let back = new_api
        .list(&ListParams::default().fields("regarding.name=x"))
        .await
        .unwrap();
    assert_eq!(back.items[0].note.as_deref(), Some("job started"));
    // The note is immutable through events.k8s.io/v1; the series is not.
    let patched = new_api
        .patch(
            "e1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.series.map(|s| s.count), Some(2));
    assert_eq!(
        core.get("e1").await.unwrap().series.and_then(|s| s.count),
        Some(2)
    );
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let answered = api
        .create(&pp, &cm("dry", &[], &[("a", "1")]))
        .await
        .unwrap();
    assert_eq!(answered.metadata.name.as_deref(), Some("dry"));
    assert_eq!(api_error(api.get("dry").await.unwrap_err()).code, 404);
    api.create(&PostParams::default(), &cm("wet", &[], &[("a", "1")]))
        .await
        .unwrap();
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete("wet", &dp).await.unwrap();
    assert!(
        api.get("wet").await.is_ok(),
        "a dry-run delete keeps the object"
    );
}

/// The kubeconfig is renamed into place: a reader that waits for the file sees all of it
/// (a test that read it as soon as it existed once met a half-written one), owner-only, and
/// nothing is left beside it.
#[tokio::test]
async fn the_kubeconfig_file_appears_whole_and_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = kube_envtest::ApiServer::start(kube_envtest::ApiServerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "an older file").unwrap();
    server.write_kubeconfig(&path).unwrap();
    let config = kube::config::Kubeconfig::read_from(&path).unwrap();
    assert!(config.current_context.is_some(), "{config:?}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["kubeconfig"]);
    server.shutdown().await;
}
