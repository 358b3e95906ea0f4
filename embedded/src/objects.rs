//! Write semantics as kube-apiserver has them: create, update (main resource or `/status`) and
//! delete on the store, with uid, timestamps, generation, generateName, namespace checks,
//! optimistic concurrency, finalizers, validation and CRD registration.

use super::meta::{self, str_at};
use super::patch::{WriteContext, track_update, track_update_with_schema};
use super::resources::ResourceInfo;
use super::schema::apply_schema;
use super::status::{ApiError, Cause};
use super::store::{EventType, Inner};
use serde_json::{Value, json};
use std::sync::Arc;

pub const CRD_KEY: &str = "customresourcedefinitions.apiextensions.k8s.io";
pub const NAMESPACE_KEY: &str = "namespaces";
/// ConfigMap and Secret payloads are limited to 1 MiB.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Who writes, when, and whether to keep the result.
#[derive(Clone, Copy, Debug)]
pub struct WriteCtx<'a> {
    pub manager: &'a str,
    pub now: &'a str,
    pub dry_run: bool,
    /// `fieldValidation=Strict`: fields the schema does not declare fail the request (400)
    /// instead of being dropped.
    pub strict: bool,
}

impl WriteCtx<'_> {
    fn patch_ctx(&self, subresource: Option<&'static str>) -> WriteContext<'_> {
        WriteContext {
            manager: self.manager,
            subresource,
            now: self.now,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub propagation: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a delete did: the object is gone, or waits for finalizers.
#[derive(Debug)]
pub enum Deleted {
    Gone(Arc<Value>),
    Pending(Arc<Value>),
}

fn ensure_metadata(obj: &mut Value) -> Result<(), ApiError> {
    match obj.get("metadata") {
        None | Some(Value::Null) => {
            obj["metadata"] = json!({});
            Ok(())
        }
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "metadata must be an object (json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta)",
        )),
    }
}

/// Checks the apiVersion and kind a body names against the endpoint it was sent to.
pub fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    ensure_metadata(obj)?;
    let kind = str_at(obj, "/kind").unwrap_or("");
    let api_version = str_at(obj, "/apiVersion").unwrap_or("");
    let kind_ok = kind.is_empty() || kind == info.kind;
    // Any served version of the same group is accepted (the storage is shared).
    let group_ok = api_version.is_empty()
        || api_version == info.api_version()
        || api_version.rsplit_once('/').map(|(g, _)| g) == Some(info.group.as_str())
            && !info.group.is_empty();
    if !kind_ok || !group_ok {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or the kind ({kind}) does not match {}",
            info.api_version(),
            info.kind
        )));
    }
    obj["apiVersion"] = json!(info.api_version());
    obj["kind"] = json!(info.kind);
    Ok(())
}

/// Records managedFields for a non-apply write, with the CRD's list types for custom resources.
fn track_fields(info: &ResourceInfo, old: Option<&Value>, new: &mut Value, ctx: WriteContext<'_>) {
    if info.is_custom() {
        track_update_with_schema(old, new, ctx, &super::merge_schema::for_apply(info));
    } else {
        track_update(old, new, ctx);
    }
}

/// Kind-specific and schema validation; defaults are applied to `obj` on the way.
fn validate(info: &ResourceInfo, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
    let mut causes = meta::validate_metadata(obj, info.plural == "namespaces");
    match info.storage_key().as_str() {
        "configmaps" | "secrets" => {
            let total: usize = ["data", "binaryData", "stringData"]
                .iter()
                .filter_map(|f| obj.get(*f).and_then(Value::as_object))
                .flat_map(|m| m.values())
                .map(|v| v.as_str().map_or(0, str::len))
                .sum();
            if total > MAX_CONFIG_BYTES {
                let field = if info.plural == "secrets" {
                    "data"
                } else {
                    "[]"
                };
                causes.push(Cause::new(
                    "FieldValueTooLong",
                    field,
                    format!("Too long: may not be more than {MAX_CONFIG_BYTES} bytes"),
                ));
            }
        }
        CRD_KEY => causes.extend(validate_crd(obj)),
        _ => {}
    }
    if let Some(schema) = &info.schema {
        let outcome = apply_schema(schema, obj);
        if strict && !outcome.pruned.is_empty() {
            let unknown = outcome
                .pruned
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {unknown}",
                kind = info.kind,
                version = info.version,
            )));
        }
        causes.extend(outcome.causes);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &info.group,
            &info.kind,
            meta::name(obj),
            causes,
        ))
    }
}

fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = str_at(crd, "/spec/group").unwrap_or("");
    let plural = str_at(crd, "/spec/names/plural").unwrap_or("");
    let name = meta::name(crd);
    if group.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.group",
            "Required value",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value",
        ));
    }
    if str_at(crd, "/spec/names/kind").unwrap_or("").is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value",
        ));
    }
    if name != format!("{plural}.{group}") {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.versions",
            "Required value: must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.versions",
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                serde_json::Value::from(versions.len())
            ),
        ));
    }
    causes
}

/// The status a CRD gets once its names are accepted: NamesAccepted and Established.
fn establish_crd(crd: &mut Value, now: &str) {
    let names = crd["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or("").to_lowercase());
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or("")));
    }
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    let condition = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
}

fn namespace_of_request(
    info: &ResourceInfo,
    url_ns: Option<&str>,
    obj: &mut Value,
) -> Result<String, ApiError> {
    if !info.namespaced {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        return Ok(String::new());
    }
    let Some(ns) = url_ns else {
        return Err(ApiError::no_such_path());
    };
    match str_at(obj, "/metadata/namespace") {
        Some(body_ns) if !body_ns.is_empty() && body_ns != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            obj["metadata"]["namespace"] = json!(ns);
            Ok(ns.to_string())
        }
    }
}

/// The namespace must exist and not be terminating for anything to be created in it.
fn check_namespace(
    inner: &Inner,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    if !info.namespaced {
        return Ok(());
    }
    match inner.get(NAMESPACE_KEY, "", ns) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if meta::is_deleting(n) => Err(ApiError {
            details: Some(
                json!({"name": name, "group": info.group, "kind": info.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
            ),
            ..ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                super::status::group_resource(&info.group, &info.plural)
            ))
        }),
        Some(_) => Ok(()),
    }
}

pub fn create(
    inner: &mut Inner,
    info: &ResourceInfo,
    url_ns: Option<&str>,
    mut obj: Value,
    ctx: WriteCtx<'_>,
    track: bool,
) -> Result<Arc<Value>, ApiError> {
    check_type(info, &mut obj)?;
    let ns = namespace_of_request(info, url_ns, &mut obj)?;
    let key = info.storage_key();
    let mut name = meta::name(&obj).to_string();
    if name.is_empty() {
        let Some(prefix) = str_at(&obj, "/metadata/generateName").map(String::from) else {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                "",
                vec![Cause::new(
                    "FieldValueRequired",
                    "metadata.name",
                    "Required value: name or generateName is required",
                )],
            ));
        };
        // The real server retries on collision the same way.
        for _ in 0..8 {
            name = format!("{prefix}{}", meta::generate_suffix());
            if inner.get(&key, &ns, &name).is_none() {
                break;
            }
        }
        obj["metadata"]["name"] = json!(name);
    }
    check_namespace(inner, info, &ns, &name)?;
    if inner.get(&key, &ns, &name).is_some() {
        return Err(ApiError::already_exists(&info.group, &info.plural, &name));
    }
    let m = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    for gone in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(gone);
    }
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(ctx.now));
    if info.has_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if info.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    match key.as_str() {
        NAMESPACE_KEY => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        "jobs.batch" => obj["status"] = json!({}),
        "pods" => obj["status"] = json!({"phase": "Pending"}),
        _ => {}
    }
    super::kinds::default_on_create(&key, &mut obj);
    if key == "pods"
        && let Some(sa) = super::kinds::pod_service_account(&obj)
        && inner.get("serviceaccounts", &ns, sa).is_none()
    {
        return Err(super::kinds::missing_service_account(
            &ns,
            sa,
            str_at(&obj, "/metadata/generateName").unwrap_or(""),
            str_at(&obj, "/metadata/name").unwrap_or(""),
        ));
    }
    validate(info, &mut obj, ctx.strict)?;
    if key == CRD_KEY {
        establish_crd(&mut obj, ctx.now);
    }
    if track {
        track_fields(info, None, &mut obj, ctx.patch_ctx(None));
    }
    if ctx.dry_run {
        return Ok(Arc::new(obj));
    }
    let stored = inner.put(&key, obj, EventType::Added)?;
    if key == CRD_KEY {
        inner.registry.register_crd(&stored);
    }
    Ok(stored)
}

/// Commits `new` as the next state of `old` (an update or a patch result); `status` is true
/// for writes to the `/status` subresource. `track` records managedFields for non-apply writes.
pub fn commit_update(
    inner: &mut Inner,
    info: &ResourceInfo,
    old: &Arc<Value>,
    mut new: Value,
    status: bool,
    track: bool,
    ctx: WriteCtx<'_>,
) -> Result<Arc<Value>, ApiError> {
    check_type(info, &mut new)?;
    let old_rv = str_at(old, "/metadata/resourceVersion").unwrap_or("");
    let name = meta::name(old).to_string();
    match str_at(&new, "/metadata/resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != old_rv => {
            return Err(ApiError::modified(&info.group, &info.plural, &name));
        }
        _ => {}
    }
    let new_name = meta::name(&new);
    if !new_name.is_empty() && new_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        )));
    }
    if status {
        // A status write changes status (and its managedFields) only.
        let mut merged = (**old).clone();
        match new.get("status") {
            Some(s) => merged["status"] = s.clone(),
            None => {
                if let Some(o) = merged.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if let Some(mf) = new.pointer("/metadata/managedFields") {
            merged["metadata"]["managedFields"] = mf.clone();
        }
        new = merged;
    } else {
        if info.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        let m = new["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        for fixed in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ] {
            match old["metadata"].get(fixed) {
                Some(v) => m.insert(fixed.into(), v.clone()),
                None => m.remove(fixed),
            };
        }
        match old["metadata"].get("generation") {
            Some(g) => m.insert("generation".into(), g.clone()),
            None => m.remove("generation"),
        };
        if info.has_generation && meta::spec_part(&new) != meta::spec_part(old) {
            let next = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(next);
        }
    }
    new["metadata"]["resourceVersion"] = json!(old_rv);
    if !status {
        let causes = super::kinds::check_update(&info.storage_key(), old, &new);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
        }
    }
    validate(info, &mut new, ctx.strict)?;
    let key = info.storage_key();
    if key == CRD_KEY {
        establish_crd(
            &mut new,
            str_at(old, "/status/conditions/0/lastTransitionTime").unwrap_or(ctx.now),
        );
    }
    if track {
        track_fields(
            info,
            Some(old),
            &mut new,
            ctx.patch_ctx(if status { Some("status") } else { None }),
        );
    }
    if meta::comparable(&new) == meta::comparable(old) {
        return Ok(old.clone());
    }
    if ctx.dry_run {
        return Ok(Arc::new(new));
    }
    // The last finalizer removed from an object being deleted completes the deletion.
    if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && !namespace_holds(&new, &key)
    {
        inner.put(&key, new, EventType::Modified)?;
        let (ns, name) = super::store::obj_key(old);
        return finish_removal(inner, &key, &ns, &name);
    }
    let stored = inner.put(&key, new, EventType::Modified)?;
    if key == CRD_KEY {
        inner.registry.register_crd(&stored);
    }
    Ok(stored)
}

/// A namespace stays while its `spec.finalizers` (the namespace controller's) remain.
fn namespace_holds(obj: &Value, key: &str) -> bool {
    key == NAMESPACE_KEY
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// Removes an object for good; a CRD takes its custom resources with it.
fn finish_removal(
    inner: &mut Inner,
    key: &str,
    ns: &str,
    name: &str,
) -> Result<Arc<Value>, ApiError> {
    let gone = inner
        .remove(key, ns, name)?
        .ok_or_else(|| ApiError::internal(format!("{key} {ns}/{name} vanished during deletion")))?;
    if key == CRD_KEY {
        let custom_key = super::status::group_resource(
            str_at(&gone, "/spec/group").unwrap_or(""),
            str_at(&gone, "/spec/names/plural").unwrap_or(""),
        );
        let keys: Vec<_> = inner
            .list(&custom_key, None)
            .map(|o| super::store::obj_key(o))
            .collect();
        for (ons, oname) in keys {
            inner.remove(&custom_key, &ons, &oname)?;
        }
        inner.registry.unregister_crd(name);
    }
    Ok(gone)
}

/// The policy when the request names none: batch/v1 Jobs orphan (for backward compatibility,
/// as the real server does), everything else deletes dependents in the background.
fn default_propagation(key: &str) -> Propagation {
    if key == "jobs.batch" {
        Propagation::Orphan
    } else {
        Propagation::Background
    }
}

pub fn delete(
    inner: &mut Inner,
    key: &str,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
    now: &str,
) -> Result<Deleted, ApiError> {
    let info = inner.registry.by_storage_key(key);
    let (group, plural) = info
        .as_ref()
        .map_or(("", key), |i| (i.group.as_str(), i.plural.as_str()));
    let old = inner
        .get(key, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(group, plural, name))?;
    if let Some(uid) = &opts.uid
        && str_at(&old, "/metadata/uid") != Some(uid.as_str())
    {
        return Err(ApiError::conflict(
            group,
            plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                str_at(&old, "/metadata/uid").unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && str_at(&old, "/metadata/resourceVersion") != Some(rv.as_str())
    {
        return Err(ApiError::conflict(
            group,
            plural,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                str_at(&old, "/metadata/resourceVersion").unwrap_or("")
            ),
        ));
    }
    let mut finalizers = meta::finalizers(&old);
    let policy = opts.propagation.unwrap_or_else(|| default_propagation(key));
    let policy_finalizer = match policy {
        Propagation::Orphan => Some("orphan"),
        Propagation::Foreground => Some("foregroundDeletion"),
        Propagation::Background => None,
    };
    if let Some(f) = policy_finalizer
        && !finalizers.iter().any(|x| x == f)
    {
        finalizers.push(f.to_string());
    }
    let holds = !finalizers.is_empty() || namespace_holds(&old, key);
    if !holds {
        if opts.dry_run {
            return Ok(Deleted::Gone(old));
        }
        return finish_removal(inner, key, ns, name).map(Deleted::Gone);
    }
    let mut next = (*old).clone();
    meta::set_finalizers(&mut next, &finalizers);
    if !meta::is_deleting(&old) {
        next["metadata"]["deletionTimestamp"] = json!(now);
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if let Some(g) = old.pointer("/metadata/generation").and_then(Value::as_i64) {
            next["metadata"]["generation"] = json!(g + 1);
        }
        if key == NAMESPACE_KEY {
            next["status"]["phase"] = json!("Terminating");
        }
    }
    if next == *old || opts.dry_run {
        return Ok(Deleted::Pending(Arc::new(next)));
    }
    inner
        .put(key, next, EventType::Modified)
        .map(Deleted::Pending)
}
