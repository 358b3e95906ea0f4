//! The garbage collector and namespace controller: the objects a change concerns (marked by
//! the store through [`GcIndex`]) in, the deletions and owner-reference removals that
//! ownerReferences, propagation finalizers and terminating namespaces call for out ([`plan`]
//! is pure); [`run`] carries them out after each change, at a cost that grows with what
//! changed, not with what is stored.

use super::meta::{self, str_at};
use super::objects::{self, DeleteOpts, NAMESPACE_KEY, Propagation, WriteCtx};
use super::store::{Inner, ObjKey, Store, obj_key};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
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

/// An object the collector looks at: (storage key, (namespace, name)).
pub type Target = (String, ObjKey);

/// The collector's incremental state, kept in the store and updated by every write: which
/// objects name which owner, and which objects a change may have given something to do. A pass
/// looks only at those, so its cost grows with what changed, not with what is stored.
#[derive(Default)]
pub struct GcIndex {
    /// Owner uid → the objects whose ownerReferences name it (present or not).
    dependents: HashMap<String, BTreeSet<Target>>,
    /// Objects to look at in the next pass.
    pub pending: BTreeSet<Target>,
}

impl GcIndex {
    /// Keeps the owner index true for one change of the object at `at` (`prev` before, `now`
    /// after; `None` when absent).
    pub fn index(&mut self, key: &str, at: &ObjKey, prev: Option<&Value>, now: Option<&Value>) {
        let before = prev.map(owner_uids).unwrap_or_default();
        let after = now.map(owner_uids).unwrap_or_default();
        if before == after {
            return;
        }
        let target = || (key.to_string(), at.clone());
        for uid in before.iter().filter(|u| !after.contains(u)) {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(&target());
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in after {
            self.dependents.entry(uid).or_default().insert(target());
        }
    }

    /// The objects whose ownerReferences name `uid`.
    pub fn dependents_of(&self, uid: &str) -> impl Iterator<Item = &Target> {
        self.dependents.get(uid).into_iter().flatten()
    }

    /// Marks an object loaded from the database if it could have something to do.
    pub fn mark_loaded(&mut self, key: &str, at: &ObjKey, obj: &Value) {
        if meta::is_deleting(obj) || !owner_uids(obj).is_empty() {
            self.pending.insert((key.to_string(), at.clone()));
        }
    }

    /// True when no object waits for a pass.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// The objects one change (already in `inner`) may have given the collector something to
    /// do: the object itself when it has owners or is being deleted; its dependents when its
    /// state as an owner changed; its owners that are being deleted when its references
    /// changed (they may be waiting for it); its terminating namespace; and, when a namespace
    /// starts terminating, everything in it.
    pub fn marks(
        inner: &Inner,
        key: &str,
        at: &ObjKey,
        prev: Option<&Value>,
        now: Option<&Value>,
    ) -> Vec<Target> {
        let mut marks = Vec::new();
        let this = || (key.to_string(), at.clone());
        if let Some(now) = now
            && (meta::is_deleting(now) || !owner_uids(now).is_empty())
        {
            marks.push(this());
        }
        if owner_state(prev) != owner_state(now)
            && let Some(uid) = now.or(prev).and_then(|o| str_at(o, "/metadata/uid"))
        {
            marks.extend(inner.gc.dependents_of(uid).cloned());
        }
        let refs_of = |o: Option<&Value>| {
            o.and_then(|o| o.pointer("/metadata/ownerReferences"))
                .cloned()
        };
        if refs_of(prev) != refs_of(now) {
            let uids = prev.map(owner_uids).unwrap_or_default();
            for uid in uids.iter().chain(&now.map(owner_uids).unwrap_or_default()) {
                if let Some((owner_key, owner)) = inner.by_uid(uid)
                    && meta::is_deleting(owner)
                {
                    marks.push((owner_key.to_string(), obj_key(owner)));
                }
            }
        }
        if key == NAMESPACE_KEY {
            let starts_terminating =
                now.is_some_and(meta::is_deleting) && !prev.is_some_and(meta::is_deleting);
            if starts_terminating {
                marks.extend(inner.keys_in_namespace(&at.1));
            }
        } else if !at.0.is_empty()
            && inner
                .get(NAMESPACE_KEY, "", &at.0)
                .is_some_and(|ns| meta::is_deleting(ns))
        {
            match now {
                None => marks.push((NAMESPACE_KEY.to_string(), (String::new(), at.0.clone()))),
                Some(now) if !meta::is_deleting(now) => marks.push(this()),
                Some(_) => {}
            }
        }
        marks
    }
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

/// Whether `obj` names `owner` with `blockOwnerDeletion: true`.
fn blocks(obj: &Value, owner: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r["uid"].as_str() == Some(owner) && r["blockOwnerDeletion"].as_bool() == Some(true)
            })
        })
}

/// What an owner is to its dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    Absent,
    Live,
    /// Being deleted with the orphan finalizer: dependents lose the reference.
    Orphaning,
    /// Being deleted with the foreground finalizer: dependents are deleted first.
    Foreground,
}

pub fn owner_state(owner: Option<&Value>) -> OwnerState {
    let Some(o) = owner else {
        return OwnerState::Absent;
    };
    let deleting_with =
        |f: &str| meta::is_deleting(o) && meta::finalizers(o).iter().any(|x| x == f);
    if deleting_with(ORPHAN) {
        OwnerState::Orphaning
    } else if deleting_with(FOREGROUND) {
        OwnerState::Foreground
    } else {
        OwnerState::Live
    }
}

/// What becomes of a dependent that is not being deleted itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Delete(Propagation),
    /// Drop the references to these owners (gone or orphaning).
    DropOwners(Vec<String>),
}

/// A dependent's fate from its owners' states (uid, state), as the real collector decides it:
/// deleted when no owner is live or orphaning and one is gone or deleting in the foreground
/// (in the foreground then, so it holds its own dependents too); otherwise it loses the
/// references to owners that are gone or orphaning.
pub fn dependent_fate(owners: &[(String, OwnerState)]) -> Option<Fate> {
    let count = |s: OwnerState| owners.iter().filter(|(_, x)| *x == s).count();
    let (live, orphaning) = (count(OwnerState::Live), count(OwnerState::Orphaning));
    let (absent, foreground) = (count(OwnerState::Absent), count(OwnerState::Foreground));
    if live == 0 && orphaning == 0 && (absent > 0 || foreground > 0) {
        return Some(Fate::Delete(if foreground > 0 {
            Propagation::Foreground
        } else {
            Propagation::Background
        }));
    }
    let dropped: Vec<String> = owners
        .iter()
        .filter(|(_, s)| matches!(s, OwnerState::Absent | OwnerState::Orphaning))
        .map(|(u, _)| u.clone())
        .collect();
    (!dropped.is_empty()).then_some(Fate::DropOwners(dropped))
}

/// The propagation finalizers an owner being deleted can drop: foreground once no dependent
/// blocks it, orphan once no dependent names it.
pub fn finalizers_to_drop(
    finalizers: &[String],
    blocked: bool,
    referenced: bool,
) -> Vec<&'static str> {
    [(FOREGROUND, blocked), (ORPHAN, referenced)]
        .into_iter()
        .filter(|(f, held)| !held && finalizers.iter().any(|x| x == f))
        .map(|(f, _)| f)
        .collect()
}

/// What the collector should do about `targets` now. Pure over the store's state; looks only
/// at the targets, their owners and their dependents.
pub fn plan(inner: &Inner, targets: &BTreeSet<Target>) -> Vec<Action> {
    let mut actions = Vec::new();
    for (key, at) in targets {
        let Some(obj) = inner.get(key, &at.0, &at.1) else {
            continue;
        };
        let here = || (key.clone(), at.clone());
        if meta::is_deleting(obj) {
            let uid = str_at(obj, "/metadata/uid").unwrap_or("");
            let mut referenced = false;
            let mut blocked = false;
            for (k, (ns, name)) in inner.gc.dependents_of(uid) {
                if let Some(dependent) = inner.get(k, ns, name) {
                    referenced = true;
                    blocked |= blocks(dependent, uid);
                }
            }
            for finalizer in finalizers_to_drop(&meta::finalizers(obj), blocked, referenced) {
                let (key, obj) = here();
                actions.push(Action::DropFinalizer {
                    key,
                    obj,
                    finalizer,
                });
            }
            if key == NAMESPACE_KEY && !inner.namespace_has_objects(meta::name(obj)) {
                actions.push(Action::FinishNamespace {
                    name: meta::name(obj).to_string(),
                });
            }
            continue;
        }
        let owners: Vec<(String, OwnerState)> = owner_uids(obj)
            .into_iter()
            .map(|uid| {
                let state = owner_state(inner.by_uid(&uid).map(|(_, o)| o.as_ref()));
                (uid, state)
            })
            .collect();
        let fate = dependent_fate(&owners);
        let in_terminating_namespace = key != NAMESPACE_KEY
            && !at.0.is_empty()
            && inner
                .get(NAMESPACE_KEY, "", &at.0)
                .is_some_and(|ns| meta::is_deleting(ns));
        match fate {
            Some(Fate::Delete(propagation)) => {
                let (key, obj) = here();
                actions.push(Action::Delete {
                    key,
                    obj,
                    propagation,
                });
                continue;
            }
            Some(Fate::DropOwners(uids)) => {
                let (key, obj) = here();
                actions.push(Action::DropOwners { key, obj, uids });
            }
            None => {}
        }
        if in_terminating_namespace {
            let (key, obj) = here();
            actions.push(Action::Delete {
                key,
                obj,
                propagation: Propagation::Background,
            });
        }
    }
    actions
}

impl Action {
    /// The object the action is about, to look at again when it fails.
    fn target(&self) -> Target {
        match self {
            Action::Delete { key, obj, .. }
            | Action::DropOwners { key, obj, .. }
            | Action::DropFinalizer { key, obj, .. } => (key.clone(), obj.clone()),
            Action::FinishNamespace { name } => {
                (NAMESPACE_KEY.to_string(), (String::new(), name.clone()))
            }
        }
    }
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

/// Carries out one action; false when it failed.
fn apply(inner: &mut Inner, action: &Action, now: &str) -> bool {
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
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(?action, error = %e, "garbage collector step skipped");
            false
        }
    }
}

/// One pass over the objects marked since the last one: plan and apply; true when something
/// was done. An action that failed leaves its object marked, to be tried again after the next
/// change.
pub fn collect(store: &Store) -> bool {
    let mut inner = store.lock();
    if inner.gc.is_idle() {
        return false;
    }
    let targets = std::mem::take(&mut inner.gc.pending);
    let actions = plan(&inner, &targets);
    let now = meta::now();
    let failed: Vec<Target> = actions
        .iter()
        .filter(|a| !apply(&mut inner, a, &now))
        .map(Action::target)
        .collect();
    inner.gc.pending.extend(failed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventType;

    fn owners(states: &[(&str, OwnerState)]) -> Vec<(String, OwnerState)> {
        states.iter().map(|(u, s)| (u.to_string(), *s)).collect()
    }

    #[test]
    fn a_dependent_follows_its_owners() {
        use OwnerState::*;
        let drop = |uids: &[&str]| {
            Some(Fate::DropOwners(
                uids.iter().map(|u| u.to_string()).collect(),
            ))
        };
        let cases = [
            (vec![("a", Live)], None),
            (
                vec![("a", Absent)],
                Some(Fate::Delete(Propagation::Background)),
            ),
            (
                vec![("a", Foreground)],
                Some(Fate::Delete(Propagation::Foreground)),
            ),
            (
                vec![("a", Absent), ("b", Foreground)],
                Some(Fate::Delete(Propagation::Foreground)),
            ),
            (vec![("a", Orphaning)], drop(&["a"])),
            (vec![("a", Live), ("b", Absent)], drop(&["b"])),
            (vec![("a", Orphaning), ("b", Absent)], drop(&["a", "b"])),
            (vec![("a", Live), ("b", Foreground)], None),
            (vec![], None),
        ];
        for (states, want) in cases {
            assert_eq!(dependent_fate(&owners(&states)), want, "{states:?}");
        }
    }

    #[test]
    fn an_owner_drops_a_propagation_finalizer_once_nothing_holds_it() {
        let f = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // (finalizers, blocked, referenced, dropped)
        let cases: [(Vec<String>, bool, bool, Vec<&str>); 7] = [
            (f(&[FOREGROUND]), false, false, vec![FOREGROUND]),
            (f(&[FOREGROUND]), true, true, vec![]),
            (f(&[FOREGROUND]), false, true, vec![FOREGROUND]),
            (f(&[ORPHAN]), false, true, vec![]),
            (f(&[ORPHAN]), false, false, vec![ORPHAN]),
            (f(&["example.com/keep"]), false, false, vec![]),
            (f(&[]), false, false, vec![]),
        ];
        for (finalizers, blocked, referenced, want) in cases {
            assert_eq!(
                finalizers_to_drop(&finalizers, blocked, referenced),
                want,
                "{finalizers:?} blocked={blocked} referenced={referenced}"
            );
        }
    }

    fn cm(name: &str, uid: &str, owners: &[(&str, bool)]) -> Value {
        let refs: Vec<Value> = owners
            .iter()
            .map(|(u, block)| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": u, "uid": u, "blockOwnerDeletion": block}))
            .collect();
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"namespace": "ns", "name": name, "uid": uid}});
        if !refs.is_empty() {
            obj["metadata"]["ownerReferences"] = json!(refs);
        }
        obj
    }

    fn deleting(mut obj: Value, finalizer: &str) -> Value {
        obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        obj["metadata"]["finalizers"] = json!([finalizer]);
        obj
    }

    fn target(name: &str) -> Target {
        ("configmaps".into(), ("ns".into(), name.into()))
    }

    /// Puts `objects` and plans over what the writes marked.
    fn planned(objects: Vec<Value>) -> Vec<Action> {
        let store = Store::new(100, None).unwrap();
        let mut inner = store.lock();
        for o in objects {
            inner.put("configmaps", o, EventType::Added).unwrap();
        }
        let targets = std::mem::take(&mut inner.gc.pending);
        plan(&inner, &targets)
    }

    #[test]
    fn plan_over_marked_objects() {
        let delete = |name: &str, propagation| Action::Delete {
            key: "configmaps".into(),
            obj: target(name).1,
            propagation,
        };
        let drop_finalizer = |name: &str, finalizer| Action::DropFinalizer {
            key: "configmaps".into(),
            obj: target(name).1,
            finalizer,
        };
        let cases: Vec<(&str, Vec<Value>, Vec<Action>)> = vec![
            (
                "live owner",
                vec![cm("o", "o", &[]), cm("d", "d", &[("o", true)])],
                vec![],
            ),
            (
                "absent owner",
                vec![cm("d", "d", &[("gone", false)])],
                vec![delete("d", Propagation::Background)],
            ),
            (
                "foreground owner held by a blocking dependent",
                vec![
                    deleting(cm("o", "o", &[]), FOREGROUND),
                    cm("d", "d", &[("o", true)]),
                ],
                vec![delete("d", Propagation::Foreground)],
            ),
            (
                "foreground owner, dependent does not block",
                vec![
                    deleting(cm("o", "o", &[]), FOREGROUND),
                    cm("d", "d", &[("o", false)]),
                ],
                vec![
                    delete("d", Propagation::Foreground),
                    drop_finalizer("o", FOREGROUND),
                ],
            ),
            (
                "orphaning owner",
                vec![
                    deleting(cm("o", "o", &[]), ORPHAN),
                    cm("d", "d", &[("o", true)]),
                ],
                vec![Action::DropOwners {
                    key: "configmaps".into(),
                    obj: target("d").1,
                    uids: vec!["o".into()],
                }],
            ),
            (
                "orphaning owner without dependents",
                vec![deleting(cm("o", "o", &[]), ORPHAN)],
                vec![drop_finalizer("o", ORPHAN)],
            ),
        ];
        for (name, objects, want) in cases {
            assert_eq!(planned(objects), want, "{name}");
        }
    }

    #[test]
    fn a_change_marks_only_what_it_concerns() {
        let store = Store::new(100, None).unwrap();
        let mut inner = store.lock();
        inner
            .put("configmaps", cm("o", "o", &[]), EventType::Added)
            .unwrap();
        for i in 0..1000 {
            let (name, uid) = (format!("d{i}"), format!("u{i}"));
            let owner = if i < 3 { "o" } else { "elsewhere" };
            inner
                .put(
                    "configmaps",
                    cm(&name, &uid, &[(owner, true)]),
                    EventType::Added,
                )
                .unwrap();
        }
        inner.gc.pending.clear();
        // An unrelated object without owners: nothing to look at.
        inner
            .put("configmaps", cm("free", "f", &[]), EventType::Added)
            .unwrap();
        assert!(inner.gc.is_idle());
        // A new dependent: itself.
        inner
            .put(
                "configmaps",
                cm("new", "n", &[("o", true)]),
                EventType::Added,
            )
            .unwrap();
        assert_eq!(
            std::mem::take(&mut inner.gc.pending),
            BTreeSet::from([target("new")])
        );
        // Its owner goes: exactly its four dependents.
        inner.remove("configmaps", "ns", "o").unwrap();
        let marked = std::mem::take(&mut inner.gc.pending);
        assert_eq!(
            marked,
            BTreeSet::from([target("d0"), target("d1"), target("d2"), target("new")])
        );
        let actions = plan(&inner, &marked);
        assert_eq!(actions.len(), 4);
        assert!(actions.iter().all(|a| matches!(
            a,
            Action::Delete {
                propagation: Propagation::Background,
                ..
            }
        )));
        // A dependent's references change: the index follows.
        inner
            .put("configmaps", cm("d0", "u0", &[]), EventType::Modified)
            .unwrap();
        assert_eq!(inner.gc.dependents_of("o").count(), 3);
        inner.remove("configmaps", "ns", "d1").unwrap();
        assert_eq!(inner.gc.dependents_of("o").count(), 2);
    }
}
