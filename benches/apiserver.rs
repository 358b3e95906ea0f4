//! Embedded API server benchmark: the server runs as its own process (`orchestrator
//! apiserver`); kube-rs creates TaskRuns and patches their status while a watcher counts the
//! events, then the server's RSS is measured holding ConfigMaps of 4 KiB.
//!
//! Sizes: BENCH_TASKRUNS (default 1000), BENCH_CONFIGMAPS (default 10000),
//! BENCH_CONCURRENCY (default 16). Run: `cargo bench --bench apiserver`.

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use orchestrator::crd::{TaskRun, TaskRunSpec};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_server(dir: &std::path::Path) -> (Server, kube::Client) {
    let kubeconfig = dir.join("kubeconfig");
    let child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["apiserver", "--port", "0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orchestrator apiserver starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "the server wrote no kubeconfig");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).expect("kubeconfig parses"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kube config");
    (server, kube::Client::try_from(config).expect("client"))
}

fn task_run(i: usize) -> TaskRun {
    TaskRun::new(
        &format!("task-{i}"),
        TaskRunSpec {
            task_id: i as i64,
            service_name: "bench".into(),
            agent_name: "agent".into(),
            context_version: 1,
            content_digest: format!("sha256:{i:064x}"),
            source_path: format!("tasks/{i}-bench"),
            suspend: false,
            priority: 0,
            markdown_files: vec![],
        },
    )
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n = env_or("BENCH_TASKRUNS", 1000);
    let n_cm = env_or("BENCH_CONFIGMAPS", 10_000);
    let conc = env_or("BENCH_CONCURRENCY", 16);
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, client) = start_server(dir.path()).await;
    let pid = server.0.id();

    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let crd = orchestrator::crd::task_run_crd();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD");
    let api: Api<TaskRun> = Api::namespaced(client.clone(), "bench");
    let rv = loop {
        match api.list(&ListParams::default()).await {
            Ok(l) => break l.metadata.resource_version.unwrap_or_default(),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };

    // The watcher counts every event of both phases.
    let total_events = 2 * n;
    let watch_api = api.clone();
    let watcher = tokio::spawn(async move {
        let mut wp = WatchParams::default().timeout(290);
        wp.bookmarks = false;
        let mut seen = 0usize;
        let mut rv = rv;
        while seen < total_events {
            let mut s = watch_api.watch(&wp, &rv).await.expect("watch").boxed();
            while let Some(Ok(e)) = s.next().await {
                match e {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        rv = o.metadata.resource_version.unwrap_or_default();
                        seen += 1;
                    }
                    WatchEvent::Error(e) => panic!("watch error: {e:?}"),
                    _ => {}
                }
                if seen == total_events {
                    break;
                }
            }
        }
        Instant::now()
    });

    let started = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(conc, |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &task_run(i))
                    .await
                    .expect("create");
            }
        })
        .await;
    let create_time = started.elapsed();

    let patch_start = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(conc, |i| {
            let api = api.clone();
            async move {
                api.patch_status(
                    &format!("task-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Running", "attempts": 1}})),
                )
                .await
                .expect("status patch");
            }
        })
        .await;
    let patch_time = patch_start.elapsed();
    let watch_done = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the watcher sees every event")
        .expect("watcher task");
    let watch_time = watch_done.duration_since(started);

    println!(
        "embedded API server benchmark (server in its own process, {conc} concurrent clients)"
    );
    println!(
        "  {n} TaskRun creates:        {:>9.0} ops/s ({:.2?})",
        per_sec(n, create_time),
        create_time
    );
    println!(
        "  {n} TaskRun status patches: {:>9.0} ops/s ({:.2?})",
        per_sec(n, patch_time),
        patch_time
    );
    println!(
        "  watcher saw {total_events} events:     {:>9.0} events/s ({:.2?} from the first create)",
        per_sec(total_events, watch_time),
        watch_time
    );

    // Memory: the server's RSS before and after holding n_cm ConfigMaps of 4 KiB.
    let before = rss_kib(pid);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let payload = "x".repeat(4096);
    let mem_start = Instant::now();
    stream::iter(0..n_cm)
        .for_each_concurrent(conc, |i| {
            let cms = cms.clone();
            let payload = payload.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm-{i}")}, "data": {"payload": payload}}),
                )
                .unwrap();
                cms.create(&PostParams::default(), &cm)
                    .await
                    .expect("configmap");
            }
        })
        .await;
    let mem_time = mem_start.elapsed();
    let listed = cms
        .list(&ListParams::default().limit(1))
        .await
        .expect("list");
    assert!(listed.metadata.remaining_item_count.unwrap_or(0) + 1 >= n_cm as i64);
    let after = rss_kib(pid);
    let delta = after.saturating_sub(before);
    println!(
        "  {n_cm} ConfigMap creates (4 KiB): {:>9.0} ops/s ({:.2?})",
        per_sec(n_cm, mem_time),
        mem_time
    );
    println!(
        "  server RSS: {before} KiB before, {after} KiB holding {n_cm} ConfigMaps of 4 KiB: +{delta} KiB ({:.1} KiB per object, {:.2}x the 4 KiB payload)",
        delta as f64 / n_cm as f64,
        delta as f64 / n_cm as f64 / 4.0
    );
    drop(server);
}
