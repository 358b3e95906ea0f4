//! `orchestrator` started exactly as deploy/'s Deployment starts it: the container's arguments
//! and environment from `kubectl kustomize deploy` (env filled from the rendered Secret, as the
//! kubelet fills it, downward-API fields with test values), only the repository pointed at a
//! local bare repository of the example tasks, the volumes at temporary directories and the
//! cluster at the test cluster. It must become ready and sync the example tasks.

mod deploy_support;
mod support;

use deploy_support::*;
use orchestrator::crd::TaskRun;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the started binary may take to answer /readyz 200 with the tasks synced.
const READY_WITHIN: Duration = Duration::from_secs(90);

struct Started {
    child: Child,
    log: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Started {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Replaces an argument's value (`--flag=value`) or the prefix of a path under a volume mount.
fn rewrite_arg(arg: &str, flags: &BTreeMap<&str, String>, mounts: &[(String, PathBuf)]) -> String {
    if let Some((flag, _)) = arg.split_once('=')
        && let Some(value) = flags.get(flag)
    {
        return format!("{flag}={value}");
    }
    for (mount, dir) in mounts {
        if let Some((flag, value)) = arg.split_once('=')
            && let Some(rest) = value.strip_prefix(mount.as_str())
        {
            return format!("{flag}={}{rest}", dir.display());
        }
    }
    arg.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deployment_as_rendered_starts_ready_and_syncs_the_example_tasks() {
    let Some(docs) = render_deploy() else {
        return;
    };
    let mut cluster = support::cluster().await;
    let namespace = cluster.namespace.clone();
    // The CRD from the rendered manifests: the Deployment runs with --skip-crd-install.
    let crd = find(&docs, "CustomResourceDefinition", None).clone();
    apply_all(&cluster.client, &[crd]).await;
    // The agent profiles' ConfigMap, which the Deployment reads with --agents-configmap, in the
    // namespace the test runs it in.
    let mut agents = find(&docs, "ConfigMap", Some("orchestrator-agents")).clone();
    agents["metadata"]["namespace"] = serde_json::Value::String(namespace.clone());
    apply_all(&cluster.client, &[agents]).await;

    let deployment = find(&docs, "Deployment", Some("orchestrator"));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let fields = BTreeMap::from([
        ("metadata.namespace", namespace.clone()),
        ("metadata.name", "orchestrator-7d9f8-abcde".to_string()),
    ]);
    let env = container_env(container, &docs, &fields);

    // Volumes as the kubelet mounts them: the ConfigMap's keys as files, emptyDirs empty.
    let tmp = tempfile::tempdir().unwrap();
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let name = mount["name"].as_str().unwrap();
        let dir = tmp.path().join(format!("volume-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        if let Some(cm_name) = volume["configMap"]["name"].as_str() {
            let cm = find(&docs, "ConfigMap", Some(cm_name));
            for (key, value) in cm["data"].as_object().unwrap() {
                std::fs::write(dir.join(key), value.as_str().unwrap()).unwrap();
            }
        }
        mounts.push((mount["mountPath"].as_str().unwrap().to_string(), dir));
    }
    let repo = example_tasks_repo(tmp.path());
    let port = free_port();
    let flags = BTreeMap::from([
        ("--repo", format!("file://{}", repo.display())),
        ("--api-addr", format!("127.0.0.1:{port}")),
    ]);
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| rewrite_arg(&expand(a.as_str().unwrap(), &env), &flags, &mounts))
        .collect();
    let tmp_mount = mounts
        .iter()
        .find(|(m, _)| m == "/tmp")
        .map(|(_, d)| d.clone())
        .expect("the Deployment mounts an emptyDir at /tmp");
    let printable_env: Vec<String> = env
        .iter()
        .map(|(k, v)| {
            let shown = if k.contains("TOKEN") || k.contains("SECRET") {
                format!("<{} bytes>", v.len())
            } else {
                v.clone()
            };
            format!("{k}={shown}")
        })
        .collect();
    println!("args: {args:?}\nenv: {printable_env:?}");

    let log = tmp.path().join("orchestrator.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &tmp_mount)
        .env("TMPDIR", &tmp_mount)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let mut started = Started { child, log };

    let task_runs: kube::Api<TaskRun> = cluster.api();
    let wanted: Vec<String> = example_task_ids()
        .iter()
        .map(|id| format!("task-{id}"))
        .collect();
    let began = Instant::now();
    let mut ready_after = None;
    loop {
        if let Some(status) = started.child.try_wait().unwrap() {
            panic!(
                "orchestrator exited ({status}) instead of starting:\n{}",
                started.output()
            );
        }
        if ready_after.is_none() && http_status(port, "/readyz") == Some(200) {
            ready_after = Some(began.elapsed());
        }
        let names: Vec<String> = task_runs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|t| t.metadata.name)
            .collect();
        let synced = wanted.iter().all(|w| names.contains(w));
        if ready_after.is_some() && synced {
            break;
        }
        assert!(
            began.elapsed() < READY_WITHIN,
            "within {READY_WITHIN:?}: /readyz 200: {ready_after:?}, TaskRuns {names:?} of \
             {wanted:?}\n{}",
            started.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "ready after {:?}; {} example TaskRuns synced after {:?}",
        ready_after.unwrap(),
        wanted.len(),
        began.elapsed()
    );
    // The write endpoints take the Secret's api-token; nothing secret reaches the log.
    let output = started.output();
    println!("--- orchestrator output ---\n{output}");
    for (name, value) in &env {
        if (name.contains("TOKEN") || name.contains("SECRET")) && value.len() >= 4 {
            assert!(
                !output.contains(value.as_str()),
                "{name} leaked into the log"
            );
        }
    }
}
