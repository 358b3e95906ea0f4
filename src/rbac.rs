//! The Kubernetes API calls orchestrator makes, declared next to the code that makes them, in
//! and the RBAC rules deploy/ must grant out. The deploy test checks the two agree exactly.

use std::collections::{BTreeMap, BTreeSet};

/// One resource and the verbs some module uses on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiAccess {
    /// "" for the core group.
    pub group: &'static str,
    /// Plural resource, with `/subresource` where one is used (`taskruns/status`).
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
}

/// Resources that are cluster-scoped and so need a ClusterRole rather than a Role.
pub const CLUSTER_SCOPED: &[&str] = &["customresourcedefinitions"];

/// Every module's declared API calls when orchestrator runs in a cluster as deploy/ runs it:
/// `run --leader-elect --skip-crd-install` with the controller, the notes writer and the API
/// (and the read-only check of the CRD that `--skip-crd-install` makes).
pub fn required_access() -> Vec<ApiAccess> {
    [
        crate::sync::apply::API_ACCESS,
        crate::controller::API_ACCESS,
        crate::api::API_ACCESS,
        crate::cli::run::API_ACCESS,
        crate::leader::API_ACCESS,
        crate::sync::crd_install::CHECK_ACCESS,
    ]
    .concat()
}

/// The API calls that only run without `--skip-crd-install`.
pub fn crd_install_access() -> Vec<ApiAccess> {
    crate::sync::crd_install::API_ACCESS.to_vec()
}

/// (group, resource) → verbs, merged over every declaration.
pub type Rules = BTreeMap<(String, String), BTreeSet<String>>;

/// The rules needed, split into namespaced (Role) and cluster-scoped (ClusterRole).
pub fn required_rules(access: &[ApiAccess]) -> (Rules, Rules) {
    let (mut namespaced, mut cluster) = (Rules::new(), Rules::new());
    for a in access {
        let base = a.resource.split('/').next().unwrap_or(a.resource);
        let target = if CLUSTER_SCOPED.contains(&base) {
            &mut cluster
        } else {
            &mut namespaced
        };
        target
            .entry((a.group.to_string(), a.resource.to_string()))
            .or_default()
            .extend(a.verbs.iter().map(|v| v.to_string()));
    }
    (namespaced, cluster)
}
