//! Which [`MergeSchema`] a resource's patches, applies and update tracking use: the patch
//! module's built-in schemas for built-in kinds, the CRD's openAPIV3Schema for custom
//! resources. Resource in, schema out. Pure.

use super::patch::MergeSchema;
use super::resources::ResourceInfo;

/// For server-side apply and update tracking.
pub fn for_apply(info: &ResourceInfo) -> MergeSchema {
    match &info.schema {
        Some(s) if info.is_custom() => MergeSchema::from_crd_schema(s),
        _ => MergeSchema::for_builtin(&info.api_version(), &info.kind),
    }
}

/// For strategic merge patch (built-in kinds only; custom resources get 415).
pub fn for_strategic(info: &ResourceInfo) -> MergeSchema {
    MergeSchema::for_builtin_strategic(&info.api_version(), &info.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{builtin_resources, crd_resources};

    #[test]
    fn job_containers_merge_by_name_in_strategic_patches() {
        let jobs = builtin_resources()
            .into_iter()
            .find(|r| r.plural == "jobs")
            .unwrap();
        let s = for_strategic(&jobs);
        assert_eq!(
            s.map_lists.get(".spec.template.spec.containers"),
            Some(&vec!["name".to_string()])
        );
    }

    #[test]
    fn crd_list_type_markers_are_read() {
        let crd = serde_json::json!({"metadata": {"name": "xs.e.io"}, "spec": {"group": "e.io", "scope": "Namespaced",
            "names": {"plural": "xs", "kind": "X"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"], "items": {"type": "object"}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "plain": {"type": "array", "items": {"type": "string"}}}}}}}}]}});
        let info = &crd_resources(&crd)[0];
        let s = for_apply(info);
        assert_eq!(
            s.map_lists.get(".spec.items"),
            Some(&vec!["id".to_string()])
        );
        assert!(s.set_lists.contains(".spec.tags"));
        assert!(!s.map_lists.contains_key(".spec.plain"));
    }
}
