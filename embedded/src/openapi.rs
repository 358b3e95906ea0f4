//! A minimal OpenAPI v3 index and per-group-version documents, enough for `kubectl apply`
//! to find what it downloads; CRD schemas are published under their GroupVersionKind. Pure.

use super::registry::Registry;
use serde_json::{Map, Value, json};

pub fn v3_index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for v in versions {
            let p = if group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{group}/{v}")
            };
            let url = format!("/openapi/v3/{p}?hash={}", registry_hash(registry));
            paths.insert(p, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// Changes whenever the set of resources changes, so clients re-download.
fn registry_hash(registry: &Registry) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for r in registry.all() {
        h.update(r.api_version());
        h.update(&r.plural);
        if let Some(s) = &r.schema {
            h.update(s.to_string());
        }
    }
    hex::encode(&h.finalize()[..16]).to_uppercase()
}

/// One group-version's document: a PATCH operation per resource that declares the
/// `fieldValidation` parameter (kubectl checks it to choose server-side validation) and, for
/// custom resources, the CRD's schema tagged with its GroupVersionKind.
pub fn v3_group(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let rs = registry.in_group_version(group, version);
    if rs.is_empty() {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for r in &rs {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let prefix = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}, "uniqueItems": true}))
            .collect();
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{}", r.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            }}),
        );
        if let Some(schema) = &r.schema {
            let mut s = schema.clone();
            s["x-kubernetes-group-version-kind"] = json!([gvk]);
            let reversed: Vec<&str> = group.split('.').rev().collect();
            schemas.insert(
                format!("{}.{}.{}", reversed.join("."), r.version, r.kind),
                s,
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
