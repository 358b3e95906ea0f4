//! The garbage collector and namespace controller: the store's state in, the deletions and
//! owner-reference removals that ownerReferences, propagation finalizers and terminating
//! namespaces call for out ([`plan`] is pure); [`run`] carries them out after each change.

use super::meta::{self, str_at};
use super::objects::{self, DeleteOpts, NAMESPACE_KEY, Propagation, WriteCtx};
use super::store::{Inner, ObjKey, Store, obj_key};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
const MANAGER: &str = "garbage-collector";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete a dependent (all its owners are gone or being deleted in the foreground).
    Delete {
        key: String,
        obj: ObjKey,
        propagation: Propagation,
    },
    /// Drop owner references to owners that are gone or orphaning.
    DropOwners {
        key: String,
        obj: ObjKey,
        uids: Vec<String>,
    },
    /// An owner's dependents are handled: remove its propagation finalizer.
    DropFinalizer {
        key: String,
        obj: ObjKey,
        finalizer: &'static str,
    },
    /// A terminating namespace is empty: remove it.
    FinishNamespace { name: String },
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn blocking_owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter(|r| r["blockOwnerDeletion"].as_bool() == Some(true))
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// What the collector should do now. Pure over the store's state.
pub fn plan(inner: &Inner) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut referenced: HashSet<String> = HashSet::new();
    // Owners that a dependent with `blockOwnerDeletion: true` refers to: only these hold a
    // foreground deletion.
    let mut blocked: HashSet<String> = HashSet::new();
    let mut owners_state: HashMap<String, Option<Arc<Value>>> = HashMap::new();
    for (key, obj) in inner.all_objects() {
        let uids = owner_uids(obj);
        if uids.is_empty() {
            continue;
        }
        referenced.extend(uids.iter().cloned());
        blocked.extend(blocking_owner_uids(obj));
        let mut dropped = Vec::new();
        let (mut live, mut orphaning, mut foreground, mut absent) = (0, 0, 0, 0);
        for uid in &uids {
            let owner = owners_state
                .entry(uid.clone())
                .or_insert_with(|| inner.by_uid(uid).map(|(_, o)| o.clone()))
                .clone();
            let deleting_with = |o: &Value, f: &str| {
                meta::is_deleting(o) && meta::finalizers(o).iter().any(|x| x == f)
            };
            match owner {
                None => {
                    absent += 1;
                    dropped.push(uid.clone());
                }
                Some(o) if deleting_with(&o, ORPHAN) => {
                    orphaning += 1;
                    dropped.push(uid.clone());
                }
                Some(o) if deleting_with(&o, FOREGROUND) => foreground += 1,
                Some(_) => live += 1,
            }
        }
        if meta::is_deleting(obj) {
            continue;
        }
        if live == 0 && orphaning == 0 && (absent > 0 || foreground > 0) {
            actions.push(Action::Delete {
                key: key.clone(),
                obj: obj_key(obj),
                propagation: if foreground > 0 {
                    Propagation::Foreground
                } else {
                    Propagation::Background
                },
            });
        } else if !dropped.is_empty() {
            actions.push(Action::DropOwners {
                key: key.clone(),
                obj: obj_key(obj),
                uids: dropped,
            });
        }
    }
    for (key, obj) in inner.all_objects() {
        if !meta::is_deleting(obj) {
            continue;
        }
        let uid = str_at(obj, "/metadata/uid").unwrap_or("");
        let finalizers = meta::finalizers(obj);
        for (f, held_by) in [(FOREGROUND, &blocked), (ORPHAN, &referenced)] {
            if finalizers.iter().any(|x| x == f) && !held_by.contains(uid) {
                actions.push(Action::DropFinalizer {
                    key: key.clone(),
                    obj: obj_key(obj),
                    finalizer: f,
                });
            }
        }
        if key == NAMESPACE_KEY {
            let ns = meta::name(obj).to_string();
            let mut empty = true;
            for (k, o) in inner.all_objects() {
                if str_at(o, "/metadata/namespace") == Some(ns.as_str()) && k != NAMESPACE_KEY {
                    empty = false;
                    if !meta::is_deleting(o) {
                        actions.push(Action::Delete {
                            key: k.clone(),
                            obj: obj_key(o),
                            propagation: Propagation::Background,
                        });
                    }
                }
            }
            if empty {
                actions.push(Action::FinishNamespace { name: ns });
            }
        }
    }
    actions
}

/// Reads one object, lets `change` edit a copy (seeing the original), and writes it back as an
/// update; an object that is gone by now is nothing to do.
fn edit(
    inner: &mut Inner,
    key: &str,
    ns: &str,
    name: &str,
    ctx: WriteCtx<'_>,
    change: impl FnOnce(&Value, &mut Value),
) -> Result<(), super::status::ApiError> {
    let (Some(info), Some(old)) = (
        inner.registry.by_storage_key(key),
        inner.get(key, ns, name).cloned(),
    ) else {
        return Ok(());
    };
    let mut next = (*old).clone();
    change(&old, &mut next);
    objects::commit_update(inner, &info, &old, next, false, false, ctx).map(|_| ())
}

fn apply(inner: &mut Inner, action: &Action, now: &str) {
    let ctx = WriteCtx {
        manager: MANAGER,
        now,
        dry_run: false,
        strict: false,
    };
    // Each action re-reads the object; one that changed meanwhile is handled on the next pass.
    let result = match action {
        Action::Delete {
            key,
            obj: (ns, name),
            propagation,
        } => {
            let opts = DeleteOpts {
                propagation: Some(*propagation),
                ..Default::default()
            };
            objects::delete(inner, key, ns, name, &opts, now).map(|_| ())
        }
        Action::DropOwners {
            key,
            obj: (ns, name),
            uids,
        } => edit(inner, key, ns, name, ctx, |_, next| {
            if let Some(refs) = next["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| {
                    !r["uid"]
                        .as_str()
                        .is_some_and(|u| uids.iter().any(|x| x == u))
                });
                if refs.is_empty()
                    && let Some(m) = next["metadata"].as_object_mut()
                {
                    m.remove("ownerReferences");
                }
            }
        }),
        Action::DropFinalizer {
            key,
            obj: (ns, name),
            finalizer,
        } => edit(inner, key, ns, name, ctx, |old, next| {
            let kept: Vec<String> = meta::finalizers(old)
                .into_iter()
                .filter(|f| f != finalizer)
                .collect();
            meta::set_finalizers(next, &kept);
        }),
        Action::FinishNamespace { name } => edit(inner, NAMESPACE_KEY, "", name, ctx, |_, next| {
            next["spec"]["finalizers"] = json!([]);
        }),
    };
    if let Err(e) = result {
        tracing::debug!(?action, error = %e, "garbage collector step skipped");
    }
}

/// One pass: plan and apply; true when something was done.
pub fn collect(store: &Store) -> bool {
    let mut inner = store.lock();
    let actions = plan(&inner);
    let now = meta::now();
    for a in &actions {
        apply(&mut inner, a, &now);
    }
    !actions.is_empty()
}

/// Runs the collector after every relevant change until the task is aborted.
pub async fn run(store: Arc<Store>) {
    loop {
        store.dirty.notified().await;
        // Bounded: a pass whose actions all fail must not spin.
        for _ in 0..16 {
            if !collect(&store) {
                break;
            }
        }
    }
}
