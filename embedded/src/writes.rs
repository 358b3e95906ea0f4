//! The write verbs of a resource request: create, update, patch (merge, JSON, strategic,
//! apply), delete and deletecollection.

use super::handler::{Body, Req, json_response, parse_json};
use super::merge_schema;
use super::meta::{self, str_at};
use super::objects::{self, DeleteOpts, Deleted, Propagation};
use super::patch::{self as patching, PatchError, WriteContext};
use super::status::ApiError;
use http::Response;
use serde_json::{Value, json};

impl Req<'_> {
    /// Commits an update or patch result; through events.k8s.io/v1, an Event's note, reason,
    /// regarding object and source are immutable.
    fn commit(
        &self,
        inner: &mut super::store::Inner,
        old: &std::sync::Arc<Value>,
        new: Value,
        track: bool,
    ) -> Result<std::sync::Arc<Value>, ApiError> {
        if self.converts() && !self.status {
            let causes = super::kinds::check_events_v1_update(old, &new);
            if !causes.is_empty() {
                return Err(ApiError::invalid(
                    &self.view.group,
                    &self.view.kind,
                    self.name(),
                    causes,
                ));
            }
        }
        objects::commit_update(inner, self.info, old, new, self.status, track, self.ctx)
    }

    pub(super) fn create(
        &self,
        body: &[u8],
        content_type: &str,
    ) -> Result<Response<Body>, ApiError> {
        let obj = self.to_storage(parse_json(body, content_type)?)?;
        let mut inner = self.state.store.lock();
        let created = objects::create(
            &mut inner,
            self.info,
            self.rp.namespace.as_deref(),
            obj,
            self.ctx,
            true,
        )?;
        Ok(json_response(201, &self.present(&created)))
    }

    pub(super) fn update(
        &self,
        body: &[u8],
        content_type: &str,
    ) -> Result<Response<Body>, ApiError> {
        let mut obj = self.to_storage(parse_json(body, content_type)?)?;
        let mut inner = self.state.store.lock();
        let key = self.info.storage_key();
        let old = inner
            .get(&key, self.ns(), self.name())
            .cloned()
            .ok_or_else(|| ApiError::not_found(&self.info.group, &self.info.plural, self.name()))?;
        objects::check_type(self.info, &mut obj)?;
        let rv = str_at(&obj, "/metadata/resourceVersion").unwrap_or("");
        if rv.is_empty() && self.info.is_custom() {
            return Err(ApiError::invalid(
                &self.info.group,
                &self.info.kind,
                self.name(),
                vec![super::status::Cause::new(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ));
        }
        let body_ns = str_at(&obj, "/metadata/namespace").unwrap_or("");
        if !body_ns.is_empty() && self.info.namespaced && body_ns != self.ns() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let updated = self.commit(&mut inner, &old, obj, true)?;
        Ok(json_response(200, &self.present(&updated)))
    }

    pub(super) fn patch(
        &self,
        body: &[u8],
        content_type: &str,
    ) -> Result<Response<Body>, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        let key = self.info.storage_key();
        let group = self.info.group.as_str();
        let mut inner = self.state.store.lock();
        let old = inner.get(&key, self.ns(), self.name()).cloned();
        let schema = merge_schema::for_apply(self.info);
        let invalid = |e: PatchError| match e {
            PatchError::Invalid(m) => ApiError {
                code: 422,
                reason: "Invalid",
                message: m,
                details: None,
            },
            PatchError::Conflict(conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.field}))
                    .collect();
                let message = PatchError::Conflict(conflicts).to_string();
                ApiError {
                    code: 409,
                    reason: "Conflict",
                    message,
                    details: Some(
                        json!({"name": self.name(), "group": group, "kind": self.info.plural, "causes": causes}),
                    ),
                }
            }
        };
        let not_found = || ApiError::not_found(group, &self.info.plural, self.name());
        match media {
            "application/apply-patch+yaml" => {
                let applied: Value = serde_norway::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                if !applied.is_object() {
                    return Err(ApiError::bad_request(
                        "the apply patch must be a YAML or JSON object",
                    ));
                }
                if !self.query.contains_key("fieldManager") {
                    return Err(ApiError::invalid(
                        "meta.k8s.io",
                        "PatchOptions",
                        "",
                        vec![super::status::Cause::new(
                            "FieldValueRequired",
                            "fieldManager",
                            "Required value: is required for apply patch",
                        )],
                    ));
                }
                let force = self.query.get("force").is_some_and(|f| f == "true");
                let wctx = WriteContext {
                    manager: self.ctx.manager,
                    subresource: if self.status { Some("status") } else { None },
                    now: self.ctx.now,
                };
                let mut applied = applied;
                if !self.status
                    && self.info.status_subresource
                    && let Some(o) = applied.as_object_mut()
                {
                    // The main endpoint ignores status when the status subresource is on.
                    o.remove("status");
                }
                let mut probe = applied.clone();
                objects::check_type(self.view, &mut probe)?;
                let applied_name = meta::name(&applied);
                if !applied_name.is_empty() && applied_name != self.name() {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({})",
                        self.name()
                    )));
                }
                match old {
                    Some(old) => {
                        let live = self.present(&old);
                        let new = patching::server_side_apply(
                            Some(&live),
                            &applied,
                            force,
                            wctx,
                            &schema,
                        )
                        .map_err(invalid)?;
                        let new = self.to_storage(new)?;
                        let updated = self.commit(&mut inner, &old, new, false)?;
                        Ok(json_response(200, &self.present(&updated)))
                    }
                    None if self.status => Err(not_found()),
                    None => {
                        let mut new =
                            patching::server_side_apply(None, &applied, force, wctx, &schema)
                                .map_err(invalid)?;
                        new["metadata"]["name"] = json!(self.name());
                        let new = self.to_storage(new)?;
                        let created = objects::create(
                            &mut inner,
                            self.info,
                            self.rp.namespace.as_deref(),
                            new,
                            self.ctx,
                            false,
                        )?;
                        Ok(json_response(201, &self.present(&created)))
                    }
                }
            }
            "application/merge-patch+json"
            | "application/json-patch+json"
            | "application/strategic-merge-patch+json" => {
                let old = old.ok_or_else(not_found)?;
                let patch: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the patch is not valid JSON: {e}"))
                })?;
                let mut new = self.present(&old);
                match media {
                    "application/merge-patch+json" => {
                        if !patch.is_object() {
                            return Err(ApiError::bad_request(
                                "a JSON merge patch must be a JSON object",
                            ));
                        }
                        patching::json_merge_patch(&mut new, &patch)
                    }
                    "application/json-patch+json" => {
                        if serde_json::from_value::<json_patch::Patch>(patch.clone()).is_err() {
                            return Err(ApiError::bad_request(
                                "the patch is not a valid JSON patch: expected an array of operations with op and path",
                            ));
                        }
                        patching::json_patch(&mut new, &patch).map_err(invalid)?
                    }
                    _ => {
                        if self.info.is_custom() {
                            return Err(ApiError::unsupported_media_type(media));
                        }
                        if !patch.is_object() {
                            return Err(ApiError::bad_request(
                                "a strategic merge patch must be a JSON object",
                            ));
                        }
                        patching::strategic_merge_patch(
                            &mut new,
                            &patch,
                            &merge_schema::for_strategic(self.info),
                        )
                        .map_err(invalid)?
                    }
                }
                if !new.is_object() {
                    return Err(ApiError::bad_request(
                        "the patched object is not a JSON object",
                    ));
                }
                let new = self.to_storage(new)?;
                let updated = self.commit(&mut inner, &old, new, true)?;
                Ok(json_response(200, &self.present(&updated)))
            }
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    fn delete_opts(&self, body: &[u8]) -> Result<DeleteOpts, ApiError> {
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("DeleteOptions is not valid JSON: {e}"))
            })?
        };
        let policy = self
            .query
            .get("propagationPolicy")
            .map(String::as_str)
            .or_else(|| options["propagationPolicy"].as_str());
        let orphan = self
            .query
            .get("orphanDependents")
            .map(|v| v == "true")
            .or_else(|| options["orphanDependents"].as_bool());
        let propagation = match (policy, orphan) {
            (Some("Background"), _) => Some(Propagation::Background),
            (Some("Foreground"), _) => Some(Propagation::Foreground),
            (Some("Orphan"), _) => Some(Propagation::Orphan),
            (Some(other), _) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {other:?} is not supported: use Background, Foreground or Orphan"
                )));
            }
            (None, Some(true)) => Some(Propagation::Orphan),
            (None, Some(false)) => Some(Propagation::Background),
            (None, None) => None,
        };
        let dry_run = self.ctx.dry_run
            || options["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d == "All"));
        Ok(DeleteOpts {
            propagation,
            uid: options["preconditions"]["uid"].as_str().map(String::from),
            resource_version: options["preconditions"]["resourceVersion"]
                .as_str()
                .map(String::from),
            dry_run,
        })
    }

    pub(super) fn delete(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let opts = self.delete_opts(body)?;
        let mut inner = self.state.store.lock();
        let key = self.info.storage_key();
        let outcome = objects::delete(
            &mut inner,
            &key,
            self.ns(),
            self.name(),
            &opts,
            self.ctx.now,
        )?;
        drop(inner);
        Ok(match outcome {
            Deleted::Pending(o) => json_response(200, &self.present(&o)),
            // Custom resources and namespaces answer with the object; other built-ins with a
            // Success Status, as the real server's registries do.
            Deleted::Gone(o) if self.info.is_custom() || self.info.plural == "namespaces" => {
                json_response(200, &self.present(&o))
            }
            Deleted::Gone(o) => {
                let mut details = json!({"name": self.name(), "kind": self.info.plural, "uid": str_at(&o, "/metadata/uid")});
                if !self.info.group.is_empty() {
                    details["group"] = json!(self.info.group);
                }
                json_response(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
                )
            }
        })
    }

    pub(super) fn delete_collection(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let (labels, fields) = self.selectors()?;
        let opts = self.delete_opts(body)?;
        let mut inner = self.state.store.lock();
        let key = self.info.storage_key();
        let targets: Vec<(String, String)> = inner
            .list(&key, self.rp.namespace.as_deref())
            .filter(|o| labels.matches(o) && fields.matches(o))
            .map(|o| super::store::obj_key(o))
            .collect();
        let mut items = Vec::new();
        for (ns, name) in targets {
            let outcome = objects::delete(&mut inner, &key, &ns, &name, &opts, self.ctx.now)?;
            let (Deleted::Gone(o) | Deleted::Pending(o)) = outcome;
            items.push(self.present(&o));
        }
        let rv = inner.rv().to_string();
        drop(inner);
        Ok(json_response(
            200,
            &json!({
                "kind": format!("{}List", self.view.kind),
                "apiVersion": self.view.api_version(),
                "metadata": {"resourceVersion": rv},
                "items": items,
            }),
        ))
    }
}
