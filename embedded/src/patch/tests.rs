//! Table tests for apply, update tracking and strategic merge patch: objects in, objects out.

use super::*;
use pretty_assertions::assert_eq;
use serde_json::json;

const T1: &str = "2026-11-26T10:00:00Z";
const T2: &str = "2026-11-26T11:00:00Z";
const T3: &str = "2026-11-26T12:00:00Z";

fn ctx<'a>(manager: &'a str, now: &'a str) -> WriteContext<'a> {
    WriteContext {
        manager,
        subresource: None,
        now,
    }
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "namespace": "default"}, "data": data})
}

fn configmap_schema() -> MergeSchema {
    MergeSchema::for_builtin("v1", "ConfigMap")
}

/// Applies each (manager, config) in turn onto the previous result.
fn apply_all(steps: &[(&str, Value)], schema: &MergeSchema) -> Value {
    let mut live: Option<Value> = None;
    for (i, (manager, config)) in steps.iter().enumerate() {
        let now = [T1, T2, T3][i.min(2)];
        let out = server_side_apply(live.as_ref(), config, false, ctx(manager, now), schema)
            .unwrap_or_else(|e| panic!("step {i} ({manager}): {e}"));
        live = Some(out);
    }
    live.unwrap_or_default()
}

fn managers(object: &Value) -> Vec<(String, Value)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

#[test]
fn apply_on_create_records_exactly_the_applied_fields() {
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "j", "namespace": "default", "labels": {"app": "x"},
                     "finalizers": ["f.io/x"],
                     "ownerReferences": [{"apiVersion": "v1", "kind": "TaskRun", "name": "t", "uid": "u1"}]},
        "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "args": ["a", "b"], "env": [{"name": "A", "value": "1"}],
             "ports": [{"containerPort": 80}]}]}}}
    });
    let out = server_side_apply(
        None,
        &job,
        false,
        ctx("orchestrator-controller", T1),
        &MergeSchema::for_builtin("batch/v1", "Job"),
    )
    .expect("apply on create");
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([{
            "manager": "orchestrator-controller", "operation": "Apply", "apiVersion": "batch/v1",
            "time": T1, "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:finalizers": {"v:\"f.io/x\"": {}},
                    "f:labels": {"f:app": {}},
                    "f:ownerReferences": {"k:{\"uid\":\"u1\"}": {
                        ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}}}
                },
                "f:spec": {"f:backoffLimit": {}, "f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"main\"}": {
                        ".": {}, "f:args": {},
                        "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                        "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}}}
                    }},
                    "f:restartPolicy": {}
                }}}
            }
        }])
    );
    let mut without = out.clone();
    if let Some(meta) = without["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    assert_eq!(without, job, "the object is the applied config");
}

#[test]
fn reapplying_the_same_config_changes_nothing() {
    let schema = MergeSchema::for_builtin("batch/v1", "Job");
    let config = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}]}}}});
    let mut live =
        server_side_apply(None, &config, false, ctx("sync", T1), &schema).expect("first");
    // The server adds its own fields; those must survive and not be owned.
    live["metadata"]["uid"] = json!("u");
    live["metadata"]["resourceVersion"] = json!("7");
    live["status"] = json!({"active": 1});
    track_update(Some(&live.clone()), &mut live, ctx("runner", T2));
    let again =
        server_side_apply(Some(&live), &config, false, ctx("sync", T3), &schema).expect("again");
    assert_eq!(again, live);
}

#[test]
fn a_field_the_sole_owner_stops_applying_is_removed() {
    let schema = configmap_schema();
    let out = apply_all(
        &[
            ("sync", cm(json!({"a": "1", "b": "2"}))),
            ("sync", cm(json!({"a": "1"}))),
        ],
        &schema,
    );
    assert_eq!(out["data"], json!({"a": "1"}));
    assert_eq!(
        managers(&out),
        vec![("sync".into(), json!({"f:data": {"f:a": {}}}))]
    );
}

#[test]
fn removal_table() {
    // A first apply by "sync", then a second one by "sync" that sets less: (case, second config,
    // expected metadata, expected spec).
    let schema = MergeSchema::for_builtin("batch/v1", "Job");
    let job = |labels: Value, containers: Value| {
        let mut metadata = json!({"name": "j"});
        if !labels.is_null() {
            metadata["labels"] = labels;
        }
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
               "spec": {"parallelism": 1, "template": {"spec": {"containers": containers}}}})
    };
    let both = json!([
        {"name": "main", "image": "i", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "side", "image": "s"}]);
    let first = job(json!({"a": "1", "b": "2"}), both.clone());
    let cases = [
        (
            "drop a label",
            job(json!({"a": "1"}), both.clone()),
            json!({"name": "j", "labels": {"a": "1"}}),
            both.clone(),
        ),
        (
            "drop all labels",
            job(Value::Null, both.clone()),
            json!({"name": "j"}),
            both.clone(),
        ),
        (
            "drop a container and an env var",
            job(
                json!({"a": "1", "b": "2"}),
                json!([{"name": "main", "image": "i", "env": [{"name": "B", "value": "2"}]}]),
            ),
            json!({"name": "j", "labels": {"a": "1", "b": "2"}}),
            json!([{"name": "main", "image": "i", "env": [{"name": "B", "value": "2"}]}]),
        ),
    ];
    for (name, second, want_meta, want_containers) in cases {
        let out = apply_all(&[("sync", first.clone()), ("sync", second)], &schema);
        let mut meta = out["metadata"].clone();
        if let Some(m) = meta.as_object_mut() {
            m.remove("managedFields");
        }
        assert_eq!(meta, want_meta, "{name}");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"], want_containers,
            "{name}"
        );
        assert_eq!(out["spec"]["parallelism"], json!(1), "{name}");
    }
}

#[test]
fn an_apply_without_metadata_keeps_the_objects_identity() {
    let schema = configmap_schema();
    let mut live = apply_all(
        &[(
            "sync",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}}),
        )],
        &schema,
    );
    live["metadata"]["uid"] = json!("u");
    let out = server_side_apply(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}),
        false,
        ctx("sync", T2),
        &schema,
    )
    .expect("apply");
    assert_eq!(out["metadata"]["name"], json!("c"));
    assert_eq!(out["metadata"]["uid"], json!("u"));
    assert_eq!(out["metadata"].get("labels"), None);
}

#[test]
fn a_co_owned_field_is_kept_when_one_owner_stops_applying_it() {
    let schema = configmap_schema();
    let out = apply_all(
        &[
            ("a", cm(json!({"shared": "v", "mine": "1"}))),
            ("b", cm(json!({"shared": "v"}))),
            ("a", cm(json!({"mine": "1"}))),
        ],
        &schema,
    );
    assert_eq!(out["data"], json!({"shared": "v", "mine": "1"}));
    // The object did not change, so a keeps its first time and still sorts first.
    assert_eq!(
        managers(&out),
        vec![
            ("a".into(), json!({"f:data": {"f:mine": {}}})),
            ("b".into(), json!({"f:data": {"f:shared": {}}})),
        ]
    );
}

#[test]
fn a_different_value_for_another_managers_field_conflicts_unless_forced() {
    let schema = configmap_schema();
    let live = apply_all(
        &[("other-manager", cm(json!({"x": "1", "y": "2"})))],
        &schema,
    );
    let err = server_side_apply(
        Some(&live),
        &cm(json!({"x": "9"})),
        false,
        ctx("me", T2),
        &schema,
    )
    .expect_err("conflict");
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "other-manager": .data.x"#
    );
    assert_eq!(
        err,
        PatchError::Conflict(vec![FieldConflict {
            manager: "other-manager".into(),
            field: ".data.x".into(),
            described_manager: r#""other-manager""#.into(),
        }])
    );

    let forced = server_side_apply(
        Some(&live),
        &cm(json!({"x": "9"})),
        true,
        ctx("me", T2),
        &schema,
    )
    .expect("force");
    assert_eq!(forced["data"], json!({"x": "9", "y": "2"}));
    assert_eq!(
        managers(&forced),
        vec![
            ("other-manager".into(), json!({"f:data": {"f:y": {}}})),
            ("me".into(), json!({"f:data": {"f:x": {}}})),
        ]
    );
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let schema = configmap_schema();
    let live = apply_all(
        &[
            ("a", cm(json!({"x": "1", "y": "1"}))),
            ("b", cm(json!({"z": "1"}))),
        ],
        &schema,
    );
    let err = server_side_apply(
        Some(&live),
        &cm(json!({"x": "2", "y": "2", "z": "2"})),
        false,
        ctx("c", T3),
        &schema,
    )
    .expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"a\":\n- .data.x\n- .data.y\nconflicts with \"b\":\n- .data.z"
    );
}

#[test]
fn an_update_takes_fields_so_a_later_apply_conflicts_with_the_updater() {
    let schema = configmap_schema();
    let live = apply_all(&[("sync", cm(json!({"x": "1"})))], &schema);
    let mut edited = live.clone();
    edited["data"]["x"] = json!("edited");
    edited["data"]["new"] = json!("n");
    track_update(Some(&live), &mut edited, ctx("kubectl-edit", T2));
    assert_eq!(
        edited["metadata"]["managedFields"],
        json!([{"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1", "time": T2,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:new": {}, "f:x": {}}}}]),
        "sync lost .data.x and owns nothing, so its entry is gone"
    );
    let err = server_side_apply(
        Some(&edited),
        &cm(json!({"x": "1"})),
        false,
        ctx("sync", T3),
        &schema,
    )
    .expect_err("conflict with the updater");
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.x"#
    );
    if let PatchError::Conflict(c) = &err {
        assert_eq!(
            c[0].cause_message(),
            r#"conflict with "kubectl-edit" using v1"#
        );
    }
}

#[test]
fn an_update_that_changes_nothing_leaves_managed_fields_alone() {
    let schema = configmap_schema();
    let live = apply_all(&[("sync", cm(json!({"x": "1"})))], &schema);
    let mut same = live.clone();
    track_update(Some(&live), &mut same, ctx("someone", T2));
    assert_eq!(same, live);
}

#[test]
fn update_on_create_owns_every_field_it_set_but_not_server_fields() {
    let mut created = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "d", "uid": "u", "resourceVersion": "1",
                     "creationTimestamp": T1, "labels": {"l": "v"}},
        "data": {"k": "v"}});
    track_update(None, &mut created, ctx("kubectl-create", T1));
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:k": {}},
               "f:metadata": {"f:labels": {".": {}, "f:l": {}}}})
    );
}

#[test]
fn update_on_create_of_a_job_does_not_own_its_always_present_structs() {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "i"}]}}}});
    track_update(None, &mut job, ctx("kubectl-create", T1));
    assert_eq!(
        job["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:spec": {"f:backoffLimit": {}, "f:template": {"f:spec": {
            "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}},
            "f:restartPolicy": {}}}}})
    );
    assert_eq!(
        job.get("status"),
        None,
        "the zero value is only compared against"
    );
}

#[test]
fn applying_the_same_value_as_another_manager_is_shared_not_a_conflict() {
    let schema = configmap_schema();
    let out = apply_all(
        &[("a", cm(json!({"x": "1"}))), ("b", cm(json!({"x": "1"})))],
        &schema,
    );
    assert_eq!(
        managers(&out),
        vec![
            ("a".into(), json!({"f:data": {"f:x": {}}})),
            ("b".into(), json!({"f:data": {"f:x": {}}})),
        ]
    );
}

#[test]
fn map_list_items_are_owned_and_merged_per_key() {
    let schema = MergeSchema::for_builtin("v1", "Pod");
    let pod = |containers: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": containers}})
    };
    let out = apply_all(
        &[
            ("a", pod(json!([{"name": "app", "image": "1"}]))),
            ("b", pod(json!([{"name": "sidecar", "image": "s"}]))),
            ("a", pod(json!([{"name": "app", "image": "2"}]))),
        ],
        &schema,
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "app", "image": "2"}, {"name": "sidecar", "image": "s"}])
    );
    // b changing a's container image conflicts on that item's field only.
    let err = server_side_apply(
        Some(&out),
        &pod(json!([{"name": "app", "image": "3"}, {"name": "sidecar", "image": "s"}])),
        false,
        ctx("b", T3),
        &schema,
    )
    .expect_err("conflict");
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "a": .spec.containers[name="app"].image"#
    );
    // a dropping its container removes only that item.
    let dropped =
        server_side_apply(Some(&out), &pod(json!([])), false, ctx("a", T3), &schema).expect("drop");
    assert_eq!(
        dropped["spec"]["containers"],
        json!([{"name": "sidecar", "image": "s"}])
    );
}

#[test]
fn custom_resource_lists_are_atomic_unless_the_schema_says_otherwise() {
    let tr = |files: Value| {
        json!({"apiVersion": "orchestrator.dev/v1", "kind": "TaskRun", "metadata": {"name": "t"},
               "spec": {"files": files}})
    };
    let atomic = MergeSchema::default();
    let out = apply_all(
        &[
            (
                "a",
                tr(json!([{"name": "x", "v": 1}, {"name": "y", "v": 2}])),
            ),
            ("a", tr(json!([{"name": "y", "v": 3}]))),
        ],
        &atomic,
    );
    assert_eq!(out["spec"]["files"], json!([{"name": "y", "v": 3}]));
    assert_eq!(managers(&out)[0].1, json!({"f:spec": {"f:files": {}}}));
    let err = server_side_apply(
        Some(&out),
        &tr(json!([{"name": "z"}])),
        false,
        ctx("b", T3),
        &atomic,
    )
    .expect_err("atomic list conflicts as a whole");
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "a": .spec.files"#
    );

    let keyed = MergeSchema::from_crd_schema(&json!({"type": "object", "properties": {"spec": {
        "type": "object", "properties": {"files": {"type": "array",
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object"}}}}}}));
    let out = apply_all(
        &[
            ("a", tr(json!([{"name": "x", "v": 1}]))),
            ("b", tr(json!([{"name": "y", "v": 2}]))),
        ],
        &keyed,
    );
    assert_eq!(
        out["spec"]["files"],
        json!([{"name": "x", "v": 1}, {"name": "y", "v": 2}])
    );
}

#[test]
fn status_subresource_apply_owns_only_status_and_says_so() {
    let schema = MergeSchema::default();
    let live = apply_all(
        &[(
            "sync",
            json!({"apiVersion": "orchestrator.dev/v1", "kind": "TaskRun",
                          "metadata": {"name": "t"}, "spec": {"x": 1}}),
        )],
        &schema,
    );
    let status_ctx = WriteContext {
        manager: "controller",
        subresource: Some("status"),
        now: T2,
    };
    let out = server_side_apply(
        Some(&live),
        &json!({"apiVersion": "orchestrator.dev/v1", "kind": "TaskRun", "metadata": {"name": "t"},
                "spec": {"x": 2}, "status": {"phase": "Running"}}),
        false,
        status_ctx,
        &schema,
    )
    .expect("status apply");
    assert_eq!(
        out["spec"],
        json!({"x": 1}),
        "spec is not the status writer's"
    );
    assert_eq!(out["status"], json!({"phase": "Running"}));
    let entries = out["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        entries[1],
        json!({"manager": "controller", "operation": "Apply", "apiVersion": "orchestrator.dev/v1",
               "time": T2, "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}},
               "subresource": "status"})
    );
}

#[test]
fn bad_apply_bodies_are_invalid() {
    let schema = MergeSchema::default();
    let cases = [
        (json!([1]), "an apply patch must be a YAML or JSON object"),
        (
            json!({"kind": "ConfigMap"}),
            "apiVersion must be set in an apply patch",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "managedFields": [{"manager": "x"}]}}),
            "metadata.managedFields must be nil",
        ),
    ];
    for (body, want) in cases {
        let err = server_side_apply(None, &body, false, ctx("m", T1), &schema).expect_err(want);
        assert_eq!(err, PatchError::Invalid(want.to_string()));
    }
    let pod = MergeSchema::for_builtin("v1", "Pod");
    let keyed = [
        (
            json!([{"image": "i"}]),
            r#"failed to create typed patch object (/p; v1, Kind=Pod): .spec.containers: element 0: associative list with keys has an element that omits key field "name" (and doesn't have default value)"#,
        ),
        (
            json!([{"name": "a"}, {"name": "a"}]),
            r#"failed to create typed patch object (/p; v1, Kind=Pod): .spec.containers: duplicate entries for key [name="a"]"#,
        ),
    ];
    for (containers, want) in keyed {
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                          "spec": {"containers": containers}});
        let err = server_side_apply(None, &body, false, ctx("m", T1), &pod).expect_err(want);
        assert_eq!(err, PatchError::Invalid(want.to_string()));
    }
}

#[test]
fn strategic_merge_patch_table() {
    let job = || {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j",
            "finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
            "spec": {"template": {"spec": {
                "containers": [
                    {"name": "main", "image": "1", "args": ["a", "b"],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "side", "image": "s"}],
                "volumes": [{"name": "v", "configMap": {"name": "c"}}]}}},
            "status": {"conditions": [{"type": "Complete", "status": "False"}]}})
    };
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Value, Edit)> = vec![
        (
            "containers merge by name, args replace",
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "2", "args": ["c"]}]}}}}),
            Box::new(|j| {
                j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("2");
                j["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["c"]);
            }),
        ),
        (
            "env merges by name inside a container",
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}}),
            Box::new(|j| {
                j["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
                    {"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]);
            }),
        ),
        (
            "$patch delete removes one item",
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "side", "$patch": "delete"}]}}}}),
            Box::new(|j| {
                j["spec"]["template"]["spec"]["containers"] =
                    json!([j["spec"]["template"]["spec"]["containers"][0].clone()]);
            }),
        ),
        (
            "$patch replace on a list",
            json!({"spec": {"template": {"spec": {"volumes": [
                {"$patch": "replace"}, {"name": "w", "emptyDir": {}}]}}}}),
            Box::new(|j| {
                j["spec"]["template"]["spec"]["volumes"] = json!([{"name": "w", "emptyDir": {}}]);
            }),
        ),
        (
            "$patch replace on an object",
            json!({"metadata": {"labels": {"$patch": "replace", "z": "3"}}}),
            Box::new(|j| j["metadata"]["labels"] = json!({"z": "3"})),
        ),
        (
            "null deletes a key",
            json!({"metadata": {"labels": {"x": null}}}),
            Box::new(|j| j["metadata"]["labels"] = json!({"y": "2"})),
        ),
        (
            "finalizers merge as a set",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            Box::new(|j| j["metadata"]["finalizers"] = json!(["a", "b"])),
        ),
        (
            "$deleteFromPrimitiveList",
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            Box::new(|j| j["metadata"]["finalizers"] = json!([])),
        ),
        (
            "$setElementOrder moves named items first",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "main"}],
                "containers": [{"name": "side", "image": "s2"}]}}}}),
            Box::new(|j| {
                let c = j["spec"]["template"]["spec"]["containers"].clone();
                j["spec"]["template"]["spec"]["containers"] =
                    json!([{"name": "side", "image": "s2"}, c[0].clone()]);
            }),
        ),
        (
            "$retainKeys keeps only the listed keys",
            json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]}}}}),
            Box::new(|j| {
                j["spec"]["template"]["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
            }),
        ),
        (
            "job status conditions merge by type",
            json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
            Box::new(|j| {
                j["status"]["conditions"] = json!([
                    {"type": "Complete", "status": "False"}, {"type": "Failed", "status": "True"}]);
            }),
        ),
    ];
    let schema = MergeSchema::for_builtin_strategic("batch/v1", "Job");
    for (name, patch, edit) in cases {
        let mut target = job();
        strategic_merge_patch(&mut target, &patch, &schema)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut want = job();
        edit(&mut want);
        assert_eq!(target, want, "{name}");
    }
}

#[test]
fn strategic_merge_patch_names_a_missing_merge_key_like_kube_apiserver() {
    let schema = MergeSchema::for_builtin_strategic("apps/v1", "Deployment");
    let mut deployment =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx"}]}}}});
    let err = strategic_merge_patch(
        &mut deployment,
        &json!({"spec": {"template": {"spec": {"containers": [{"image": "httpd"}]}}}}),
        &schema,
    )
    .expect_err("no merge key");
    assert_eq!(
        err.to_string(),
        "map: map[image:httpd] does not contain declared merge key: name"
    );
}

#[test]
fn strategic_merge_patch_rejects_bad_documents() {
    let schema = MergeSchema::for_builtin_strategic("v1", "Pod");
    let mut pod = json!({"spec": {"containers": [{"name": "a"}]}});
    let cases = [
        json!([1, 2]),
        json!({"spec": {"containers": [{"image": "no-name"}]}}),
        json!({"spec": {"$patch": "explode"}}),
    ];
    for patch in cases {
        assert!(
            matches!(
                strategic_merge_patch(&mut pod, &patch, &schema),
                Err(PatchError::Invalid(_))
            ),
            "{patch}"
        );
    }
}

#[test]
fn controller_runner_controller_round_trip_is_conflict_free_and_ends_in_a_no_op() {
    // The controller applies a Job, the runner writes Job status through /status with a merge
    // patch, the controller applies the same Job again: no conflict and nothing to write.
    let schema = MergeSchema::for_builtin("batch/v1", "Job");
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "j", "namespace": "tasks", "creationTimestamp": null,
                     "labels": {"orchestrator.io/task": "7"}},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "agent", "image": "busybox", "command": ["sh", "-c", "true"]}]}}}});
    let mut live = server_side_apply(
        None,
        &job,
        false,
        ctx("orchestrator-controller", T1),
        &schema,
    )
    .expect("create");
    live["metadata"]["creationTimestamp"] = json!(T1);
    live["metadata"]["uid"] = json!("u");
    let before_status = live.clone();
    json_merge_patch(
        &mut live,
        &json!({"status": {"active": 1, "startTime": T2, "conditions": [{"type": "Complete", "status": "False"}]}}),
    );
    track_update(
        Some(&before_status),
        &mut live,
        WriteContext {
            manager: "orchestrator-runner",
            subresource: Some("status"),
            now: T2,
        },
    );
    let runner_entry = live["metadata"]["managedFields"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["manager"] == "orchestrator-runner"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(runner_entry["subresource"], json!("status"));
    assert_eq!(
        runner_entry["fieldsV1"],
        json!({"f:status": {".": {}, "f:active": {}, "f:conditions": {}, "f:startTime": {}}})
    );
    let again = server_side_apply(
        Some(&live),
        &job,
        false,
        ctx("orchestrator-controller", T3),
        &schema,
    )
    .expect("re-apply");
    assert_eq!(again, live, "the second apply changes nothing");
}

#[test]
fn json_patch_test_of_a_missing_path_against_null_passes_like_kube_apiserver() {
    // The patch kube-runtime's finalizer helper sends to add the first finalizer.
    let mut obj = serde_json::json!({"metadata": {"name": "task-1"}});
    let add_first = serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
    ]);
    json_patch(&mut obj, &add_first).unwrap();
    assert_eq!(obj["metadata"]["finalizers"], serde_json::json!(["f"]));
    // Now the path exists: the same test fails, and nothing of the patch is applied.
    let before = obj.clone();
    assert!(json_patch(&mut obj, &add_first).is_err());
    assert_eq!(obj, before);
    // A missing path never equals a non-null value.
    let wrong = serde_json::json!([{"op": "test", "path": "/metadata/labels", "value": {}}]);
    assert!(json_patch(&mut obj, &wrong).is_err());
}

#[test]
fn managed_fields_reset_with_an_empty_entry() {
    let schema = configmap_schema();
    let live = apply_all(&[("sync", cm(json!({"x": "1"})))], &schema);
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    track_update(Some(&live), &mut reset, ctx("kubectl", T2));
    assert_eq!(reset["metadata"].get("managedFields"), None);
}

#[test]
fn more_than_ten_update_managers_fold_the_oldest_into_ancient_changes() {
    let mut live = cm(json!({}));
    track_update(None, &mut live, ctx("creator", "2026-11-26T09:00:00Z"));
    for i in 0..11 {
        let mut next = live.clone();
        next["data"][format!("k{i}")] = json!("v");
        let now = format!("2026-11-26T10:{i:02}:00Z");
        track_update(Some(&live), &mut next, ctx(&format!("writer-{i:02}"), &now));
        live = next;
    }
    let entries = live["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 10);
    let names: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert_eq!(names[0], "ancient-changes");
    for folded in ["creator", "writer-00", "writer-01"] {
        assert!(!names.contains(&folded), "{folded} is folded: {names:?}");
    }
    assert_eq!(
        entries[0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:k0": {}, "f:k1": {}}}),
        "the three oldest writers' fields are kept under ancient-changes"
    );
    assert_eq!(entries[0]["time"], json!("2026-11-26T10:01:00Z"));
}
