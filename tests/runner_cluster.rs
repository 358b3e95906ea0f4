//! Choosing and connecting to a cluster: the embedded server with its local Job runner, a
//! kubeconfig file, and the errors that name a broken kubeconfig. Starts its own embedded
//! servers, so it runs the same with or without `KUBECONFIG`.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, PostParams};
use orchestrator::cluster::{
    ClusterChoice, ClusterError, ClusterInputs, EmbeddedReason, EmbeddedSettings, KubeconfigSource,
    choose_cluster, connect,
};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[tokio::test]
async fn with_nothing_configured_the_embedded_server_runs_jobs_locally() {
    let choice = choose_cluster(&ClusterInputs::default());
    assert_eq!(
        choice,
        ClusterChoice::Embedded(EmbeddedReason::NoClusterConfigured)
    );
    let logs = tempfile::tempdir().expect("log dir");
    let connected = connect(
        &choice,
        &EmbeddedSettings {
            log_dir: Some(logs.path().to_path_buf()),
            ..EmbeddedSettings::default()
        },
    )
    .await
    .expect("the embedded cluster starts");
    assert!(
        connected
            .description
            .contains("embedded API server at https://127.0.0.1:"),
        "{}",
        connected.description
    );
    assert!(connected.embedded.is_some());

    let jobs: Api<Job> = Api::namespaced(connected.client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "hello"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "a", "command": ["sh", "-c", "echo hello-embedded"]}]}}}
    }))
    .expect("valid Job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create Job");
    let start = Instant::now();
    loop {
        let job = jobs.get("hello").await.expect("get Job");
        if job.status.as_ref().and_then(|s| s.succeeded) == Some(1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the local runner did not complete the Job: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(logs.path().join("default").read_dir().map_or_else(
        |e| panic!("no log directory for the namespace: {e}"),
        |mut entries| {
            entries
                .next()
                .and_then(Result::ok)
                .map(|e| e.path())
                .unwrap_or_default()
        },
    ))
    .expect("read log");
    assert!(log.contains("hello-embedded"), "{log}");
    connected.shutdown().await;
}

#[tokio::test]
async fn a_kubeconfig_file_connects_to_the_server_it_names() {
    let logs = tempfile::tempdir().expect("log dir");
    let embedded = connect(
        &ClusterChoice::Embedded(EmbeddedReason::Forced),
        &EmbeddedSettings {
            log_dir: Some(logs.path().to_path_buf()),
            ..EmbeddedSettings::default()
        },
    )
    .await
    .expect("the embedded cluster starts");
    let file = tempfile::NamedTempFile::new().expect("kubeconfig file");
    embedded
        .embedded
        .as_ref()
        .expect("embedded")
        .server
        .write_kubeconfig(file.path())
        .expect("write kubeconfig");

    let choice = choose_cluster(&ClusterInputs {
        kubeconfig_env: Some(file.path().as_os_str().to_owned()),
        home_kubeconfig: Some(PathBuf::from("/nonexistent/.kube/config")),
        ..ClusterInputs::default()
    });
    assert_eq!(
        choice,
        ClusterChoice::Kubeconfig {
            paths: vec![file.path().to_path_buf()],
            source: KubeconfigSource::Env
        }
    );
    let connected = connect(&choice, &EmbeddedSettings::default())
        .await
        .expect("connect through the kubeconfig");
    assert!(connected.embedded.is_none(), "nothing new is started");
    assert!(
        connected
            .description
            .contains("context \"orchestrator-embedded\""),
        "{}",
        connected.description
    );
    let namespaces = Api::<Namespace>::all(connected.client.clone())
        .list(&ListParams::default())
        .await
        .expect("list namespaces through the kubeconfig");
    assert!(
        namespaces
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );
    embedded.shutdown().await;
}

#[tokio::test]
async fn a_missing_kubeconfig_is_an_error_that_names_the_file_and_the_way_out() {
    let choice = choose_cluster(&ClusterInputs {
        kubeconfig_flag: Some(PathBuf::from("/nonexistent/kubeconfig")),
        ..ClusterInputs::default()
    });
    let Err(error) = connect(&choice, &EmbeddedSettings::default()).await else {
        panic!("a missing kubeconfig cannot connect");
    };
    assert!(matches!(error, ClusterError::ReadKubeconfig { .. }));
    let message = error.to_string();
    assert!(message.contains("/nonexistent/kubeconfig"), "{message}");
    assert!(message.contains("--embedded"), "{message}");
}
