//! Field ownership: a live object and a write (an applied config, or the new object of an update)
//! in, the new object with its `metadata.managedFields` out. Follows structured-merge-diff's
//! `Updater.Apply` / `Updater.Update` and kube-apiserver's field-manager wrappers.

use super::fieldset::{FieldSet, PathElement, display_path};
use super::managed_fields::{
    ManagedEntry, ManagerId, Operation, decode, store, strip_server_fields, without_managed_fields,
};
use super::schema::zero_object;
use super::typed::{
    check_list_keys, compare, ensure_named_fields, merge, remove_items, to_field_set,
};
use super::{FieldConflict, MergeSchema, PatchError, WriteContext};
use serde_json::{Map, Value};

pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    force: bool,
    ctx: WriteContext<'_>,
    schema: &MergeSchema,
) -> Result<Value, PatchError> {
    let config = checked_config(applied, ctx)?;
    check_list_keys(&config, schema).map_err(|e| {
        let text = |p: &str| {
            config
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        PatchError::Invalid(format!(
            "failed to create typed patch object ({}/{}; {}, Kind={}): {e}",
            text("/metadata/namespace"),
            text("/metadata/name"),
            text("/apiVersion"),
            text("/kind"),
        ))
    })?;
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let live_object = live
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut entries = live.map(decode).unwrap_or_default();
    let me = ManagerId {
        manager: ctx.manager.to_string(),
        operation: Operation::Apply,
        api_version: None,
        subresource: ctx.subresource.map(str::to_string),
    };

    let merged = merge(Some(&live_object), &config, "", schema);
    let previous = entries.iter().find(|e| e.id == me).cloned();
    let mut set = to_field_set(&config, schema);
    if is_status(ctx) {
        set = set.filter(|p| under_status(p));
    }
    match entries.iter_mut().find(|e| e.id == me) {
        Some(entry) => {
            entry.set = set;
            entry.api_version = api_version.clone();
        }
        None => entries.push(ManagedEntry {
            id: me.clone(),
            api_version: api_version.clone(),
            time: None,
            set,
        }),
    }
    let result = match &previous {
        Some(last) if !last.set.is_empty() => prune(&merged, &entries, &last.set, schema),
        _ => merged,
    };
    take_changed_fields(&live_object, &result, &mut entries, &me, force, schema)?;
    finish(&mut entries);

    let changed = result != live_object;
    if let Some(entry) = entries.iter_mut().find(|e| e.id == me) {
        // A no-op apply keeps the old time, so the object stays byte-for-byte the same.
        let old_time = previous.and_then(|p| p.time);
        entry.time = match old_time {
            Some(time) if !changed => Some(time),
            _ => Some(ctx.now.to_string()),
        };
    }
    let mut out = result;
    store(&mut out, &entries);
    Ok(out)
}

pub fn update(old: Option<&Value>, new: &mut Value, ctx: WriteContext<'_>, schema: &MergeSchema) {
    // `managedFields: [{}]` is kube-apiserver's way to drop all ownership records.
    if new.pointer("/metadata/managedFields") == Some(&serde_json::json!([{}])) {
        store(new, &[]);
        return;
    }
    let mut new_object = without_managed_fields(new);
    let old_object = match old {
        Some(old) => without_managed_fields(old),
        None => {
            // On create the real server compares with the kind's zero value, whose empty
            // structs are on both sides.
            let text = |f: &str| {
                new_object
                    .get(f)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            match zero_object(text("apiVersion"), text("kind")) {
                Some(zero) => {
                    new_object = merge(Some(&zero), &new_object, "", schema);
                    zero
                }
                None => Value::Object(Map::new()),
            }
        }
    };
    // A client that sends managedFields different from the stored ones replaces them, as
    // kube-apiserver lets it; otherwise the stored entries carry over.
    let sent = new.pointer("/metadata/managedFields");
    let stored = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let mut entries = match sent {
        Some(Value::Array(list)) if !list.is_empty() && sent != stored => decode(new),
        _ => old.map(decode).unwrap_or_default(),
    };
    let api_version = new_object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let me = ManagerId {
        manager: ctx.manager.to_string(),
        operation: Operation::Update,
        api_version: Some(api_version.clone()),
        subresource: ctx.subresource.map(str::to_string),
    };
    let cmp = compare(&old_object, &new_object, schema);
    let taken = cmp.modified.union(&cmp.added);
    let mut current = strip_server_fields(&taken.difference(&cmp.removed));
    if is_status(ctx) {
        current = current.filter(|p| under_status(p));
    }
    // The writer takes every field it changed, from everyone (its own earlier set included,
    // which then gets the changed fields back below).
    for entry in entries.iter_mut() {
        entry.set = entry.set.difference(&taken).difference(&cmp.removed);
    }
    if !current.is_empty() {
        match entries.iter_mut().find(|e| e.id == me) {
            Some(entry) => {
                entry.set = entry.set.union(&current);
                entry.time = Some(ctx.now.to_string());
                entry.api_version = api_version;
            }
            None => entries.push(ManagedEntry {
                id: me,
                api_version,
                time: Some(ctx.now.to_string()),
                set: current,
            }),
        }
    }
    finish(&mut entries);
    store(new, &entries);
}

fn is_status(ctx: WriteContext<'_>) -> bool {
    ctx.subresource == Some("status")
}

fn under_status(path: &[PathElement]) -> bool {
    matches!(path.first(), Some(PathElement::Field(name)) if name == "status")
}

/// The applied config, checked as kube-apiserver checks it; for the status subresource only
/// `.status` (and the identity fields) count.
fn checked_config(applied: &Value, ctx: WriteContext<'_>) -> Result<Value, PatchError> {
    let Value::Object(map) = applied else {
        return Err(PatchError::Invalid(
            "an apply patch must be a YAML or JSON object".to_string(),
        ));
    };
    for field in ["apiVersion", "kind"] {
        if !map.get(field).is_some_and(Value::is_string) {
            return Err(PatchError::Invalid(format!(
                "{field} must be set in an apply patch"
            )));
        }
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(PatchError::Invalid(
            "metadata.managedFields must be nil".to_string(),
        ));
    }
    if !is_status(ctx) {
        let mut config = applied.clone();
        // Go clients send `creationTimestamp: null` for an unset time; it must not erase the
        // server's value.
        if let Some(Value::Object(metadata)) = config.get_mut("metadata")
            && metadata
                .get("creationTimestamp")
                .is_some_and(Value::is_null)
        {
            metadata.remove("creationTimestamp");
        }
        return Ok(config);
    }
    let mut out = Map::new();
    for field in ["apiVersion", "kind", "status"] {
        if let Some(value) = map.get(field) {
            out.insert(field.to_string(), value.clone());
        }
    }
    let mut metadata = Map::new();
    for field in ["name", "namespace"] {
        if let Some(value) = applied.get("metadata").and_then(|m| m.get(field)) {
            metadata.insert(field.to_string(), value.clone());
        }
    }
    out.insert("metadata".to_string(), Value::Object(metadata));
    Ok(Value::Object(out))
}

/// Removes what the applier set last time and no longer sets, unless some manager (the
/// applier's new set included) still owns it: structured-merge-diff's `prune`,
/// `addBackOwnedItems` and `addBackDanglingItems`.
fn prune(merged: &Value, entries: &[ManagedEntry], last: &FieldSet, schema: &MergeSchema) -> Value {
    // Server-set fields (`metadata` itself, its name, uid, ...) are never pruned: an applier that
    // stops setting labels loses its labels, not the object's identity.
    let last = strip_server_fields(&ensure_named_fields(last, schema));
    let pruned = remove_items(merged, &last, schema);
    let owned = entries
        .iter()
        .fold(FieldSet::new(), |acc, e| acc.union(&e.set));
    let owned = ensure_named_fields(&owned, schema);
    let merged_set = ensure_named_fields(&to_field_set(merged, schema), schema);
    let pruned_set = ensure_named_fields(&to_field_set(&pruned, schema), schema);
    let unowned_gone = merged_set.difference(&pruned_set.union(&owned));
    let pruned = remove_items(merged, &unowned_gone, schema);
    let pruned_set = ensure_named_fields(&to_field_set(&pruned, schema), schema);
    remove_items(
        merged,
        &merged_set.difference(&pruned_set).intersection(&last),
        schema,
    )
}

/// The applier takes the fields it changes or adds: another manager that owns one of them is a
/// conflict (without force) or loses it (with force); fields the write removed leave every
/// other manager's set.
fn take_changed_fields(
    old: &Value,
    new: &Value,
    entries: &mut [ManagedEntry],
    me: &ManagerId,
    force: bool,
    schema: &MergeSchema,
) -> Result<(), PatchError> {
    let cmp = compare(old, new, schema);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| e.id != *me) {
        for path in entry.set.intersection(&changed).iter() {
            conflicts.push(FieldConflict {
                manager: entry.id.manager.clone(),
                field: display_path(path),
                described_manager: entry.id.describe(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| {
            (&a.described_manager, &a.field).cmp(&(&b.described_manager, &b.field))
        });
        return Err(PatchError::Conflict(conflicts));
    }
    for entry in entries.iter_mut().filter(|e| e.id != *me) {
        entry.set = entry.set.difference(&changed).difference(&cmp.removed);
    }
    Ok(())
}

/// Drops server-set fields from every set and managers left owning nothing, then caps the
/// Update managers.
fn finish(entries: &mut Vec<ManagedEntry>) {
    for entry in entries.iter_mut() {
        entry.set = strip_server_fields(&entry.set);
    }
    entries.retain(|e| !e.set.is_empty());
    cap_update_managers(entries);
}

/// kube-apiserver keeps at most this many Update entries.
const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager the oldest Update entries are merged into, one per apiVersion.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// Merges the oldest Update entries into an `ancient-changes` entry per apiVersion until at
/// most [`MAX_UPDATE_MANAGERS`] are left, as kube-apiserver's capManagersManager does.
fn cap_update_managers(entries: &mut Vec<ManagedEntry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].id.operation == Operation::Update)
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|&a, &b| {
        (&entries[a].time, &entries[a].id.manager).cmp(&(&entries[b].time, &entries[b].id.manager))
    });
    let mut remaining = updaters.len();
    let mut first_of_version: Vec<(String, usize)> = Vec::new();
    let mut gone: Vec<usize> = Vec::new();
    for &i in &updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        match first_of_version.iter().find(|(v, _)| *v == version) {
            Some(&(_, first)) => {
                let merged = entries[first].set.union(&entries[i].set);
                let time = entries[i].time.clone();
                let bucket = &mut entries[first];
                bucket.set = merged;
                bucket.id = ManagerId {
                    manager: ANCIENT_CHANGES.to_string(),
                    operation: Operation::Update,
                    api_version: Some(version),
                    subresource: None,
                };
                bucket.time = time;
                gone.push(i);
                remaining -= 1;
            }
            None => first_of_version.push((version, i)),
        }
    }
    let mut index = 0;
    entries.retain(|_| {
        let keep = !gone.contains(&index);
        index += 1;
        keep
    });
}
