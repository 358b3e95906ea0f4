//! The crate's test harness: [`cluster`] (shared with the product's tests) plus the fixture
//! CRD in group `example.kube-envtest.dev`.
//!
//! Use it with `mod support;` and `let c = support::cluster().await;`.
#![allow(dead_code)]

mod cluster;
pub mod fixture;

pub use cluster::*;

impl TestCluster {
    /// Installs the fixture TaskRun CRD (server-side apply) and waits until it is Established.
    pub async fn install_task_run_crd(&self) {
        use kube::CustomResourceExt;
        install_crd(&self.client, &fixture::TaskRun::crd()).await;
    }
}
