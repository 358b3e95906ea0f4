//! Schema-aware walks over JSON objects: an object (or two) and a [`MergeSchema`] in; its field
//! set, the fields that differ, an applied config merged in, or chosen fields removed out.
//!
//! These mirror structured-merge-diff's `ToFieldSet`, `Compare`, `Merge` and `RemoveItems`.

use super::MergeSchema;
use super::fieldset::{FieldSet, Path, PathElement, canonical_json};
use super::schema::{ListKind, ObjectKind, key_default};
use serde_json::{Map, Value};

/// The name of a list item: its key fields, its value (sets) or, failing those, its index.
pub fn list_item_element(item: &Value, index: usize, kind: &ListKind) -> PathElement {
    match kind {
        ListKind::Set => PathElement::Value(canonical_json(item)),
        ListKind::Map(keys) => match key_of(item, keys) {
            Some(key) => PathElement::Key(canonical_json(&Value::Object(key))),
            None => PathElement::Index(index),
        },
        ListKind::Atomic => PathElement::Index(index),
    }
}

/// The key fields of a map-list item, `None` when one is missing and has no default.
pub fn key_of(item: &Value, keys: &[String]) -> Option<Map<String, Value>> {
    let fields = item.as_object()?;
    let mut key = Map::new();
    for name in keys {
        let value = fields.get(name).cloned().or_else(|| key_default(name))?;
        key.insert(name.clone(), value);
    }
    Some(key)
}

/// Every field `value` sets, as an applied config's field set.
pub fn to_field_set(value: &Value, schema: &MergeSchema) -> FieldSet {
    let mut out = FieldSet::new();
    field_set_walk(value, &mut Vec::new(), "", schema, &mut out);
    out
}

fn field_set_walk(
    value: &Value,
    path: &mut Path,
    spath: &str,
    schema: &MergeSchema,
    out: &mut FieldSet,
) {
    match value {
        Value::Object(map) => {
            let kind = schema.object_kind(spath);
            if kind == ObjectKind::Atomic && !path.is_empty() {
                out.insert(path.clone());
                return;
            }
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                field_set_walk(child, path, &schema.child_path(spath, key), schema, out);
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty || kind == ObjectKind::Map {
                    out.insert(path.clone());
                }
                path.pop();
            }
        }
        Value::Array(items) => match schema.list_kind(spath) {
            ListKind::Atomic => out.insert(path.clone()),
            kind => {
                for (i, item) in items.iter().enumerate() {
                    path.push(list_item_element(item, i, &kind));
                    field_set_walk(item, path, spath, schema, out);
                    out.insert(path.clone());
                    path.pop();
                }
            }
        },
        _ if !path.is_empty() => out.insert(path.clone()),
        _ => {}
    }
}

/// Checks that every item of a map-list in an applied config carries its key fields and that
/// no two items (or set values) share a name, as structured-merge-diff does before applying.
pub fn check_list_keys(value: &Value, schema: &MergeSchema) -> Result<(), String> {
    check_walk(value, &mut Vec::new(), "", schema)
}

fn check_walk(
    value: &Value,
    path: &mut Path,
    spath: &str,
    schema: &MergeSchema,
) -> Result<(), String> {
    match value {
        Value::Object(map)
            if path.is_empty() || schema.object_kind(spath) != ObjectKind::Atomic =>
        {
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                check_walk(child, path, &schema.child_path(spath, key), schema)?;
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) => {
            let kind = schema.list_kind(spath);
            if kind == ListKind::Atomic {
                return Ok(());
            }
            let mut seen: Vec<PathElement> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let pe = list_item_element(item, i, &kind);
                if let (PathElement::Index(_), ListKind::Map(keys)) = (&pe, &kind) {
                    let missing = keys
                        .iter()
                        .find(|k| item.get(k.as_str()).is_none() && key_default(k).is_none())
                        .cloned()
                        .unwrap_or_default();
                    return Err(format!(
                        "{}: element {i}: associative list with keys has an element that omits key field {missing:?} (and doesn't have default value)",
                        super::fieldset::display_path(path)
                    ));
                }
                if seen.contains(&pe) {
                    return Err(format!(
                        "{}: duplicate entries for key {}",
                        super::fieldset::display_path(path),
                        super::fieldset::display_path(std::slice::from_ref(&pe))
                    ));
                }
                path.push(pe.clone());
                check_walk(item, path, spath, schema)?;
                path.pop();
                seen.push(pe);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What changed from `old` to `new`, as structured-merge-diff's `Comparison`.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

pub fn compare(old: &Value, new: &Value, schema: &MergeSchema) -> Comparison {
    let mut out = Comparison::default();
    compare_walk(Some(old), Some(new), &mut Vec::new(), "", schema, &mut out);
    out
}

fn compare_walk(
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut Path,
    spath: &str,
    schema: &MergeSchema,
    out: &mut Comparison,
) {
    // A null facing an object or a list is walked as an absent value (the zero value of a Go
    // pointer or slice), but still counts as present for the added/removed markers below.
    let (present_old, present_new) = (old, new);
    let structured = |v: Option<&Value>| v.is_some_and(|v| v.is_object() || v.is_array());
    let (old, new) = if structured(old) || structured(new) {
        (old.filter(|v| !v.is_null()), new.filter(|v| !v.is_null()))
    } else {
        (old, new)
    };
    let is_obj = |v: Option<&Value>| v.is_none_or(Value::is_object);
    let is_arr = |v: Option<&Value>| v.is_none_or(Value::is_array);
    let descended = if is_obj(old) && is_obj(new) {
        let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
        if schema.object_kind(spath) == ObjectKind::Atomic || (empty(old) && empty(new)) {
            compare_leaf(old, new, path, out);
            false
        } else {
            let none = Map::new();
            let old_map = old.and_then(Value::as_object).unwrap_or(&none);
            let new_map = new.and_then(Value::as_object).unwrap_or(&none);
            let keys: std::collections::BTreeSet<&String> =
                old_map.keys().chain(new_map.keys()).collect();
            for key in keys {
                path.push(PathElement::Field(key.clone()));
                let child = schema.child_path(spath, key);
                compare_walk(
                    old_map.get(key),
                    new_map.get(key),
                    path,
                    &child,
                    schema,
                    out,
                );
                path.pop();
            }
            true
        }
    } else if is_arr(old) && is_arr(new) {
        let empty = |v: Option<&Value>| v.and_then(Value::as_array).is_none_or(Vec::is_empty);
        let kind = schema.list_kind(spath);
        if kind == ListKind::Atomic || (empty(old) && empty(new)) {
            compare_leaf(old, new, path, out);
            false
        } else {
            let old_items = index_items(as_items(old), &kind);
            let new_items = index_items(as_items(new), &kind);
            let mut elements: Vec<&PathElement> = old_items.iter().map(|(pe, _)| pe).collect();
            for (pe, _) in &new_items {
                if !old_items.iter().any(|(o, _)| o == pe) {
                    elements.push(pe);
                }
            }
            for pe in elements {
                let (o, n) = (find_item(&old_items, pe), find_item(&new_items, pe));
                path.push(pe.clone());
                compare_walk(o, n, path, spath, schema, out);
                path.pop();
            }
            true
        }
    } else {
        compare_leaf(old, new, path, out);
        false
    };
    if descended && !path.is_empty() {
        match (present_old, present_new) {
            (None, Some(_)) => out.added.insert(path.clone()),
            (Some(_), None) => out.removed.insert(path.clone()),
            _ => {}
        }
    }
}

fn compare_leaf(old: Option<&Value>, new: Option<&Value>, path: &Path, out: &mut Comparison) {
    if path.is_empty() {
        return;
    }
    match (old, new) {
        (None, Some(_)) => out.added.insert(path.clone()),
        (Some(_), None) => out.removed.insert(path.clone()),
        (Some(o), Some(n)) if o != n => out.modified.insert(path.clone()),
        _ => {}
    }
}

fn as_items(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn find_item<'a>(items: &[(PathElement, &'a Value)], pe: &PathElement) -> Option<&'a Value> {
    items.iter().find(|(p, _)| p == pe).map(|(_, v)| *v)
}

/// Items of a granular list by name; a repeated name keeps its first item.
fn index_items<'a>(items: &'a [Value], kind: &ListKind) -> Vec<(PathElement, &'a Value)> {
    let mut out: Vec<(PathElement, &Value)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let pe = list_item_element(item, i, kind);
        if !out.iter().any(|(p, _)| *p == pe) {
            out.push((pe, item));
        }
    }
    out
}

/// `config` merged into `live`: objects field by field, granular lists item by item (the
/// config's order for its items, live-only items kept in place), everything else replaced.
/// A null in the config removes the field.
pub fn merge(live: Option<&Value>, config: &Value, spath: &str, schema: &MergeSchema) -> Value {
    match (live, config) {
        (Some(Value::Object(live_map)), Value::Object(config_map))
            if spath.is_empty() || schema.object_kind(spath) != ObjectKind::Atomic =>
        {
            let mut out = live_map.clone();
            for (key, value) in config_map {
                if value.is_null() {
                    out.remove(key);
                    continue;
                }
                let child = schema.child_path(spath, key);
                let merged = merge(live_map.get(key), value, &child, schema);
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(live_items)), Value::Array(config_items)) => {
            match schema.list_kind(spath) {
                ListKind::Atomic => config.clone(),
                kind => Value::Array(merge_list(live_items, config_items, &kind, spath, schema)),
            }
        }
        (None, Value::Object(config_map)) => {
            // Drop nulls inside new subtrees too, so a field is never stored as null.
            let mut out = Map::new();
            for (key, value) in config_map {
                if !value.is_null() {
                    let child = schema.child_path(spath, key);
                    out.insert(key.clone(), merge(None, value, &child, schema));
                }
            }
            Value::Object(out)
        }
        _ => config.clone(),
    }
}

fn merge_list(
    live: &[Value],
    config: &[Value],
    kind: &ListKind,
    spath: &str,
    schema: &MergeSchema,
) -> Vec<Value> {
    // structured-merge-diff's order: config items in config order, live-only items kept where
    // they were relative to the shared ones.
    let live_items = index_items(live, kind);
    let config_items = index_items(config, kind);
    let in_config = |pe: &PathElement| config_items.iter().any(|(p, _)| p == pe);
    let mut shared = config_items
        .iter()
        .filter(|(pe, _)| live_items.iter().any(|(p, _)| p == pe))
        .map(|(pe, _)| pe);
    let mut next_shared = shared.next();
    let mut merged: Vec<&PathElement> = Vec::new();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    while li < live_items.len() || ri < config_items.len() {
        if li < live_items.len() && ri < config_items.len() {
            let (pe, live_value) = &live_items[li];
            let (cpe, config_value) = &config_items[ri];
            if pe == cpe {
                merged.push(pe);
                out.push(merge(Some(live_value), config_value, spath, schema));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if in_config(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < live_items.len() {
            let (pe, live_value) = &live_items[li];
            if !in_config(pe) {
                out.push((*live_value).clone());
                li += 1;
                continue;
            }
            if merged.contains(&pe) {
                li += 1;
                continue;
            }
        }
        if ri < config_items.len() {
            let (cpe, config_value) = &config_items[ri];
            merged.push(cpe);
            out.push(merge(
                find_item(&live_items, cpe),
                config_value,
                spath,
                schema,
            ));
            ri += 1;
            if next_shared == Some(cpe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// `value` without the fields (and their subtrees) named in `set`. Atomic lists and objects are
/// never entered.
pub fn remove_items(value: &Value, set: &FieldSet, schema: &MergeSchema) -> Value {
    remove_walk(value, &mut Vec::new(), "", set, schema)
}

fn remove_walk(
    value: &Value,
    path: &mut Path,
    spath: &str,
    set: &FieldSet,
    schema: &MergeSchema,
) -> Value {
    match value {
        Value::Object(map)
            if path.is_empty() || schema.object_kind(spath) != ObjectKind::Atomic =>
        {
            let mut out = Map::new();
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                if !set.contains(path) {
                    let kept = if set.has_below(path) {
                        remove_walk(child, path, &schema.child_path(spath, key), set, schema)
                    } else {
                        child.clone()
                    };
                    out.insert(key.clone(), kept);
                }
                path.pop();
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let kind = schema.list_kind(spath);
            if kind == ListKind::Atomic {
                return value.clone();
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                path.push(list_item_element(item, i, &kind));
                if !set.contains(path) {
                    out.push(if set.has_below(path) {
                        remove_walk(item, path, spath, set, schema)
                    } else {
                        item.clone()
                    });
                }
                path.pop();
            }
            Value::Array(out)
        }
        _ => value.clone(),
    }
}

/// `set` plus every named (struct) field on the way to its members, as structured-merge-diff's
/// `EnsureNamedFieldsAreMembers`: owning `.spec.x` then also means owning `.spec`.
pub fn ensure_named_fields(set: &FieldSet, schema: &MergeSchema) -> FieldSet {
    let mut out = set.clone();
    for path in set.iter() {
        let mut spath = String::new();
        for (i, element) in path.iter().enumerate() {
            if let PathElement::Field(name) = element {
                if schema.object_kind(&spath) == ObjectKind::Struct && i + 1 < path.len() {
                    out.insert(path[..=i].to_vec());
                }
                spath = schema.child_path(&spath, name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(set: &FieldSet) -> Vec<String> {
        set.iter()
            .map(|p| super::super::fieldset::display_path(p))
            .collect()
    }

    #[test]
    fn field_set_owns_leaves_map_keys_and_keyed_items() {
        let schema = MergeSchema::for_builtin("v1", "Pod");
        let set = to_field_set(
            &json!({"metadata": {"labels": {"a": "1"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "args": ["x"]}]}}),
            &schema,
        );
        assert_eq!(
            paths(&set),
            vec![
                ".metadata.labels.a",
                ".spec.containers[name=\"c\"]",
                ".spec.containers[name=\"c\"].args",
                ".spec.containers[name=\"c\"].image",
                ".spec.containers[name=\"c\"].name",
            ]
        );
    }

    #[test]
    fn compare_reports_added_modified_removed_and_new_parents() {
        let schema = MergeSchema::default();
        let cmp = compare(
            &json!({"spec": {"a": 1, "b": 2}}),
            &json!({"spec": {"a": 3, "c": {"d": 4}}}),
            &schema,
        );
        assert_eq!(paths(&cmp.modified), vec![".spec.a"]);
        assert_eq!(paths(&cmp.added), vec![".spec.c", ".spec.c.d"]);
        assert_eq!(paths(&cmp.removed), vec![".spec.b"]);
    }

    #[test]
    fn merge_keeps_live_only_items_and_takes_config_order() {
        let schema = MergeSchema::for_builtin("v1", "Pod");
        let merged = merge(
            Some(&json!({"spec": {"containers": [
                {"name": "a", "image": "1"}, {"name": "side", "image": "s"}, {"name": "b", "image": "2"}]}})),
            &json!({"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "a"}]}}),
            "",
            &schema,
        );
        assert_eq!(
            merged,
            json!({"spec": {"containers": [
                {"name": "side", "image": "s"}, {"name": "b", "image": "3"}, {"name": "a", "image": "1"}]}})
        );
    }

    #[test]
    fn remove_items_drops_named_subtrees_and_keyed_items() {
        let schema = MergeSchema::for_builtin("v1", "Pod");
        let mut set = FieldSet::new();
        set.insert(vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(r#"{"name":"b"}"#.into()),
        ]);
        set.insert(vec![PathElement::Field("x".into())]);
        let out = remove_items(
            &json!({"x": {"y": 1}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            &set,
            &schema,
        );
        assert_eq!(out, json!({"spec": {"containers": [{"name": "a"}]}}));
    }
}
