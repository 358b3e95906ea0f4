//! `orchestrator uninstall` after an install made of deploy/'s rendered manifests, with tasks
//! run by a controller: the namespace and the CRD are gone within a bound, nothing is left
//! Terminating, whether the controller was killed (uninstall releases the finalizers itself)
//! or still runs (it releases them). The CRD is deleted on the embedded server only: on a real
//! cluster (`KUBECONFIG`) other tests share it, so there the test passes --keep-crd.

mod deploy_support;
mod support;

use deploy_support::*;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube_envtest::runner::{JobRunner, RunnerConfig};
use orchestrator::crd::TaskRun;
use orchestrator::names::FINALIZER;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bound the issue asks for: uninstall finishes, namespace and CRD gone, within this.
const UNINSTALL_WITHIN: Duration = Duration::from_secs(60);

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_controller(
    kubeconfig: &Path,
    repo: &Path,
    namespace: &str,
    log: &Path,
    leader_elect: bool,
) -> Process {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("run")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg(format!("--repo=file://{}", repo.display()))
        // One sync at start and none during the test: a sync loop that keeps running (an
        // `orchestrator run` outside the cluster) would re-create what uninstall deletes.
        .args(["--branch=main", "--path=tasks", "--interval=10m"])
        .arg(format!("--namespace={namespace}"))
        .arg(format!(
            "--agents={}",
            root().join("example-repo/agents.yaml").display()
        ))
        .args(["--skip-crd-install", "--no-notes"])
        .args(if leader_elect {
            &["--leader-elect", "--leader-identity=controller-under-test"][..]
        } else {
            &[]
        })
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    Process(child)
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs deploy/ into the test namespace, runs the example tasks with a controller, then
/// (after `kill_controller` decides) runs `orchestrator uninstall`; returns its output.
async fn install_run_uninstall(kill_controller: bool) {
    let Some(docs) = render_deploy() else {
        return;
    };
    let mut cluster = support::cluster().await;
    let ns = cluster.namespace.clone();
    let embedded = cluster.is_embedded();
    let docs = in_namespace(&docs, &ns);
    // Cluster-scoped names are shared; give them the test's own (as a second install would).
    let docs: Vec<_> = docs
        .into_iter()
        .map(|mut d| {
            if d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding" {
                d["metadata"]["name"] = format!("orchestrator-crd-reader-{ns}").into();
            }
            if d["kind"] == "ClusterRoleBinding" {
                d["roleRef"]["name"] = format!("orchestrator-crd-reader-{ns}").into();
            }
            d
        })
        .collect();
    let began = Instant::now();
    apply_all(&cluster.client, &docs).await;
    println!("installed {} objects in {:?}", docs.len(), began.elapsed());

    let kubeconfig = cluster.kubeconfig_path();
    let tmp = tempfile::tempdir().unwrap();
    let repo = example_tasks_repo(tmp.path());
    let _runner = embedded.then(|| {
        JobRunner::start(
            cluster.client.clone(),
            RunnerConfig::new(tmp.path().join("logs")),
        )
    });
    let controller_log = tmp.path().join("controller.log");
    let controller = start_controller(&kubeconfig, &repo, &ns, &controller_log, true);
    let task_runs: Api<TaskRun> = cluster.api();
    let wanted = example_task_ids().len();
    wait_for(
        "the example TaskRuns to carry the controller's finalizer",
        Duration::from_secs(60),
        || async {
            let list = task_runs.list(&Default::default()).await.unwrap().items;
            list.len() == wanted
                && list.iter().all(|t| {
                    t.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FINALIZER)
                })
        },
    )
    .await;
    if embedded {
        // Tasks run, and some finish, before the uninstall.
        wait_for("a task to finish", Duration::from_secs(60), || async {
            task_runs
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|t| {
                    t.status
                        .as_ref()
                        .and_then(|s| s.phase.as_ref())
                        .is_some_and(|p| {
                            matches!(
                                p,
                                orchestrator::crd::TaskPhase::Succeeded
                                    | orchestrator::crd::TaskPhase::Failed
                            )
                        })
                })
        })
        .await;
    }
    let controller = if kill_controller {
        drop(controller);
        None
    } else {
        Some(controller)
    };

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command
        .arg("uninstall")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--namespace", &ns, "--timeout", "60s"]);
    if !embedded {
        command.arg("--keep-crd");
    }
    let began = Instant::now();
    let out = tokio::time::timeout(UNINSTALL_WITHIN, command.output())
        .await
        .expect("orchestrator uninstall finishes within the bound")
        .unwrap();
    let took = began.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- orchestrator uninstall ({took:?}) ---\n{stdout}{stderr}");
    assert!(
        out.status.success(),
        "uninstall failed:\n{stdout}\n{stderr}"
    );
    if kill_controller {
        assert!(
            stdout.contains("releasing the finalizers myself"),
            "{stdout}"
        );
    } else {
        assert!(
            stdout.contains("the controller released every TaskRun"),
            "{stdout}\n--- controller ---\n{}",
            std::fs::read_to_string(&controller_log).unwrap_or_default()
        );
    }
    assert!(stdout.contains("scaled Deployment"), "{stdout}");
    drop(controller);

    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    assert!(
        namespaces.get_opt(&ns).await.unwrap().is_none(),
        "namespace {ns} is still there"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let crd = crds.get_opt("taskruns.orchestrator.io").await.unwrap();
    if embedded {
        assert!(crd.is_none(), "the CRD is still there");
    }
    println!(
        "uninstall took {took:?} (controller {}); namespace and {} gone",
        if kill_controller { "killed" } else { "running" },
        if embedded { "CRD" } else { "(kept) CRD not" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uninstall_after_the_controller_died_releases_the_task_runs_itself() {
    install_run_uninstall(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uninstall_lets_a_running_controller_release_the_task_runs() {
    if std::env::var_os("KUBECONFIG").is_none() {
        install_run_uninstall(false).await;
    } else {
        // Both tests share the cluster-wide CRD there; one install at a time is enough.
        eprintln!("skipping on a real cluster: the other uninstall test covers it");
    }
}

/// The failure, then its repair: `kubectl apply -k deploy/`, tasks run, the controller
/// gone and the namespace deleted by hand (`kubectl delete namespace`, as `kubectl delete -k`
/// does) stays Terminating, because the TaskRuns' finalizer has nobody to release it;
/// `orchestrator uninstall` then finishes the job. Embedded only: it installs into the fixed
/// namespace `orchestrator`, which a real cluster may be using.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uninstall_finishes_a_namespace_left_terminating_by_kubectl_delete() {
    let mut cluster = support::cluster().await;
    if !cluster.is_embedded() || !support::kubectl_available() {
        eprintln!(
            "skipping: needs kubectl and the embedded server (it installs into `orchestrator`)"
        );
        return;
    }
    let kubeconfig = cluster.kubeconfig_path();
    let kubectl = |args: &[&str]| {
        let mut command = tokio::process::Command::new("kubectl");
        command
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(root())
            .args(args);
        command
    };
    let out = kubectl(&["apply", "-k", "deploy/"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "kubectl apply -k deploy/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = example_tasks_repo(tmp.path());
    let controller_log = tmp.path().join("controller.log");
    let controller = start_controller(&kubeconfig, &repo, "orchestrator", &controller_log, false);
    let task_runs: Api<TaskRun> = Api::namespaced(cluster.client.clone(), "orchestrator");
    let wanted = example_task_ids().len();
    wait_for(
        "the example TaskRuns to carry the controller's finalizer",
        Duration::from_secs(60),
        || async {
            let list = task_runs.list(&Default::default()).await.unwrap().items;
            list.len() == wanted
                && list.iter().all(|t| {
                    t.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FINALIZER)
                })
        },
    )
    .await;
    drop(controller);
    let out = kubectl(&["delete", "namespace", "orchestrator", "--wait=false"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let stuck = namespaces.get_opt("orchestrator").await.unwrap();
    let phase = stuck
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.phase.clone());
    assert_eq!(
        phase.as_deref(),
        Some("Terminating"),
        "the namespace should hang in Terminating on the TaskRuns' finalizer"
    );

    // The two commands docs/install.md shows, verbatim: the second finds the rest gone and
    // removes the CRD.
    let began = Instant::now();
    let uninstall = |extra: &'static [&'static str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"));
        command
            .env("KUBECONFIG", &kubeconfig)
            .arg("uninstall")
            .args(extra);
        tokio::time::timeout(UNINSTALL_WITHIN, command.output())
    };
    let out = uninstall(&["--namespace", "orchestrator", "--keep-crd"])
        .await
        .expect("orchestrator uninstall finishes within the bound")
        .unwrap();
    let took = began.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "--- orchestrator uninstall ({took:?}) ---\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("no controller runs"), "{stdout}");
    assert!(namespaces.get_opt("orchestrator").await.unwrap().is_none());
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    assert!(
        crds.get_opt("taskruns.orchestrator.io")
            .await
            .unwrap()
            .is_some(),
        "--keep-crd keeps the CRD"
    );
    println!("uninstall of a Terminating namespace took {took:?}");

    let out = uninstall(&[])
        .await
        .expect("orchestrator uninstall finishes within the bound")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("--- orchestrator uninstall, again ---\n{stdout}");
    assert!(out.status.success(), "{stdout}");
    assert!(
        crds.get_opt("taskruns.orchestrator.io")
            .await
            .unwrap()
            .is_none()
    );
}
