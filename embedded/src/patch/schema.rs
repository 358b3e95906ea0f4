//! Merge schemas: a built-in kind or a CRD's openAPIV3Schema in, how each list and map merges out.
//!
//! Schema paths name fields only: list steps are left out (`.spec.template.spec.containers.env`
//! is the env list of every container) and the values of a granular map are `<map path>.*`.
//! `metadata` rules that hold for every kind (labels and annotations are maps, ownerReferences
//! is a map-list keyed by uid, finalizers a set) apply to every schema, even the empty one.

use super::MergeSchema;
use serde_json::Value;

/// How a list merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// How an object merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// Named fields: only leaves are owned.
    Struct,
    /// String keys chosen by the user (labels, ConfigMap data): each key is owned as a member.
    Map,
    /// Owned and replaced as a whole (a LabelSelector).
    Atomic,
}

/// Key fields the real schemas default, so an applied item may leave them out.
const KEY_DEFAULTS: &[(&str, &str)] = &[("protocol", "TCP")];

pub fn key_default(field: &str) -> Option<Value> {
    KEY_DEFAULTS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, v)| Value::String((*v).to_string()))
}

impl MergeSchema {
    /// The server-side-apply schema of a built-in kind (its `x-kubernetes-list-type` markers):
    /// Pod and Job pod templates merge containers, initContainers, env, volumes, ports
    /// (containerPort + protocol), volumeMounts (mountPath) and imagePullSecrets by key; Pod
    /// status conditions by type. Unknown kinds get the empty schema (every list atomic).
    pub fn for_builtin(api_version: &str, kind: &str) -> MergeSchema {
        builtin(api_version, kind, false)
    }

    /// The strategic-merge-patch schema of a built-in kind (its `patchMergeKey` tags). It differs
    /// from [`MergeSchema::for_builtin`] where Kubernetes differs: ports merge on containerPort
    /// alone and Job status conditions merge by type (they are atomic for apply).
    pub fn for_builtin_strategic(api_version: &str, kind: &str) -> MergeSchema {
        builtin(api_version, kind, true)
    }

    /// The server-side-apply schema of a custom resource from its version's `openAPIV3Schema`:
    /// `x-kubernetes-list-type: map` with `x-kubernetes-list-map-keys`, `set`, and
    /// `x-kubernetes-map-type: atomic`; objects with `additionalProperties` are granular maps.
    /// Lists without a marker are atomic, as in the real server.
    pub fn from_crd_schema(open_api_v3_schema: &Value) -> MergeSchema {
        let mut schema = MergeSchema::default();
        read_crd_node(open_api_v3_schema, "", &mut schema);
        schema
    }

    pub(crate) fn list_kind(&self, spath: &str) -> ListKind {
        if let Some(keys) = self.map_lists.get(spath) {
            return ListKind::Map(keys.clone());
        }
        if self.set_lists.contains(spath) {
            return ListKind::Set;
        }
        match spath {
            ".metadata.ownerReferences" => ListKind::Map(vec!["uid".to_string()]),
            ".metadata.finalizers" => ListKind::Set,
            _ => ListKind::Atomic,
        }
    }

    pub(crate) fn object_kind(&self, spath: &str) -> ObjectKind {
        if self.atomic_maps.contains(spath) {
            ObjectKind::Atomic
        } else if self.granular_maps.contains(spath)
            || spath == ".metadata.labels"
            || spath == ".metadata.annotations"
        {
            ObjectKind::Map
        } else {
            ObjectKind::Struct
        }
    }

    /// The schema path of `key` inside the object at `spath`.
    pub(crate) fn child_path(&self, spath: &str, key: &str) -> String {
        if self.object_kind(spath) == ObjectKind::Map {
            format!("{spath}.*")
        } else {
            format!("{spath}.{key}")
        }
    }
}

/// The object kube-apiserver compares a created built-in object against: its Go zero value,
/// whose non-pointer structs exist (empty). Owning `.spec` on create is then not recorded for
/// a Job, as on the real server. `None` for kinds without such structs and custom resources.
pub fn zero_object(api_version: &str, kind: &str) -> Option<Value> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let zero = match (group, kind) {
        ("batch", "Job") => serde_json::json!({"metadata": {}, "spec": {"template":
            {"metadata": {}, "spec": {"containers": null}}}, "status": {}}),
        ("batch", "CronJob") => serde_json::json!({"metadata": {}, "spec": {"jobTemplate":
            {"metadata": {}, "spec": {"template": {"metadata": {}, "spec": {"containers": null}}}}},
            "status": {}}),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            serde_json::json!({"metadata": {}, "spec": {"selector": null, "template":
                {"metadata": {}, "spec": {"containers": null}}}, "status": {}})
        }
        ("", "Pod") => {
            serde_json::json!({"metadata": {}, "spec": {"containers": null}, "status": {}})
        }
        ("", "Namespace" | "Service") => {
            serde_json::json!({"metadata": {}, "spec": {}, "status": {}})
        }
        ("", "Event") => serde_json::json!({"metadata": {}, "involvedObject": {}, "source": {}}),
        ("events.k8s.io", "Event") => {
            serde_json::json!({"metadata": {}, "regarding": {}, "deprecatedSource": {}})
        }
        ("coordination.k8s.io", "Lease") => serde_json::json!({"metadata": {}, "spec": {}}),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => serde_json::json!({
            "metadata": {}, "spec": {"names": {}}, "status": {"acceptedNames": {}}}),
        _ => return None,
    };
    Some(zero)
}

fn builtin(api_version: &str, kind: &str, strategic: bool) -> MergeSchema {
    let mut schema = MergeSchema::default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Pod") => {
            add_pod_spec(&mut schema, ".spec", strategic);
            add_map_list(&mut schema, ".status.conditions", &["type"]);
            add_map_list(&mut schema, ".status.podIPs", &["ip"]);
            add_map_list(&mut schema, ".status.hostIPs", &["ip"]);
        }
        ("batch", "Job") => {
            add_pod_template(&mut schema, ".spec.template", strategic);
            schema.atomic_maps.insert(".spec.selector".to_string());
            if strategic {
                add_map_list(&mut schema, ".status.conditions", &["type"]);
            }
        }
        ("batch", "CronJob") => {
            add_pod_template(&mut schema, ".spec.jobTemplate.spec.template", strategic);
            schema
                .atomic_maps
                .insert(".spec.jobTemplate.spec.selector".to_string());
            add_map_list(&mut schema, ".status.active", &["uid"]);
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            add_pod_template(&mut schema, ".spec.template", strategic);
            schema.atomic_maps.insert(".spec.selector".to_string());
            add_map_list(&mut schema, ".status.conditions", &["type"]);
        }
        ("", "ConfigMap") => {
            schema.granular_maps.insert(".data".to_string());
            schema.granular_maps.insert(".binaryData".to_string());
        }
        ("", "Secret") => {
            schema.granular_maps.insert(".data".to_string());
            schema.granular_maps.insert(".stringData".to_string());
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            add_map_list(&mut schema, ".status.conditions", &["type"]);
        }
        _ => {}
    }
    schema
}

fn add_map_list(schema: &mut MergeSchema, path: &str, keys: &[&str]) {
    schema.map_lists.insert(
        path.to_string(),
        keys.iter().map(|k| (*k).to_string()).collect(),
    );
}

fn add_pod_template(schema: &mut MergeSchema, template: &str, strategic: bool) {
    schema
        .granular_maps
        .insert(format!("{template}.metadata.labels"));
    schema
        .granular_maps
        .insert(format!("{template}.metadata.annotations"));
    add_map_list(
        schema,
        &format!("{template}.metadata.ownerReferences"),
        &["uid"],
    );
    schema
        .set_lists
        .insert(format!("{template}.metadata.finalizers"));
    add_pod_spec(schema, &format!("{template}.spec"), strategic);
}

fn add_pod_spec(schema: &mut MergeSchema, spec: &str, strategic: bool) {
    for containers in ["containers", "initContainers", "ephemeralContainers"] {
        let c = format!("{spec}.{containers}");
        add_map_list(schema, &c, &["name"]);
        add_map_list(schema, &format!("{c}.env"), &["name"]);
        add_map_list(schema, &format!("{c}.volumeMounts"), &["mountPath"]);
        add_map_list(schema, &format!("{c}.volumeDevices"), &["devicePath"]);
        let port_keys: &[&str] = if strategic {
            &["containerPort"]
        } else {
            &["containerPort", "protocol"]
        };
        add_map_list(schema, &format!("{c}.ports"), port_keys);
        schema.granular_maps.insert(format!("{c}.resources.limits"));
        schema
            .granular_maps
            .insert(format!("{c}.resources.requests"));
    }
    add_map_list(schema, &format!("{spec}.volumes"), &["name"]);
    add_map_list(schema, &format!("{spec}.imagePullSecrets"), &["name"]);
    add_map_list(schema, &format!("{spec}.hostAliases"), &["ip"]);
    add_map_list(schema, &format!("{spec}.schedulingGates"), &["name"]);
    add_map_list(schema, &format!("{spec}.resourceClaims"), &["name"]);
    add_map_list(
        schema,
        &format!("{spec}.topologySpreadConstraints"),
        &["topologyKey", "whenUnsatisfiable"],
    );
    schema.granular_maps.insert(format!("{spec}.nodeSelector"));
    schema.granular_maps.insert(format!("{spec}.overhead"));
}

fn read_crd_node(node: &Value, spath: &str, schema: &mut MergeSchema) {
    let Value::Object(fields) = node else {
        return;
    };
    if fields.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
        schema.atomic_maps.insert(spath.to_string());
    }
    if let Some(Value::Object(properties)) = fields.get("properties") {
        for (name, child) in properties {
            read_crd_node(child, &format!("{spath}.{name}"), schema);
        }
    }
    if let Some(additional @ Value::Object(_)) = fields.get("additionalProperties") {
        schema.granular_maps.insert(spath.to_string());
        read_crd_node(additional, &format!("{spath}.*"), schema);
    }
    if let Some(items) = fields.get("items") {
        match fields.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys = fields
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if !keys.is_empty() {
                    schema.map_lists.insert(spath.to_string(), keys);
                }
            }
            Some("set") => {
                schema.set_lists.insert(spath.to_string());
            }
            _ => {}
        }
        read_crd_node(items, spath, schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_job_merges_containers_and_env_by_name() {
        let job = MergeSchema::for_builtin("batch/v1", "Job");
        let c = ".spec.template.spec.containers";
        let table = [
            (c.to_string(), ListKind::Map(vec!["name".into()])),
            (format!("{c}.env"), ListKind::Map(vec!["name".into()])),
            (
                format!("{c}.ports"),
                ListKind::Map(vec!["containerPort".into(), "protocol".into()]),
            ),
            (
                format!("{c}.volumeMounts"),
                ListKind::Map(vec!["mountPath".into()]),
            ),
            (format!("{c}.args"), ListKind::Atomic),
            (".status.conditions".to_string(), ListKind::Atomic),
            (".metadata.finalizers".to_string(), ListKind::Set),
            (
                ".metadata.ownerReferences".to_string(),
                ListKind::Map(vec!["uid".into()]),
            ),
        ];
        for (path, want) in table {
            assert_eq!(job.list_kind(&path), want, "{path}");
        }
        assert_eq!(job.object_kind(".spec.selector"), ObjectKind::Atomic);
        assert_eq!(
            job.object_kind(".spec.template.metadata.labels"),
            ObjectKind::Map
        );
        let strategic = MergeSchema::for_builtin_strategic("batch/v1", "Job");
        assert_eq!(
            strategic.list_kind(".status.conditions"),
            ListKind::Map(vec!["type".into()])
        );
        assert_eq!(
            strategic.list_kind(&format!("{c}.ports")),
            ListKind::Map(vec!["containerPort".into()])
        );
    }

    #[test]
    fn crd_schema_markers_become_list_and_map_kinds() {
        let schema = MergeSchema::from_crd_schema(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "files": {"type": "array", "items": {"type": "object"}},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name", "port"],
                              "items": {"type": "object", "properties": {
                                  "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                           "items": {"type": "string"}}}}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}}
                }}
            }
        }));
        assert_eq!(schema.list_kind(".spec.files"), ListKind::Atomic);
        assert_eq!(
            schema.list_kind(".spec.ports"),
            ListKind::Map(vec!["name".into(), "port".into()])
        );
        assert_eq!(schema.list_kind(".spec.ports.tags"), ListKind::Set);
        assert_eq!(schema.object_kind(".spec.selector"), ObjectKind::Atomic);
        assert_eq!(schema.object_kind(".spec.env"), ObjectKind::Map);
        assert_eq!(schema.child_path(".spec.env", "A"), ".spec.env.*");
        assert_eq!(schema.object_kind(".metadata.labels"), ObjectKind::Map);
    }
}
