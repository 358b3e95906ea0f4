//! The test harness shared by the kube-envtest crate's tests and the product's: each test gets
//! a kube::Client and a fresh namespace, on the cluster named by `KUBECONFIG` when it is set,
//! otherwise on a fresh embedded API server. Each side adds how to install its own CRD (an
//! inherent impl beside its `support/mod.rs`).
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_envtest::{ApiServer, ApiServerConfig, RequestStats, RunningApiServer};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub struct TestCluster {
    pub client: kube::Client,
    /// A namespace created for this test alone.
    pub namespace: String,
    server: Option<RunningApiServer>,
    kubeconfig: Option<tempfile::NamedTempFile>,
}

/// A cluster for one test: the real one from `KUBECONFIG`, or a fresh embedded server.
pub async fn cluster() -> TestCluster {
    if std::env::var_os("KUBECONFIG").is_some() {
        let client = kube::Client::try_default()
            .await
            .expect("KUBECONFIG is set but no client could be built from it");
        return TestCluster::with_namespace(client, None).await;
    }
    embedded_cluster(ApiServerConfig::default()).await
}

/// Always an embedded server, started with `config` (for tests of the server itself, such as
/// persistence or a small watch history).
pub async fn embedded_cluster(config: ApiServerConfig) -> TestCluster {
    let server = ApiServer::start(config)
        .await
        .expect("the embedded API server starts");
    let client = server.client();
    TestCluster::with_namespace(client, Some(server)).await
}

/// A unique DNS-1123 name with a prefix.
pub fn unique_name(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}-{:08x}", n as u32)
}

impl TestCluster {
    async fn with_namespace(client: kube::Client, server: Option<RunningApiServer>) -> Self {
        let namespace = unique_name("t");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"orchestrator.io/test": "true"}},
        }))
        .expect("a namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("the test namespace is created");
        TestCluster {
            client,
            namespace,
            server,
            kubeconfig: None,
        }
    }

    pub fn is_embedded(&self) -> bool {
        self.server.is_some()
    }

    /// The embedded server, if this cluster is one.
    pub fn server(&self) -> Option<&RunningApiServer> {
        self.server.as_ref()
    }

    /// Requests the embedded server has answered; `None` on a real cluster.
    pub fn request_stats(&self) -> Option<RequestStats> {
        self.server.as_ref().map(RunningApiServer::request_stats)
    }

    /// Takes the embedded server out (to shut it down and restart on the same data dir).
    pub fn take_server(&mut self) -> Option<RunningApiServer> {
        self.server.take()
    }

    /// An `Api` in the test namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A kubeconfig file for kubectl: the embedded server's, or `KUBECONFIG`.
    pub fn kubeconfig_path(&mut self) -> PathBuf {
        if let Some(server) = &self.server {
            if self.kubeconfig.is_none() {
                let f = tempfile::NamedTempFile::new().expect("a temp file");
                server
                    .write_kubeconfig(f.path())
                    .expect("the kubeconfig is written");
                self.kubeconfig = Some(f);
            }
            return self
                .kubeconfig
                .as_ref()
                .map(|f| f.path().to_path_buf())
                .unwrap_or_default();
        }
        PathBuf::from(std::env::var_os("KUBECONFIG").unwrap_or_default())
    }

    /// Runs kubectl against this cluster in the test namespace; `None` (with a printed
    /// reason) when kubectl is not installed. Async, so an embedded server on the same runtime
    /// keeps serving while kubectl runs.
    pub async fn kubectl(&mut self, args: &[&str]) -> Option<std::process::Output> {
        if !kubectl_available() {
            eprintln!("skipping kubectl step: kubectl is not installed");
            return None;
        }
        let kubeconfig = self.kubeconfig_path();
        Some(
            tokio::process::Command::new("kubectl")
                .env("KUBECONFIG", kubeconfig)
                .arg("--namespace")
                .arg(&self.namespace)
                .args(args)
                .output()
                .await
                .expect("kubectl runs"),
        )
    }
}

pub fn kubectl_available() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Applies a CRD and waits until it is Established (and its resources are served).
pub async fn install_crd(client: &kube::Client, crd: &CustomResourceDefinition) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("a CRD has a name");
    let mut crd = crd.clone();
    crd.metadata.managed_fields = None;
    api.patch(
        &name,
        &PatchParams::apply("orchestrator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD is applied");
    wait_until(Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move {
            api.get(&name).await.ok().is_some_and(|c| {
                c.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
        }
    })
    .await
    .expect("the CRD becomes Established");
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("condition not met within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // An embedded server goes away with its state; on a real cluster the namespace is
        // deleted so that test runs do not pile up.
        if self.server.is_some() {
            return;
        }
        // A client of its own: the test's client is tied to the test's runtime, which this
        // thread blocks.
        let ns = self.namespace.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = kube::Client::try_default().await else {
                    return;
                };
                let _ = Api::<Namespace>::all(client)
                    .delete(&ns, &DeleteParams::background())
                    .await;
            });
        })
        .join();
    }
}
