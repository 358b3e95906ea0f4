//! The product's test harness: kube-envtest's (each test gets a kube::Client and a fresh
//! namespace, on the cluster named by `KUBECONFIG` when it is set, otherwise on a fresh embedded
//! API server) plus the product's TaskRun CRD.
//!
//! Use it with `mod support;` and `let c = support::cluster().await;`.
#![allow(dead_code)]

#[path = "../../embedded/tests/support/cluster.rs"]
mod cluster;

pub use cluster::*;

impl TestCluster {
    /// Installs the TaskRun CRD (server-side apply) and waits until it is Established.
    pub async fn install_task_run_crd(&self) {
        install_crd(&self.client, &orchestrator::crd::task_run_crd()).await;
    }
}
