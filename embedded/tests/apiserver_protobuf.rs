//! `kubectl create namespace|configmap|secret` send protobuf bodies; the server takes them.
//! Skips when kubectl is missing.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use support::{cluster, kubectl_available, unique_name};

#[tokio::test]
async fn kubectl_create_generators_work() {
    if !kubectl_available() {
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let mut c = cluster().await;
    let out = c
        .kubectl(&["create", "configmap", "pb", "--from-literal=level=3"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = c.api::<ConfigMap>().get("pb").await.unwrap();
    assert_eq!(cm.data.unwrap()["level"], "3");

    let out = c
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "pb",
            "--from-literal=token=s3cret",
        ])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = c.api::<Secret>().get("pb").await.unwrap();
    assert_eq!(secret.data.unwrap()["token"].0, b"s3cret");

    let ns = unique_name("pb");
    let out = c.kubectl(&["create", "namespace", &ns]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    assert!(namespaces.get(&ns).await.is_ok());
    let _ = c
        .kubectl(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}
