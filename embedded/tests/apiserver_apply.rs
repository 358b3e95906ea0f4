//! Server-side apply and strategic merge patch through kube-rs (and kubectl) over real HTTPS
//! against the embedded API server, or a real cluster when KUBECONFIG is set.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster;
use support::fixture::TaskRun;

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

async fn apply(
    api: &Api<ConfigMap>,
    manager: &str,
    force: bool,
    body: &Value,
) -> Result<ConfigMap, kube::Error> {
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let mut params = PatchParams::apply(manager);
    if force {
        params = params.force();
    }
    api.patch(name, &params, &Patch::Apply(body)).await
}

/// (manager, operation, fieldsV1) of each managedFields entry.
fn owners(cm: &ConfigMap) -> Vec<(String, String, Value)> {
    cm.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
                e.fields_v1
                    .as_ref()
                    .map(|f| f.0.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn conflict(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn apply_removes_a_field_its_sole_manager_stops_applying_and_keeps_shared_ones() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let name = "ssa-removal";
    apply(
        &api,
        "a",
        false,
        &config_map(name, json!({"x": "1", "only-a": "1", "shared": "s"})),
    )
    .await
    .expect("a applies");
    apply(&api, "b", false, &config_map(name, json!({"shared": "s"})))
        .await
        .expect("b applies the same value: shared, no conflict");
    let after = apply(&api, "a", false, &config_map(name, json!({"x": "1"})))
        .await
        .expect("a applies less");
    let data = after.data.clone().unwrap_or_default();
    assert_eq!(data.get("x").map(String::as_str), Some("1"));
    assert_eq!(data.get("only-a"), None, "a alone owned only-a: removed");
    assert_eq!(
        data.get("shared").map(String::as_str),
        Some("s"),
        "b still owns shared"
    );
    let mut owners = owners(&after);
    owners.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        owners,
        vec![
            ("a".into(), "Apply".into(), json!({"f:data": {"f:x": {}}})),
            (
                "b".into(),
                "Apply".into(),
                json!({"f:data": {"f:shared": {}}})
            ),
        ]
    );
}

#[tokio::test]
async fn a_conflicting_apply_gets_409_naming_the_other_manager_and_force_takes_the_field() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let name = "ssa-conflict";
    apply(
        &api,
        "other-manager",
        false,
        &config_map(name, json!({"x": "1", "y": "2"})),
    )
    .await
    .expect("first apply");
    let err = conflict(
        apply(&api, "me", false, &config_map(name, json!({"x": "9"})))
            .await
            .expect_err("conflict"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "other-manager": .data.x"#
    );
    let unchanged = api.get(name).await.expect("get");
    assert_eq!(
        unchanged
            .data
            .unwrap_or_default()
            .get("x")
            .map(String::as_str),
        Some("1")
    );

    let forced = apply(&api, "me", true, &config_map(name, json!({"x": "9"})))
        .await
        .expect("forced apply");
    assert_eq!(
        forced
            .data
            .clone()
            .unwrap_or_default()
            .get("x")
            .map(String::as_str),
        Some("9")
    );
    let mut owners = owners(&forced);
    owners.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        owners,
        vec![
            ("me".into(), "Apply".into(), json!({"f:data": {"f:x": {}}})),
            (
                "other-manager".into(),
                "Apply".into(),
                json!({"f:data": {"f:y": {}}})
            ),
        ]
    );
}

#[tokio::test]
async fn reapplying_the_same_config_keeps_the_resource_version() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let body = config_map("ssa-noop", json!({"x": "1"}));
    let first = apply(&api, "a", false, &body).await.expect("apply");
    let again = apply(&api, "a", false, &body).await.expect("re-apply");
    assert_eq!(
        first.metadata.resource_version,
        again.metadata.resource_version
    );
    assert_eq!(first.metadata.managed_fields, again.metadata.managed_fields);
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name_and_configmap_data_by_key() {
    let c = cluster().await;
    // A Pod, whose container images may change (a Job's template may not): bound to a node
    // that does not exist, so that nothing runs it on a real cluster either.
    let pods: Api<Pod> = c.api();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smp-pod"},
        "spec": {"nodeName": "kube-envtest-nowhere", "restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox:1", "command": ["true"],
             "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "busybox:1", "command": ["true"]}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let patched = pods
        .patch(
            "smp-pod",
            &PatchParams {
                field_manager: Some("smp-test".into()),
                ..PatchParams::default()
            },
            &Patch::Strategic(json!({"spec": {"containers": [
                {"name": "main", "image": "busybox:2"}]}})),
        )
        .await
        .expect("strategic patch");
    let containers = patched.spec.map(|s| s.containers).unwrap_or_default();
    assert_eq!(
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["main", "side"],
        "the patch named one container; the other stays"
    );
    assert_eq!(containers[0].image.as_deref(), Some("busybox:2"));
    let env_names: Vec<&str> = containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env_names, vec!["A"], "fields the patch left out stay");
    let update_entry = patched
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|e| e.manager.as_deref() == Some("smp-test"))
        .cloned()
        .expect("the patch is recorded as an Update");
    assert_eq!(update_entry.operation.as_deref(), Some("Update"));

    let cms: Api<ConfigMap> = c.api();
    let cm: ConfigMap =
        serde_json::from_value(config_map("smp-cm", json!({"keep": "1", "drop": "2"})))
            .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    let patched = cms
        .patch(
            "smp-cm",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"drop": null, "new": "3"}})),
        )
        .await
        .expect("strategic patch on a ConfigMap");
    let data = patched.data.unwrap_or_default();
    assert_eq!(
        data.into_iter().collect::<Vec<_>>(),
        vec![
            ("keep".to_string(), "1".to_string()),
            ("new".to_string(), "3".to_string())
        ]
    );
}

#[tokio::test]
async fn an_update_takes_ownership_so_a_later_apply_conflicts_with_the_updater() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let name = "ssa-vs-update";
    apply(&api, "sync", false, &config_map(name, json!({"x": "1"})))
        .await
        .expect("apply");
    api.patch(
        name,
        &PatchParams {
            field_manager: Some("editor".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"x": "edited"}})),
    )
    .await
    .expect("merge patch");
    let err = conflict(
        apply(&api, "sync", false, &config_map(name, json!({"x": "1"})))
            .await
            .expect_err("conflict with the updater"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "editor" using v1: .data.x"#
    );
}

#[tokio::test]
async fn lists_in_custom_resources_are_atomic_and_status_applies_are_marked() {
    let c = cluster().await;
    c.install_task_run_crd().await;
    let api: Api<TaskRun> = c.api();
    let task_run = |files: Value| {
        json!({"apiVersion": "example.kube-envtest.dev/v1", "kind": "TaskRun", "metadata": {"name": "tr-ssa"},
               "spec": {"taskId": 1, "serviceName": "s", "agentName": "a", "contextVersion": 1,
                        "markdownFiles": files}})
    };
    api.patch(
        "tr-ssa",
        &PatchParams::apply("sync"),
        &Patch::Apply(task_run(json!([{"filename": "a.md", "content": "A"}]))),
    )
    .await
    .expect("sync applies");
    let err = conflict(
        api.patch(
            "tr-ssa",
            &PatchParams::apply("intruder"),
            &Patch::Apply(task_run(json!([{"filename": "b.md", "content": "B"}]))),
        )
        .await
        .expect_err("the whole list is sync's"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "sync": .spec.markdownFiles"#
    );
    let replaced = api
        .patch(
            "tr-ssa",
            &PatchParams::apply("sync"),
            &Patch::Apply(task_run(json!([{"filename": "b.md", "content": "B"}]))),
        )
        .await
        .expect("sync replaces its list");
    assert_eq!(replaced.spec.markdown_files.len(), 1);
    assert_eq!(replaced.spec.markdown_files[0].filename, "b.md");

    let with_status = api
        .patch_status(
            "tr-ssa",
            &PatchParams::apply("controller"),
            &Patch::Apply(
                json!({"apiVersion": "example.kube-envtest.dev/v1", "kind": "TaskRun",
                                 "metadata": {"name": "tr-ssa"}, "status": {"phase": "Running"}}),
            ),
        )
        .await
        .expect("status apply");
    let entry = with_status
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|e| e.manager.as_deref() == Some("controller"))
        .cloned()
        .expect("the controller's entry");
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    assert_eq!(entry.operation.as_deref(), Some("Apply"));
    assert_eq!(
        entry.fields_v1.map(|f| f.0),
        Some(json!({"f:status": {"f:phase": {}}}))
    );
    assert_eq!(
        replaced.spec, with_status.spec,
        "a status apply leaves spec alone"
    );
}

// kubectl blocks its thread while the embedded server answers it, so this test needs a
// second runtime thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_server_side_owns_fields_and_reports_conflicts() {
    let mut c = cluster().await;
    if !support::kubectl_available() {
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cm.yaml");
    let path = file.to_string_lossy().to_string();
    let write = |value: &str| {
        std::fs::write(
            &file,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kubectl-ssa\ndata:\n  x: \"{value}\"\n"
            ),
        )
        .expect("write manifest");
    };
    write("1");
    let out = c
        .kubectl(&["apply", "--server-side", "-f", &path])
        .await
        .expect("kubectl is available");
    assert!(
        out.status.success(),
        "kubectl apply --server-side: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api: Api<ConfigMap> = c.api();
    let cm = api.get("kubectl-ssa").await.expect("get");
    assert!(
        owners(&cm).iter().any(|(m, op, f)| m == "kubectl"
            && op == "Apply"
            && *f == json!({"f:data": {"f:x": {}}})),
        "kubectl owns .data.x: {:?}",
        owners(&cm)
    );
    apply(
        &api,
        "other",
        true,
        &config_map("kubectl-ssa", json!({"x": "2"})),
    )
    .await
    .expect("other forces x");
    write("3");
    let out = c
        .kubectl(&["apply", "--server-side", "-f", &path])
        .await
        .expect("kubectl is available");
    assert!(!out.status.success(), "kubectl must report the conflict");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"conflict with "other""#), "{stderr}");
    let out = c
        .kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &path])
        .await
        .expect("kubectl is available");
    assert!(
        out.status.success(),
        "--force-conflicts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = api.get("kubectl-ssa").await.expect("get");
    assert_eq!(
        cm.data.unwrap_or_default().get("x").map(String::as_str),
        Some("3")
    );
}

#[tokio::test]
async fn crd_list_type_markers_make_lists_mergeable_by_key_or_as_sets() {
    let c = cluster().await;
    let group = format!("{}.example.com", support::unique_name("ssa"));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["name"],
                                  "items": {"type": "object", "required": ["name"], "properties": {
                                      "name": {"type": "string"}, "port": {"type": "integer"}}}},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                 "items": {"type": "string"}},
                        "plain": {"type": "array", "items": {"type": "integer"}}}}}}}}]}
    }))
    .expect("crd");
    support::install_crd(&c.client, &crd).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Gadget"),
        "gadgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &c.namespace, &ar);
    let gadget = |spec: Value| json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget", "metadata": {"name": "g"}, "spec": spec});
    let apply_as = |manager: &'static str, spec: Value| {
        let api = api.clone();
        let body = gadget(spec);
        async move {
            api.patch("g", &PatchParams::apply(manager), &Patch::Apply(body))
                .await
        }
    };
    apply_as(
        "a",
        json!({"ports": [{"name": "http", "port": 80}], "tags": ["x"], "plain": [1]}),
    )
    .await
    .expect("a applies");
    let both = apply_as(
        "b",
        json!({"ports": [{"name": "metrics", "port": 9090}], "tags": ["y"]}),
    )
    .await
    .expect("b's items are its own: no conflict");
    assert_eq!(
        both.data["spec"],
        json!({"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}],
               "tags": ["x", "y"], "plain": [1]})
    );
    let err = conflict(
        apply_as(
            "b",
            json!({"ports": [{"name": "metrics", "port": 9090}], "tags": ["y"], "plain": [2]}),
        )
        .await
        .expect_err("plain is an atomic list owned by a"),
    );
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "a": .spec.plain"#
    );

    api.patch(
        "g",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9091}]}})),
    )
    .await
    .expect("a merge patch replaces the list");
    let err = conflict(
        apply_as(
            "b",
            json!({"ports": [{"name": "metrics", "port": 9090}], "tags": ["y"]}),
        )
        .await
        .expect_err("the editor took the port"),
    );
    assert_eq!(
        err.message,
        format!(
            r#"Apply failed with 1 conflict: conflict with "editor" using {group}/v1: .spec.ports[name="metrics"].port"#
        )
    );
    let dropped = apply_as("a", json!({"plain": [1]}))
        .await
        .expect("a drops its port and tag");
    assert_eq!(
        dropped.data["spec"],
        json!({"ports": [{"name": "metrics", "port": 9091}], "tags": ["y"], "plain": [1]}),
        "a alone owned http and x; the editor's and b's items stay"
    );
    Api::<CustomResourceDefinition>::all(c.client.clone())
        .delete(&format!("gadgets.{group}"), &Default::default())
        .await
        .expect("cleanup");
}
