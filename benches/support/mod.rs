//! Shared by the benchmarks that start their own embedded API server and controller
//! (`controller`, `queue`): installing the TaskRun CRD until TaskRuns are served.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use orchestrator::crd::TaskRun;
use std::time::Duration;

/// Creates the TaskRun CRD and returns once it is Established and TaskRuns are served.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &orchestrator::crd::task_run_crd())
        .await?;
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(
            crds,
            "taskruns.orchestrator.io",
            conditions::is_crd_established(),
        ),
    )
    .await??;
    let api: Api<TaskRun> = Api::all(client.clone());
    for _ in 0..100 {
        if api.list(&ListParams::default().limit(1)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("TaskRuns are not served after the CRD is Established")
}
