//! The TaskRun CRD on the cluster against this binary's: a client in, the CRD installed or
//! upgraded (or, with `--skip-crd-install`, checked) and Established out. Whether the cluster's
//! is older is decided by [`compare_crds`], a pure function.

use crate::crd::task_run_crd;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::{info, warn};

/// The API call of the check `--skip-crd-install` makes (deploy/ grants it with a ClusterRole
/// limited to this one CRD, read-only).
pub const CHECK_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: "apiextensions.k8s.io",
    resource: "customresourcedefinitions",
    verbs: &["get"],
}];

/// The command that upgrades the CRD by hand, as the refusal prints it.
pub const UPGRADE_COMMAND: &str = "orchestrator crd | kubectl apply --server-side \
    --field-manager=orchestrator-crd --force-conflicts -f -";

/// The field manager of the CRD install and upgrade.
pub const FIELD_MANAGER_CRD: &str = "orchestrator-crd";

/// The API calls of the CRD install (skipped with `--skip-crd-install`, as deploy/ runs it, so the
/// in-cluster Role needs none of these cluster-scoped rights).
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: "apiextensions.k8s.io",
    resource: "customresourcedefinitions",
    verbs: &["get", "list", "watch", "create", "patch"],
}];

/// How long a fresh CRD may take to become Established.
pub const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CrdInstallError {
    #[error(
        "reading CustomResourceDefinition {name} failed: {source}; orchestrator needs get on \
         customresourcedefinitions (or pass --skip-crd-install and install crds/taskrun.yaml \
         yourself)"
    )]
    ReadCrd {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "creating CustomResourceDefinition {name} failed: {source}; install it with `kubectl \
         apply -f crds/taskrun.yaml` and pass --skip-crd-install"
    )]
    CreateCrd {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("CustomResourceDefinition {name} did not become Established within {timeout:?}")]
    NotEstablished { name: String, timeout: Duration },
    #[error(
        "upgrading CustomResourceDefinition {name} failed: {source}; upgrade it with `{cmd}` \
         (this orchestrator's CRD; crds/taskrun.yaml of the same release is the same) and \
         pass --skip-crd-install",
        cmd = UPGRADE_COMMAND
    )]
    UpgradeCrd {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "CustomResourceDefinition {name} is not installed and --skip-crd-install forbids \
         installing it: run `{cmd}` (or `kubectl apply -k deploy/`), or drop --skip-crd-install",
        cmd = UPGRADE_COMMAND
    )]
    MissingCrd { name: String },
    #[error(
        "CustomResourceDefinition {name} on the cluster is older than this orchestrator's: it \
         lacks {missing}, which the API server would silently drop. Upgrade it with `{cmd}` \
         (or `kubectl apply -f crds/taskrun.yaml` of this release), or drop --skip-crd-install \
         to let orchestrator upgrade it",
        cmd = UPGRADE_COMMAND
    )]
    OlderCrd { name: String, missing: String },
    #[error("waiting for CustomResourceDefinition {name} failed: {source}")]
    WaitCrd {
        name: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
}

/// What `ensure_crd` found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdState {
    /// The cluster's CRD keeps everything this binary writes; no write.
    AlreadyInstalled,
    Installed,
    /// The cluster's was older; it was server-side applied with this binary's.
    Upgraded,
}

/// The cluster's CRD against this binary's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrdComparison {
    Missing,
    /// The same schema in every version.
    Same,
    /// The cluster's lacks fields or enum values this binary's has (listed as paths such as
    /// `v1 .status.result` or `v1 .status.phase=Cancelled`): writes would lose them.
    Older {
        missing: Vec<String>,
    },
    /// Different, but it keeps everything this binary's has (a newer orchestrator installed it,
    /// or only descriptions or validation differ): left as it is.
    NotOlder,
}

/// Compares the cluster's CRD with ours, version by version, on the stored schemas. Pure.
pub fn compare_crds(
    ours: &CustomResourceDefinition,
    live: Option<&CustomResourceDefinition>,
) -> CrdComparison {
    let Some(live) = live else {
        return CrdComparison::Missing;
    };
    let mut missing = Vec::new();
    let mut same = true;
    for version in &ours.spec.versions {
        let ours_schema = schema_of(Some(version));
        let live_version = live.spec.versions.iter().find(|v| v.name == version.name);
        let Some(live_version) = live_version else {
            missing.push(format!("version {}", version.name));
            same = false;
            continue;
        };
        let live_schema = schema_of(Some(live_version));
        if ours_schema != live_schema
            || version.subresources != live_version.subresources
            || version.additional_printer_columns != live_version.additional_printer_columns
        {
            same = false;
        }
        let have = schema_paths(&live_schema);
        missing.extend(
            schema_paths(&ours_schema)
                .difference(&have)
                .map(|p| format!("{} {p}", version.name)),
        );
        if version.subresources.is_some() && live_version.subresources.is_none() {
            missing.push(format!("{} subresources", version.name));
        }
    }
    match (same, missing.is_empty()) {
        (true, _) => CrdComparison::Same,
        (false, false) => CrdComparison::Older { missing },
        (false, true) => CrdComparison::NotOlder,
    }
}

fn schema_of(
    version: Option<
        &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion,
    >,
) -> Value {
    version
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

/// Every property path (`.status.result`, `.spec.markdownFiles[]`) and enum value
/// (`.status.phase=Failed`) a schema allows.
fn schema_paths(schema: &Value) -> BTreeSet<String> {
    fn walk(schema: &Value, path: &str, out: &mut BTreeSet<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let here = format!("{path}.{name}");
                out.insert(here.clone());
                walk(sub, &here, out);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), out);
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            walk(extra, &format!("{path}.*"), out);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for sub in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(sub, path, out);
            }
        }
        for value in schema
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.insert(format!(
                "{path}={}",
                value.as_str().map_or(value.to_string(), String::from)
            ));
        }
    }
    let mut out = BTreeSet::new();
    walk(schema, "", &mut out);
    out
}

/// At most this many missing paths are named in a message.
const MISSING_SHOWN: usize = 5;

fn list_missing(missing: &[String]) -> String {
    let mut shown = missing
        .iter()
        .take(MISSING_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > MISSING_SHOWN {
        shown.push_str(&format!(" and {} more", missing.len() - MISSING_SHOWN));
    }
    shown
}

async fn read_crd(
    api: &Api<CustomResourceDefinition>,
    name: &str,
) -> Result<Option<CustomResourceDefinition>, CrdInstallError> {
    api.get_opt(name)
        .await
        .map_err(|source| CrdInstallError::ReadCrd {
            name: name.to_string(),
            source,
        })
}

/// Creates the TaskRun CRD when it is missing, upgrades it (server-side apply, field manager
/// `orchestrator-crd`) when the cluster's is older, and waits until it is Established. A CRD
/// that keeps everything this binary writes is not written.
pub async fn ensure_crd(client: Client) -> Result<CrdState, CrdInstallError> {
    let crd = task_run_crd();
    let name = crd.name_any();
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let existing = read_crd(&api, &name).await?;
    let params = PatchParams::apply(FIELD_MANAGER_CRD).force();
    let state = match compare_crds(&crd, existing.as_ref()) {
        CrdComparison::Same => CrdState::AlreadyInstalled,
        CrdComparison::NotOlder => {
            info!(
                crd = %name,
                "the cluster's TaskRun CRD differs from this orchestrator's but keeps every field \
                 it writes (a newer orchestrator installed it?); left as it is"
            );
            CrdState::AlreadyInstalled
        }
        CrdComparison::Missing => {
            info!(crd = %name, "installing the TaskRun CRD");
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .map_err(|source| CrdInstallError::CreateCrd {
                    name: name.clone(),
                    source,
                })?;
            CrdState::Installed
        }
        CrdComparison::Older { missing } => {
            info!(
                crd = %name,
                missing = %list_missing(&missing),
                "upgrading the TaskRun CRD: the cluster's lacks fields this orchestrator writes"
            );
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .map_err(|source| CrdInstallError::UpgradeCrd {
                    name: name.clone(),
                    source,
                })?;
            CrdState::Upgraded
        }
    };
    wait_established(api, &name).await?;
    Ok(state)
}

/// What `check_crd` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdCheck {
    /// The cluster's keeps everything this binary writes.
    UpToDate,
    /// Orchestrator may not read CRDs (a deploy/ from before the check): not checked.
    NotReadable,
}

/// With `--skip-crd-install`: refuses (with the command that fixes it) when the cluster's
/// TaskRun CRD is missing or older than this binary's; never writes it.
pub async fn check_crd(client: Client) -> Result<CrdCheck, CrdInstallError> {
    let crd = task_run_crd();
    let name = crd.name_any();
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let existing = match api.get_opt(&name).await {
        Ok(existing) => existing,
        Err(kube::Error::Api(status)) if status.code == 403 => {
            warn!(
                crd = %name,
                "cannot read the TaskRun CRD (no get on customresourcedefinitions): not checking \
                 that it is as new as this orchestrator; deploy/rbac.yaml grants it"
            );
            return Ok(CrdCheck::NotReadable);
        }
        Err(source) => return Err(CrdInstallError::ReadCrd { name, source }),
    };
    match compare_crds(&crd, existing.as_ref()) {
        CrdComparison::Missing => Err(CrdInstallError::MissingCrd { name }),
        CrdComparison::Older { missing } => Err(CrdInstallError::OlderCrd {
            name,
            missing: list_missing(&missing),
        }),
        CrdComparison::Same | CrdComparison::NotOlder => Ok(CrdCheck::UpToDate),
    }
}

async fn wait_established(
    api: Api<CustomResourceDefinition>,
    name: &str,
) -> Result<(), CrdInstallError> {
    let established = await_condition(api, name, conditions::is_crd_established());
    match tokio::time::timeout(ESTABLISH_TIMEOUT, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(CrdInstallError::WaitCrd {
            name: name.to_string(),
            source,
        }),
        Err(_) => Err(CrdInstallError::NotEstablished {
            name: name.to_string(),
            timeout: ESTABLISH_TIMEOUT,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our CRD with `edit` applied to version v1's schema (as JSON).
    fn with_schema(edit: impl Fn(&mut Value)) -> CustomResourceDefinition {
        let mut crd = serde_json::to_value(task_run_crd()).unwrap();
        edit(&mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]);
        serde_json::from_value(crd).unwrap()
    }

    #[test]
    fn an_older_crd_is_one_that_lacks_what_we_write() {
        let ours = task_run_crd();
        let status = "/properties/status/properties";
        let no_result = with_schema(|s| {
            s.pointer_mut(status)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove("completionTime");
        });
        let extra_field = with_schema(|s| {
            s.pointer_mut(status).unwrap()["fromTheFuture"] = serde_json::json!({"type": "string"});
        });
        let other_description = with_schema(|s| {
            s["description"] = "reworded".into();
        });
        let phase = "/properties/status/properties/phase";
        let fewer_phases = with_schema(|s| {
            let phase = s.pointer_mut(phase).unwrap();
            let values = phase["enum"].as_array_mut().unwrap();
            values.retain(|v| v != "Failed");
        });
        for (live, want) in [
            (None, CrdComparison::Missing),
            (Some(&ours), CrdComparison::Same),
            (
                Some(&no_result),
                CrdComparison::Older {
                    missing: vec!["v1 .status.completionTime".into()],
                },
            ),
            (Some(&extra_field), CrdComparison::NotOlder),
            (Some(&other_description), CrdComparison::NotOlder),
            (
                Some(&fewer_phases),
                CrdComparison::Older {
                    missing: vec!["v1 .status.phase=Failed".into()],
                },
            ),
        ] {
            assert_eq!(compare_crds(&ours, live), want);
        }
    }

    #[test]
    fn long_lists_are_cut() {
        let missing: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
        assert_eq!(list_missing(&missing), "f0, f1, f2, f3, f4 and 3 more");
    }
}
