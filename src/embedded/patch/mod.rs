//! Patches and server-side apply on JSON objects: a live object and a patch in, the new object
//! (with `metadata.managedFields`) out. Pure: no store, no clock (the time is passed in).
//!
//! The API server decides which patch type a request carries and what part of the result it
//! keeps (for `/status`, only `.status`); this module only computes objects.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A patch the server could not apply; the server answers 400/422 (Invalid) or 409 (Conflict).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed or does not apply (a failed JSON-patch `test`, a path
    /// that does not exist): 422 for JSON patch, 400 for a body that is not a patch.
    #[error("{0}")]
    Invalid(String),
    /// An apply without force would take fields that another manager owns: 409 Conflict.
    #[error("Apply failed with {} conflict(s): {}", .0.len(), describe_conflicts(.0))]
    Conflict(Vec<FieldConflict>),
}

/// One field an apply wants that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    pub manager: String,
    /// Field path as the real server prints it, e.g. `.spec.contextVersion`.
    pub field: String,
}

fn describe_conflicts(conflicts: &[FieldConflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How lists merge, by dotted path from the object root (`.spec.template.spec.containers`).
/// A list not named here is atomic, as lists in custom resources are unless their schema says
/// `x-kubernetes-list-type: map|set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeSchema {
    /// Lists merged by key fields (`x-kubernetes-list-type: map` / `patchMergeKey`).
    pub map_lists: BTreeMap<String, Vec<String>>,
    /// Lists of scalars merged as sets (`x-kubernetes-list-type: set`).
    pub set_lists: BTreeSet<String>,
}

/// Who writes and when.
#[derive(Clone, Copy, Debug)]
pub struct WriteContext<'a> {
    pub manager: &'a str,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<&'a str>,
    /// RFC 3339, written into managedFields entries.
    pub now: &'a str,
}

/// RFC 7386 JSON merge patch.
pub fn json_merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Invalid(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError::Invalid(e.to_string()))
}

/// Strategic merge patch. Until the keyed-list rules land this is a JSON merge patch.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    _schema: &MergeSchema,
) -> Result<(), PatchError> {
    json_merge_patch(target, patch);
    Ok(())
}

/// Server-side apply of `applied` (the full intent of one manager) onto `live`.
/// Until field ownership lands this merges without tracking or conflicts.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    _force: bool,
    _ctx: WriteContext<'_>,
    _schema: &MergeSchema,
) -> Result<Value, PatchError> {
    let mut out = live
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    json_merge_patch(&mut out, applied);
    Ok(out)
}

/// Records in `new.metadata.managedFields` that `ctx.manager` (operation Update) now owns the
/// fields that differ between `old` and `new`. Called for create, update and non-apply patches.
pub fn track_update(_old: Option<&Value>, _new: &mut Value, _ctx: WriteContext<'_>) {}
