//! Installs the TaskRun CRD when the cluster lacks it: a client in, the CRD Established out.

use crate::crd::task_run_crd;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use std::time::Duration;
use tracing::info;

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
    #[error("waiting for CustomResourceDefinition {name} failed: {source}")]
    WaitCrd {
        name: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
}

/// What `ensure_crd` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdState {
    AlreadyInstalled,
    Installed,
}

/// Creates the TaskRun CRD when it is missing and waits until it is Established. An existing
/// CRD is left alone (no write): upgrading it is `kubectl apply -f crds/taskrun.yaml`.
pub async fn ensure_crd(client: Client) -> Result<CrdState, CrdInstallError> {
    let crd = task_run_crd();
    let name = crd.name_any();
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|source| CrdInstallError::ReadCrd {
            name: name.clone(),
            source,
        })?;
    let state = match existing {
        Some(_) => CrdState::AlreadyInstalled,
        None => {
            info!(crd = %name, "installing the TaskRun CRD");
            let params = PatchParams::apply(crate::names::FIELD_MANAGER_SYNC).force();
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .map_err(|source| CrdInstallError::CreateCrd {
                    name: name.clone(),
                    source,
                })?;
            CrdState::Installed
        }
    };
    let established = await_condition(api, &name, conditions::is_crd_established());
    match tokio::time::timeout(ESTABLISH_TIMEOUT, established).await {
        Ok(Ok(_)) => Ok(state),
        Ok(Err(source)) => Err(CrdInstallError::WaitCrd { name, source }),
        Err(_) => Err(CrdInstallError::NotEstablished {
            name,
            timeout: ESTABLISH_TIMEOUT,
        }),
    }
}
