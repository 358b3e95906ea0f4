//! Patches and server-side apply on JSON objects: a live object and a patch in, the new object
//! (with `metadata.managedFields`) out. Pure: no store, no clock (the time is passed in).
//!
//! The API server decides which patch type a request carries and what part of the result it
//! keeps (for `/status`, only `.status`); this module only computes objects.
//!
//! Server-side apply and update tracking follow structured-merge-diff v4 as kube-apiserver uses
//! it: field sets in the FieldsV1 format, the applier's set becomes exactly its applied config,
//! fields it stops applying are pruned unless another manager owns them, conflicts are fields
//! another manager owns whose value the apply changes. Where this differs from the real server:
//! - The schema is a [`MergeSchema`] (list types, granular and atomic maps by path), not a full
//!   OpenAPI model: objects not named as maps are structs, so an applied config owns their
//!   leaves; there is no per-field type checking, no unions, no deduced (schemaless) types, and
//!   `x-kubernetes-preserve-unknown-fields` subtrees are treated like any struct.
//! - Map-list key fields may be omitted only where Kubernetes defaults them (`protocol: TCP`).
//! - For create, an update's "old object" is a hand-written zero value for common built-in kinds
//!   (Job, Pod, Deployment, Namespace, Event, Lease, CRD, ...) and `{}` for the rest, where the
//!   real server converts the kind's zero-valued Go struct: for other built-in kinds new parent
//!   structs may get a `".": {}` the real server would not record.
//! - No conversion of sets between apiVersions, no `before-first-apply` manager for objects
//!   stored without managedFields, no `kubectl.kubernetes.io/last-applied-configuration`
//!   upgrade path. (Update entries are capped at 10 with `ancient-changes`, and
//!   `managedFields: [{}]` resets them, as on the real server.)
//! - A `null` in an applied config removes the field (and the applier owns it).
//!
//! Strategic merge patch, simplified: lists merge by the [`MergeSchema`] keys (use
//! [`MergeSchema::for_builtin_strategic`]); a list item matches on the key fields it carries;
//! `$patch: replace|delete|merge` on objects and list items, `$deleteFromPrimitiveList/<f>` and
//! `null` deletions are supported; `$setElementOrder/<f>` only moves the named items to the front
//! in the given order; `$retainKeys` keeps exactly the listed keys of the object after merging
//! (it is not limited to `retainKeys`-strategy fields); lists without a merge key are replaced.
//! kube-apiserver rejects strategic merge patches on custom resources (415); the server, not
//! this module, must do that.

mod apply;
pub mod fieldset;
pub mod managed_fields;
mod schema;
mod strategic;
mod typed;

#[cfg(test)]
mod tests;

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
    /// The message is kube-apiserver's, e.g.
    /// `Apply failed with 1 conflict: conflict with "other": .spec.x`.
    #[error("{}", describe_conflicts(.0))]
    Conflict(Vec<FieldConflict>),
}

/// One field an apply wants that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    pub manager: String,
    /// Field path as the real server prints it, e.g. `.spec.contextVersion`.
    pub field: String,
    /// The manager as the real server prints it: `"m"`, `"m" with subresource "status"`, or for
    /// an Update manager `"m" using batch/v1`.
    pub described_manager: String,
}

impl FieldConflict {
    /// The `message` of this conflict's `FieldManagerConflict` cause in the 409 Status
    /// (the cause's `field` is [`FieldConflict::field`]).
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.described_manager)
    }
}

fn describe_conflicts(conflicts: &[FieldConflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.described_manager, only.field
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager
            .entry(&c.described_manager)
            .or_default()
            .push(&c.field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// How lists and maps merge, by schema path from the object root
/// (`.spec.template.spec.containers`; list steps are left out, so `.spec.containers.env` is the
/// env list of every container, and the values of a granular map are `<map>.*`).
/// A list not named here is atomic, as lists in custom resources are unless their schema says
/// `x-kubernetes-list-type: map|set`. `metadata` labels/annotations (maps), ownerReferences (by
/// uid) and finalizers (set) hold for every schema.
///
/// Build one with [`MergeSchema::for_builtin`] (apply and update tracking of built-in kinds),
/// [`MergeSchema::for_builtin_strategic`] (strategic merge patch) or
/// [`MergeSchema::from_crd_schema`] (custom resources).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeSchema {
    /// Lists merged by key fields (`x-kubernetes-list-type: map` / `patchMergeKey`).
    pub map_lists: BTreeMap<String, Vec<String>>,
    /// Lists of scalars merged as sets (`x-kubernetes-list-type: set`).
    pub set_lists: BTreeSet<String>,
    /// Objects whose keys are data, not field names (labels, ConfigMap `data`,
    /// `additionalProperties`): each key is owned on its own.
    pub granular_maps: BTreeSet<String>,
    /// Objects owned and replaced as a whole (`x-kubernetes-map-type: atomic`, LabelSelector).
    pub atomic_maps: BTreeSet<String>,
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
    // kube-apiserver (evanphx/json-patch) lets `test` of a missing path against `null` pass;
    // kube-runtime's finalizer helper relies on it to add the first finalizer. Apply the ops one
    // by one on a copy so that the patch stays all-or-nothing.
    let mut work = target.clone();
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && work.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut work, std::slice::from_ref(&op))
            .map_err(|e| PatchError::Invalid(e.to_string()))?;
    }
    *target = work;
    Ok(())
}

/// Strategic merge patch with the list merge keys of `schema` (pass
/// [`MergeSchema::for_builtin_strategic`]); see the module doc for what is simplified.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    schema: &MergeSchema,
) -> Result<(), PatchError> {
    strategic::patch(target, patch, schema)
}

/// Server-side apply of `applied` (the full intent of one manager) onto `live` (`None` to
/// create). Returns the new object with `metadata.managedFields`; when the apply changes
/// nothing, the result equals `live` exactly, so the server can skip the write.
///
/// For `ctx.subresource == Some("status")` only `.status` of `applied` counts and the entry
/// carries `subresource: status`. For a resource with a status subresource applied through the
/// main endpoint, drop `.status` from `applied` first, as the real server ignores it there.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    force: bool,
    ctx: WriteContext<'_>,
    schema: &MergeSchema,
) -> Result<Value, PatchError> {
    apply::apply(live, applied, force, ctx, schema)
}

/// Records in `new.metadata.managedFields` that `ctx.manager` (operation Update) now owns the
/// fields that differ between `old` and `new`, taking them from other managers. Called for
/// create, update and non-apply patches. Lists merge by [`MergeSchema::for_builtin`] of `new`'s
/// apiVersion and kind; for custom resources call [`track_update_with_schema`].
pub fn track_update(old: Option<&Value>, new: &mut Value, ctx: WriteContext<'_>) {
    let text = |field: &str| new.get(field).and_then(Value::as_str).unwrap_or_default();
    let schema = MergeSchema::for_builtin(text("apiVersion"), text("kind"));
    apply::update(old, new, ctx, &schema);
}

/// [`track_update`] with an explicit schema (a custom resource's
/// [`MergeSchema::from_crd_schema`]), so its map- and set-lists are tracked item by item.
pub fn track_update_with_schema(
    old: Option<&Value>,
    new: &mut Value,
    ctx: WriteContext<'_>,
    schema: &MergeSchema,
) {
    apply::update(old, new, ctx, schema);
}
