//! CustomResourceDefinitions through kube-rs: registration and discovery, schema validation
//! (422 with field paths), defaults and pruning, Table output, and CRD deletion.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};
use std::time::Duration;
use support::fixture::TaskRun;
use support::{cluster, install_crd, unique_name, wait_until};

fn api_error(e: kube::Error) -> Box<kube::core::response::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn task_run_json(name: &str, spec: Value) -> TaskRun {
    serde_json::from_value(json!({"apiVersion": "example.kube-envtest.dev/v1", "kind": "TaskRun", "metadata": {"name": name}, "spec": spec})).unwrap()
}

fn good_spec() -> Value {
    json!({"taskId": 1, "serviceName": "svc", "agentName": "a", "contextVersion": 1})
}

fn dynamic(c: &support::TestCluster) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.kube-envtest.dev", "v1", "TaskRun"),
        "taskruns",
    );
    Api::namespaced_with(c.client.clone(), &c.namespace, &ar)
}

#[tokio::test]
async fn crd_is_established_and_discovered() {
    let c = cluster().await;
    c.install_task_run_crd().await;
    let discovery = Discovery::new(c.client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.group == "example.kube-envtest.dev" && ar.kind == "TaskRun")
        .expect("TaskRun is discovered");
    assert_eq!(ar.plural, "taskruns");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "taskruns/status" || s.plural == "status"),
        "{:?}",
        caps.subresources
    );
    let crd = Api::<CustomResourceDefinition>::all(c.client.clone())
        .get("taskruns.example.kube-envtest.dev")
        .await
        .unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "NamesAccepted" && c.status == "True")
    );
}

#[tokio::test]
async fn schema_violations_are_422_with_field_paths() {
    let c = cluster().await;
    c.install_task_run_crd().await;
    let api: Api<DynamicObject> = dynamic(&c);
    let obj = |name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "example.kube-envtest.dev/v1", "kind": "TaskRun", "metadata": {"name": name}, "spec": spec})).unwrap()
    };

    let e = api_error(api.create(&PostParams::default(), &obj("bad-type", json!({"taskId": "seven", "serviceName": "s", "agentName": "a", "contextVersion": 1}))).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("TaskRun.example.kube-envtest.dev \"bad-type\" is invalid: spec.taskId"),
        "{}",
        e.message
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(causes[0].field, "spec.taskId");

    let e = api_error(
        api.create(
            &PostParams::default(),
            &obj(
                "missing",
                json!({"taskId": 1, "serviceName": "s", "contextVersion": 1}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.agentName: Required value"),
        "{}",
        e.message
    );

    let e = api_error(
        api.create(
            &PostParams::default(),
            &obj(
                "negative",
                json!({"taskId": -1, "serviceName": "s", "agentName": "a", "contextVersion": 1}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);

    api.create(&PostParams::default(), &obj("ok", good_spec()))
        .await
        .unwrap();
    let e = api_error(
        api.patch_status(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Exploded"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422, "status writes are validated too");
    assert!(
        e.message
            .contains("status.phase: Unsupported value: \"Exploded\""),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn defaults_are_applied_and_unknown_fields_pruned() {
    let c = cluster().await;
    c.install_task_run_crd().await;
    let api: Api<TaskRun> = c.api();
    let mut spec = good_spec();
    spec["unknownField"] = json!("dropped");
    let raw: Api<DynamicObject> = dynamic(&c);
    let created: DynamicObject = raw
        .create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "example.kube-envtest.dev/v1", "kind": "TaskRun", "metadata": {"name": "d"}, "spec": spec})).unwrap())
        .await
        .unwrap();
    assert!(
        created.data["spec"].get("unknownField").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(
        created.data["spec"]["markdownFiles"],
        json!([]),
        "defaults are applied"
    );

    let st = api
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Pending"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().attempts, 0);
    let raw_status = raw.get("d").await.unwrap().data["status"].clone();
    assert_eq!(
        raw_status["attempts"],
        json!(0),
        "status.attempts defaults to 0 in storage"
    );
}

#[tokio::test]
async fn table_output_carries_printer_columns() {
    let c = cluster().await;
    c.install_task_run_crd().await;
    let api: Api<TaskRun> = c.api();
    api.create(
        &PostParams::default(),
        &task_run_json("task-1", good_spec()),
    )
    .await
    .unwrap();
    let req = http::Request::builder()
        .uri(format!(
            "/apis/example.kube-envtest.dev/v1/namespaces/{}/taskruns",
            c.namespace
        ))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(vec![])
        .unwrap();
    let table: Value = c.client.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "Name", "Task", "Service", "Agent", "Version", "Phase", "Age",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "task-1");
    assert_eq!(row["cells"][1], 1);
    assert_eq!(row["object"]["metadata"]["name"], "task-1");
}

#[tokio::test]
async fn deleting_a_crd_removes_its_objects_and_endpoints() {
    let c = cluster().await;
    if !c.is_embedded() {
        eprintln!("skipping: deleting a CRD on a shared cluster would hurt other users");
        return;
    }
    let group = format!("{}.example.com", unique_name("g"));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    install_crd(&c.client, &crd).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &c.namespace, &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w"}, "anything": {"goes": 1}})).unwrap();
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(
        created.data["anything"]["goes"], 1,
        "preserve-unknown-fields keeps everything"
    );

    Api::<CustomResourceDefinition>::all(c.client.clone())
        .delete(&format!("widgets.{group}"), &DeleteParams::default())
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        matches!(api.get("w").await, Err(kube::Error::Api(s)) if s.code == 404)
    })
    .await
    .expect("the resource is no longer served");
}

#[tokio::test]
async fn table_watch_sends_one_row_tables() {
    use futures::TryStreamExt;
    use kube::api::WatchEvent;
    let c = cluster().await;
    c.install_task_run_crd().await;
    let api: Api<TaskRun> = c.api();
    let req = http::Request::builder()
        .uri(format!(
            "/apis/example.kube-envtest.dev/v1/namespaces/{}/taskruns?watch=true&resourceVersion=0",
            c.namespace
        ))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(vec![])
        .unwrap();
    let stream = c.client.request_events::<Value>(req).await.unwrap();
    api.create(
        &PostParams::default(),
        &task_run_json("task-9", good_spec()),
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), Box::pin(stream).try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WatchEvent::Added(table) = first else {
        panic!("expected ADDED, got {first:?}")
    };
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().unwrap().len(), 1);
    assert_eq!(table["rows"][0]["cells"][0], "task-9");
}
