//! An older TaskRun CRD in place (one that lacks a status field this orchestrator writes):
//! `run` upgrades it with its own field manager, once, and writes nothing when it is current;
//! `run --skip-crd-install` refuses to start with the command that upgrades it. Always on an
//! embedded server: on a shared real cluster, putting an old CRD in place would break the
//! tests running beside this one.

mod deploy_support;
mod support;

use deploy_support::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use orchestrator::sync::crd_install::{CrdComparison, FIELD_MANAGER_CRD, compare_crds};
use std::path::Path;
use std::process::Output;

const CRD: &str = "taskruns.orchestrator.io";

/// This binary's CRD without `status.completionTime`: what an older release installed.
fn old_crd() -> serde_json::Value {
    let mut crd = serde_json::to_value(orchestrator::crd::task_run_crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("completionTime")
        .expect("the CRD has status.completionTime");
    crd
}

async fn run(kubeconfig: &Path, repo: &Path, namespace: &str, extra: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("run")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--repo")
        .arg(repo)
        .args([
            "--branch",
            "main",
            "--path",
            "tasks",
            "--namespace",
            namespace,
        ])
        // No controller runs here: --until-done syncs and then, after --controller-wait, exits 4
        // ("nothing would run the tasks"), which is what `started` accepts.
        .args(["--no-controller", "--no-notes", "--until-done"])
        .args(["--controller-wait", "1s"])
        .args(extra)
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap()
}

/// `run` got past its start-up checks (the CRD ones included) and synced: with no controller it
/// then exits 4, saying so.
fn started(out: &Output) -> bool {
    out.status.code() == Some(4) && text(out).contains("no controller picked up the TaskRuns")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_crd_is_upgraded_once_or_refused_with_the_command() {
    let mut cluster = support::embedded_cluster(Default::default()).await;
    let ns = cluster.namespace.clone();
    let kubeconfig = cluster.kubeconfig_path();
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    // Installed the way deploy/ installs it (kubectl's field manager).
    apply_all(&cluster.client, &[old_crd()]).await;
    let ours = orchestrator::crd::task_run_crd();
    let live = crds.get(CRD).await.unwrap();
    assert!(
        matches!(
            compare_crds(&ours, Some(&live)),
            CrdComparison::Older { .. }
        ),
        "the test's CRD must be older"
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = example_tasks_repo(tmp.path());

    // --skip-crd-install: refused, with the command that fixes it; nothing written.
    let refused = run(&kubeconfig, &repo, &ns, &["--skip-crd-install"]).await;
    let said = text(&refused);
    println!("--- run --skip-crd-install on the old CRD ---\n{said}");
    assert!(!refused.status.success(), "{said}");
    for wanted in [
        "is older than this orchestrator's",
        "v1 .status.completionTime",
        "kubectl apply",
    ] {
        assert!(said.contains(wanted), "{wanted:?} missing from:\n{said}");
    }
    let untouched = crds.get(CRD).await.unwrap();
    assert_eq!(
        untouched.metadata.resource_version,
        live.metadata.resource_version
    );

    // Without it: upgraded by server-side apply with orchestrator's own field manager.
    let upgraded = run(&kubeconfig, &repo, &ns, &[]).await;
    let said = text(&upgraded);
    println!("--- run on the old CRD ---\n{said}");
    assert!(started(&upgraded), "{said}");
    assert!(said.contains("upgraded the TaskRun CRD"), "{said}");
    assert_eq!(
        said.matches("upgrading the TaskRun CRD").count(),
        1,
        "{said}"
    );
    let live = crds.get(CRD).await.unwrap();
    assert_eq!(compare_crds(&ours, Some(&live)), CrdComparison::Same);
    let managers: Vec<String> = live
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == FIELD_MANAGER_CRD),
        "{managers:?}"
    );

    // Current: no write, no line; and --skip-crd-install starts.
    let again = run(&kubeconfig, &repo, &ns, &[]).await;
    let said = text(&again);
    assert!(started(&again), "{said}");
    assert!(!said.contains("upgrad"), "{said}");
    assert_eq!(
        crds.get(CRD).await.unwrap().metadata.resource_version,
        live.metadata.resource_version,
        "a current CRD is not written"
    );
    let skipping = run(&kubeconfig, &repo, &ns, &["--skip-crd-install"]).await;
    assert!(started(&skipping), "{}", text(&skipping));

    // The command the refusal prints upgrades an old CRD too.
    if support::kubectl_available() {
        apply_all(&cluster.client, &[old_crd()]).await;
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_orchestrator"))
            .parent()
            .unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(orchestrator::sync::crd_install::UPGRADE_COMMAND)
            .env("PATH", path)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let live = crds.get(CRD).await.unwrap();
        assert_eq!(compare_crds(&ours, Some(&live)), CrdComparison::Same);
    }

    // A newer CRD (an extra field) is left alone, also by a run that may install.
    let mut newer = serde_json::to_value(&ours).unwrap();
    newer["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        ["fromTheFuture"] = serde_json::json!({"type": "string"});
    crds.patch(
        CRD,
        &PatchParams::apply("newer-release").force(),
        &Patch::Apply(&newer),
    )
    .await
    .unwrap();
    let before = crds.get(CRD).await.unwrap().metadata.resource_version;
    let kept = run(&kubeconfig, &repo, &ns, &[]).await;
    assert!(started(&kept), "{}", text(&kept));
    assert_eq!(
        crds.get(CRD).await.unwrap().metadata.resource_version,
        before
    );
}
