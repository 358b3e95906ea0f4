//! `metadata.managedFields`: an object's entries in, one field set per manager out (and back,
//! sorted as kube-apiserver sorts them).

use super::fieldset::{FieldSet, PathElement};
use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns a set, as the real server tells managers apart: appliers by name (and
/// subresource) whatever apiVersion they used, updaters also by apiVersion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// `Some` for Update managers only.
    pub api_version: Option<String>,
    pub subresource: Option<String>,
}

impl ManagerId {
    /// How kube-apiserver names the manager in a conflict: `"m"`, `"m" with subresource
    /// "status"`, and for updaters `... using batch/v1`.
    pub fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if let Some(api_version) = &self.api_version {
            out.push_str(&format!(" using {api_version}"));
        }
        out
    }
}

/// One decoded `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedEntry {
    pub id: ManagerId,
    pub api_version: String,
    pub time: Option<String>,
    pub set: FieldSet,
}

/// The entries of `object` (none when it has no managedFields). Entries without a manager
/// name or with unreadable fieldsV1 are dropped, as they can own nothing.
pub fn decode(object: &Value) -> Vec<ManagedEntry> {
    let Some(Value::Array(entries)) = object.pointer("/metadata/managedFields") else {
        return Vec::new();
    };
    let mut out: Vec<ManagedEntry> = Vec::new();
    for entry in entries {
        let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
        let Some(manager) = text("manager") else {
            continue;
        };
        let operation = match text("operation").as_deref() {
            Some("Apply") => Operation::Apply,
            _ => Operation::Update,
        };
        let api_version = text("apiVersion").unwrap_or_default();
        let set = match entry.get("fieldsV1") {
            Some(fields) => match FieldSet::from_fields_v1(fields) {
                Ok(set) => set,
                Err(_) => continue,
            },
            None => FieldSet::new(),
        };
        let id = ManagerId {
            manager,
            operation,
            api_version: (operation == Operation::Update).then(|| api_version.clone()),
            subresource: text("subresource").filter(|s| !s.is_empty()),
        };
        match out.iter_mut().find(|e| e.id == id) {
            Some(existing) => existing.set = existing.set.union(&set),
            None => out.push(ManagedEntry {
                id,
                api_version,
                time: text("time"),
                set,
            }),
        }
    }
    out
}

/// The `managedFields` array for `entries`, sorted by operation, time, manager, apiVersion
/// and subresource as kube-apiserver sorts it.
pub fn encode(entries: &[ManagedEntry]) -> Value {
    let mut sorted: Vec<&ManagedEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.id.operation,
            &a.time,
            &a.id.manager,
            &a.api_version,
            &a.id.subresource,
        )
            .cmp(&(
                b.id.operation,
                &b.time,
                &b.id.manager,
                &b.api_version,
                &b.id.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut entry = Map::new();
                entry.insert("manager".into(), json!(e.id.manager));
                entry.insert("operation".into(), json!(e.id.operation.as_str()));
                entry.insert("apiVersion".into(), json!(e.api_version));
                if let Some(time) = &e.time {
                    entry.insert("time".into(), json!(time));
                }
                entry.insert("fieldsType".into(), json!("FieldsV1"));
                entry.insert("fieldsV1".into(), e.set.to_fields_v1());
                if let Some(sub) = &e.id.subresource {
                    entry.insert("subresource".into(), json!(sub));
                }
                Value::Object(entry)
            })
            .collect(),
    )
}

/// Writes `entries` into `object.metadata.managedFields`, removing the key when there are none.
pub fn store(object: &mut Value, entries: &[ManagedEntry]) {
    let Some(Value::Object(metadata)) = object.get_mut("metadata") else {
        if entries.is_empty() {
            return;
        }
        if let Value::Object(map) = object {
            map.insert("metadata".into(), json!({"managedFields": encode(entries)}));
        }
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), encode(entries));
    }
}

/// `object` without `metadata.managedFields`.
pub fn without_managed_fields(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(Value::Object(metadata)) = out.get_mut("metadata") {
        metadata.remove("managedFields");
    }
    out
}

/// Fields the server sets itself and nobody owns (kube-apiserver's stripMeta list). Only
/// these exact paths go: `.metadata.labels.x` stays owned while `.metadata` does not.
pub fn strip_server_fields(set: &FieldSet) -> FieldSet {
    set.filter(|path| !is_server_field(path))
}

fn is_server_field(path: &[PathElement]) -> bool {
    let field = |i: usize| match path.get(i) {
        Some(PathElement::Field(name)) => Some(name.as_str()),
        _ => None,
    };
    match (path.len(), field(0), field(1)) {
        (1, Some("apiVersion" | "kind" | "metadata"), _) => true,
        (2, Some("metadata"), Some(name)) => matches!(
            name,
            "name"
                | "namespace"
                | "creationTimestamp"
                | "selfLink"
                | "uid"
                | "clusterName"
                | "generation"
                | "managedFields"
                | "resourceVersion"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_sorted_apply_before_update_then_by_time() {
        let object = json!({"metadata": {"managedFields": [
            {"manager": "b", "operation": "Update", "apiVersion": "v1", "time": "2026-01-02T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:x": {}}}},
            {"manager": "z", "operation": "Apply", "apiVersion": "v1", "time": "2026-01-03T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:y": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:s": {}}}, "subresource": "status"}
        ]}});
        let entries = decode(&object);
        assert_eq!(entries.len(), 3);
        let encoded = encode(&entries);
        let managers: Vec<&str> = encoded
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, vec!["z", "a", "b"]);
        assert_eq!(encoded[1]["subresource"], json!("status"));
        let again = encode(&decode(
            &json!({"metadata": {"managedFields": encoded.clone()}}),
        ));
        assert_eq!(again, encoded);
    }

    #[test]
    fn conflicting_managers_are_described_like_kube_apiserver() {
        let apply = ManagerId {
            manager: "sync".into(),
            operation: Operation::Apply,
            api_version: None,
            subresource: None,
        };
        assert_eq!(apply.describe(), r#""sync""#);
        let update = ManagerId {
            manager: "kubectl-edit".into(),
            operation: Operation::Update,
            api_version: Some("batch/v1".into()),
            subresource: Some("status".into()),
        };
        assert_eq!(
            update.describe(),
            r#""kubectl-edit" with subresource "status" using batch/v1"#
        );
    }
}
