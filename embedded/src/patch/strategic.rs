//! Strategic merge patch: a target object, a patch and the kind's merge keys in, the patched
//! object out. What is simplified against kube-apiserver is listed in the module doc of
//! [`super`].

use super::schema::ListKind;
use super::typed::key_of;
use super::{MergeSchema, PatchError};
use serde_json::{Map, Value};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

pub fn patch(target: &mut Value, patch: &Value, schema: &MergeSchema) -> Result<(), PatchError> {
    let Value::Object(patch_map) = patch else {
        return Err(PatchError::Invalid(
            "a strategic merge patch must be a JSON object".to_string(),
        ));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        patch_object(map, patch_map, "", schema)?;
    }
    Ok(())
}

fn patch_object(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    spath: &str,
    schema: &MergeSchema,
) -> Result<(), PatchError> {
    match patch.get(PATCH).map(|v| v.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            *target = strip_directives(patch);
            return Ok(());
        }
        Some(Some("delete")) => {
            target.clear();
            return Ok(());
        }
        Some(other) => {
            return Err(PatchError::Invalid(format!(
                "unknown patch type {other:?} in $patch at {}; use merge, replace or delete",
                display(spath)
            )));
        }
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let child = schema.child_path(spath, key);
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                if inner.get(PATCH).and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(map) = slot {
                    patch_object(map, inner, &child, schema)?;
                }
            }
            Value::Array(items) => {
                let current = target.remove(key);
                let merged = patch_list(current, items, &child, schema)?;
                target.insert(key.clone(), merged);
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let child = schema.child_path(spath, field);
            let order = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(field) {
                reorder(items, &order, &schema.list_kind(&child));
            }
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let Some(keep) = retain.as_array() else {
            return Err(PatchError::Invalid(format!(
                "$retainKeys at {} must be a list of field names",
                display(spath)
            )));
        };
        target.retain(|k, _| keep.iter().any(|name| name.as_str() == Some(k)));
    }
    Ok(())
}

fn patch_list(
    current: Option<Value>,
    items: &[Value],
    spath: &str,
    schema: &MergeSchema,
) -> Result<Value, PatchError> {
    let kind = schema.list_kind(spath);
    let replace = items
        .iter()
        .any(|i| i.get(PATCH).and_then(Value::as_str) == Some("replace"));
    let mut list = match current {
        Some(Value::Array(list)) if !replace && kind != ListKind::Atomic => list,
        _ => Vec::new(),
    };
    match kind {
        ListKind::Atomic => {
            return Ok(Value::Array(
                items.iter().map(strip_directives_value).collect(),
            ));
        }
        ListKind::Set => {
            for item in items {
                if item.get(PATCH).is_some() {
                    continue;
                }
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        ListKind::Map(keys) => {
            for item in items {
                let Value::Object(item_map) = item else {
                    return Err(PatchError::Invalid(format!(
                        "items of {} must be objects with merge key {}",
                        display(spath),
                        keys.join(",")
                    )));
                };
                let directive = item_map.get(PATCH).and_then(Value::as_str);
                if directive == Some("replace") && item_map.len() == 1 {
                    continue;
                }
                let present: Vec<String> = keys
                    .iter()
                    .filter(|k| item_map.contains_key(*k))
                    .cloned()
                    .collect();
                if present.is_empty() {
                    // kube-apiserver's words, Go map printing included.
                    return Err(PatchError::Invalid(format!(
                        "map: {} does not contain declared merge key: {}",
                        go_map(item_map),
                        keys.join(",")
                    )));
                }
                let key = key_of(item, &present);
                let position = list
                    .iter()
                    .position(|existing| key.is_some() && key_of(existing, &present) == key);
                match (directive, position) {
                    (Some("delete"), Some(i)) => {
                        list.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        if let Value::Object(existing) = &mut list[i] {
                            patch_object(existing, item_map, spath, schema)?;
                        }
                    }
                    (_, None) => {
                        let mut fresh = Map::new();
                        patch_object(&mut fresh, item_map, spath, schema)?;
                        list.push(Value::Object(fresh));
                    }
                }
            }
        }
    }
    Ok(Value::Array(list))
}

/// Puts the items named in `order` first, in that order; the rest keep their relative order.
fn reorder(items: &mut Vec<Value>, order: &[Value], kind: &ListKind) {
    let matches = |item: &Value, wanted: &Value| match kind {
        ListKind::Map(keys) => {
            let present: Vec<String> = keys
                .iter()
                .filter(|k| wanted.get(*k).is_some())
                .cloned()
                .collect();
            !present.is_empty() && key_of(item, &present) == key_of(wanted, &present)
        }
        _ => item == wanted,
    };
    let mut ordered = Vec::with_capacity(items.len());
    for wanted in order {
        if let Some(i) = items.iter().position(|item| matches(item, wanted)) {
            ordered.push(items.remove(i));
        }
    }
    ordered.append(items);
    *items = ordered;
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), strip_directives_value(v)))
        .collect()
}

fn strip_directives_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(strip_directives(map)),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives_value).collect()),
        other => other.clone(),
    }
}

/// `map[k:v k2:v2]`, as Go prints a map (sorted keys; serde_json's map is sorted).
fn go_map(map: &Map<String, Value>) -> String {
    let entries: Vec<String> = map
        .iter()
        .map(|(k, v)| match v {
            Value::String(text) => format!("{k}:{text}"),
            Value::Object(inner) => format!("{k}:{}", go_map(inner)),
            other => format!("{k}:{other}"),
        })
        .collect();
    format!("map[{}]", entries.join(" "))
}

fn display(spath: &str) -> &str {
    if spath.is_empty() {
        "the object"
    } else {
        spath
    }
}
