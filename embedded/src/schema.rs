//! A CRD's structural openAPIV3Schema applied to an object: defaults filled in, unknown fields
//! pruned, then types, enums, required fields and bounds checked. Object and schema in, the
//! causes of a 422 out. Pure.

use super::status::Cause;
use serde_json::{Map, Value};

/// What applying a schema found.
#[derive(Debug, Default, PartialEq)]
pub struct SchemaOutcome {
    /// Failed fields: the object is Invalid (422).
    pub causes: Vec<Cause>,
    /// Fields the schema does not declare, removed (`spec.bogus`); with
    /// `fieldValidation=Strict` the request fails instead.
    pub pruned: Vec<String>,
}

/// Defaults, prunes and validates `obj` (the whole object) against `schema`.
pub fn apply_schema(schema: &Value, obj: &mut Value) -> SchemaOutcome {
    let mut pruned = Vec::new();
    default_and_prune(schema, obj, "", &mut pruned);
    let mut causes = Vec::new();
    validate(schema, obj, "", &mut causes, true);
    SchemaOutcome { causes, pruned }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

fn nullable(schema: &Value) -> bool {
    schema["nullable"].as_bool() == Some(true)
}

fn default_and_prune(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    let root = path.is_empty();
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            if let Some(props) = props {
                for (k, s) in props {
                    if !map.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keep_unknown =
                preserves_unknown(schema) || schema["additionalProperties"].as_bool() == Some(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(additional);
                match child_schema {
                    Some(s) => {
                        if map.get(&k).is_some_and(Value::is_null) && !nullable(s) {
                            map.remove(&k);
                            continue;
                        }
                        if let Some(child) = map.get_mut(&k) {
                            default_and_prune(s, child, &child_path(path, &k), pruned);
                        }
                    }
                    None if keep_unknown => {}
                    None => {
                        map.remove(&k);
                        pruned.push(child_path(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    default_and_prune(item_schema, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match want {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        // kube-apiserver lists a null enum entry (an Option<enum>'s `nullable: true`) as "null".
        Value::Null => "\"null\"".to_string(),
        other => other.to_string(),
    }
}

fn validate(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>, root: bool) {
    if v.is_null() {
        if !nullable(schema) && !root {
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {:?}: {path} in body must be of type integer or string: {:?}",
                    type_name(v),
                    type_name(v)
                ),
            ));
            return;
        }
    } else if let Some(want) = schema["type"].as_str()
        && !type_ok(want, v)
    {
        causes.push(Cause::new(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: {:?}: {path} in body must be of type {want}: {:?}",
                type_name(v),
                type_name(v)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                render(v),
                allowed.iter().map(render).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema["minimum"].as_f64()
            && n < min
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {v}: {path} in body should be greater than or equal to {}",
                    schema["minimum"]
                ),
            ));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && n > max
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {v}: {path} in body should be less than or equal to {}",
                    schema["maximum"]
                ),
            ));
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64()
            && len > max
        {
            causes.push(Cause::new(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
        if let Some(min) = schema["minLength"].as_u64()
            && len < min
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body should be at least {min} chars long",
                    render(v)
                ),
            ));
        }
    }
    match v {
        Value::Object(map) => validate_object(schema, map, path, causes, root),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), causes, false);
                }
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                causes.push(Cause::new(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
        }
        _ => {}
    }
}

fn validate_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    causes: &mut Vec<Cause>,
    root: bool,
) {
    for req in schema["required"].as_array().into_iter().flatten() {
        if let Some(k) = req.as_str()
            && !map.contains_key(k)
        {
            causes.push(Cause::new(
                "FieldValueRequired",
                child_path(path, k),
                "Required value",
            ));
        }
    }
    let props = schema["properties"].as_object();
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in map {
        if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
            validate(s, child, &child_path(path, k), causes, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task_run_schema() -> Value {
        let crd = crate::testdata::example_crd();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    fn task_run(spec: Value, status: Option<Value>) -> Value {
        let mut o = json!({"apiVersion": "orchestrator.io/v1", "kind": "TaskRun",
            "metadata": {"name": "t"}, "spec": spec});
        if let Some(s) = status {
            o["status"] = s;
        }
        o
    }

    fn good_spec() -> Value {
        json!({"taskId": 1, "serviceName": "s", "agentName": "a", "contextVersion": 1})
    }

    #[test]
    fn valid_object_passes_and_gets_defaults() {
        let mut o = task_run(good_spec(), Some(json!({"phase": "Running"})));
        assert_eq!(
            apply_schema(&task_run_schema(), &mut o),
            SchemaOutcome::default()
        );
        assert_eq!(o["status"]["attempts"], json!(0));
        assert_eq!(o["spec"]["markdownFiles"], json!([]));
    }

    #[test]
    fn unknown_fields_are_pruned() {
        let mut spec = good_spec();
        spec["bogus"] = json!(1);
        let mut o = task_run(spec, None);
        let outcome = apply_schema(&task_run_schema(), &mut o);
        assert!(outcome.causes.is_empty());
        assert_eq!(outcome.pruned, vec!["spec.bogus".to_string()]);
        assert!(o["spec"].get("bogus").is_none());
        assert!(o["metadata"]["name"].is_string());
    }

    #[test]
    fn type_enum_required_and_minimum_fail_with_field_paths() {
        let cases = [
            (
                json!({"taskId": "x", "serviceName": "s", "agentName": "a", "contextVersion": 1}),
                None,
                "spec.taskId",
                "FieldValueTypeInvalid",
            ),
            (
                json!({"taskId": 1, "serviceName": "s", "contextVersion": 1}),
                None,
                "spec.agentName",
                "FieldValueRequired",
            ),
            (
                json!({"taskId": -1, "serviceName": "s", "agentName": "a", "contextVersion": 1}),
                None,
                "spec.taskId",
                "FieldValueInvalid",
            ),
            (
                good_spec(),
                Some(json!({"phase": "Bogus"})),
                "status.phase",
                "FieldValueNotSupported",
            ),
            (
                json!({"taskId": 1, "serviceName": "s", "agentName": "a", "contextVersion": 1, "markdownFiles": [{"filename": "a.md"}]}),
                None,
                "spec.markdownFiles[0].content",
                "FieldValueRequired",
            ),
        ];
        for (spec, status, field, reason) in cases {
            let mut o = task_run(spec.clone(), status);
            let causes = apply_schema(&task_run_schema(), &mut o).causes;
            assert_eq!(causes.len(), 1, "{spec}: {causes:?}");
            assert_eq!(
                (causes[0].field.as_str(), causes[0].reason),
                (field, reason),
                "{causes:?}"
            );
        }
    }
}
