//! With a data directory the embedded server keeps objects, CRDs, credentials and the
//! resourceVersion counter across a restart.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube_envtest::{ApiServer, ApiServerConfig};
use serde_json::json;
use support::fixture::{TaskRun, TaskRunSpec};

#[tokio::test]
async fn restart_keeps_objects_and_resource_versions_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let config = ApiServerConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let mut c = support::embedded_cluster(config.clone()).await;
    c.install_task_run_crd().await;
    let cms: Api<ConfigMap> = c.api();
    let kept: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "kept"}, "data": {"k": "v"}})).unwrap();
    let kept = cms.create(&PostParams::default(), &kept).await.unwrap();
    let gone: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap();
    cms.create(&PostParams::default(), &gone).await.unwrap();
    cms.delete("gone", &DeleteParams::default()).await.unwrap();
    let trs: Api<TaskRun> = c.api();
    let tr = TaskRun::new(
        "task-1",
        TaskRunSpec {
            task_id: 1,
            service_name: "svc".into(),
            agent_name: "a".into(),
            context_version: 3,
            content_digest: String::new(),
            source_path: String::new(),
            markdown_files: vec![],
        },
    );
    trs.create(&PostParams::default(), &tr).await.unwrap();
    let last_rv: u64 = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let old_config = c.server().unwrap().config();
    let port = c.server().unwrap().port();
    let before_restart = cms.clone();
    c.take_server().unwrap().shutdown().await;
    assert!(
        before_restart.get("kept").await.is_err(),
        "a stopped server closes its connections"
    );

    let restarted = ApiServer::start(ApiServerConfig { port, ..config })
        .await
        .unwrap();
    // The old kubeconfig (same CA, same token, same port) still works.
    let client = kube::Client::try_from(old_config).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &c.namespace);
    let got = cms.get("kept").await.unwrap();
    assert_eq!(got.metadata.uid, kept.metadata.uid);
    assert_eq!(
        got.metadata.resource_version,
        kept.metadata.resource_version
    );
    assert!(matches!(cms.get("gone").await, Err(kube::Error::Api(s)) if s.code == 404));
    let trs: Api<TaskRun> = Api::namespaced(client.clone(), &c.namespace);
    assert_eq!(
        trs.get("task-1").await.unwrap().spec.context_version,
        3,
        "the CRD is still served"
    );

    // Watches cannot resume across a restart (the event history is gone): 410, then relist.
    let stream = cms
        .watch(&WatchParams::default(), &(last_rv - 1).to_string())
        .await
        .unwrap();
    let first = futures::StreamExt::next(&mut Box::pin(stream))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, WatchEvent::Error(ref s) if s.code == 410),
        "{first:?}"
    );

    let fresh: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "fresh"}})).unwrap();
    let fresh = cms.create(&PostParams::default(), &fresh).await.unwrap();
    let fresh_rv: u64 = fresh.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        fresh_rv > last_rv,
        "resourceVersions keep increasing: {fresh_rv} > {last_rv}"
    );
    restarted.shutdown().await;
}
