//! Shared by the controller's flow tests: an embedded API server with the TaskRun CRD, a
//! namespace, the local Job runner, and a controller that can be stopped and started again.
#![allow(dead_code)]

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use kube_envtest::runner::{JobRunner, RunnerConfig, RunnerHandle};
use kube_envtest::{ApiServer, ApiServerConfig, RunningApiServer};
use orchestrator::controller::{
    AgentProfiles, ControllerConfig, ControllerMetrics, run_controller,
};
use orchestrator::crd::{MarkdownFile, TaskRun, TaskRunSpec};
use orchestrator::names;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const NS: &str = "tasks";

/// Everything one flow test runs against.
pub struct Cluster {
    pub server: RunningApiServer,
    pub client: Client,
    pub runner: Option<RunnerHandle>,
    pub agents: AgentProfiles,
    pub tmp: tempfile::TempDir,
}

/// A running controller with its own metrics registry.
pub struct RunningController {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pub registry: Registry,
    pub metrics: Arc<ControllerMetrics>,
}

impl RunningController {
    /// The registry in the OpenMetrics text format, as /metrics serves it.
    pub fn metrics_text(&self) -> String {
        orchestrator::controller::metrics::encode_openmetrics(&self.registry)
    }

    /// Stops the controller and waits for its running reconciles to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Cluster {
    /// An embedded server with the CRD and namespace, and the local runner running processes.
    pub async fn start(agents_yaml: &str) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        if std::env::var_os("KUBECONFIG").is_some() {
            eprintln!(
                "KUBECONFIG is ignored by this test: it runs the controller against its own \
                 embedded server and local Job runner, whose Jobs run the profiles' shell \
                 commands as processes (a real cluster would pull an image named local/shell)"
            );
        }
        let server = ApiServer::start(ApiServerConfig::default())
            .await
            .expect("embedded API server starts");
        let client = server.client();
        install_crd(&client).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(NS.to_string());
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace is created");
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut config = RunnerConfig::new(tmp.path().join("logs"));
        config.namespace = Some(NS.to_string());
        config.retry_backoff = Duration::from_millis(100);
        config.termination_grace = Duration::from_millis(500);
        let runner = JobRunner::start(client.clone(), config);
        let agents = AgentProfiles::parse(agents_yaml, "test agents").expect("agents parse");
        Cluster {
            server,
            client,
            runner: Some(runner),
            agents,
            tmp,
        }
    }

    pub fn start_controller(&self) -> RunningController {
        self.start_controller_with(|_| {})
    }

    /// [`Cluster::start_controller`] with `adjust` applied to its configuration.
    pub fn start_controller_with(
        &self,
        adjust: impl FnOnce(&mut ControllerConfig),
    ) -> RunningController {
        let mut registry = Registry::default();
        let metrics = Arc::new(ControllerMetrics::register(&mut registry));
        let (tx, rx) = oneshot::channel::<()>();
        let mut config = ControllerConfig::new(Some(NS.to_string()), self.agents.clone());
        config.debounce = Duration::from_millis(50);
        adjust(&mut config);
        let task = tokio::spawn(run_controller(
            self.client.clone(),
            config,
            metrics.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        RunningController {
            stop: Some(tx),
            task,
            registry,
            metrics,
        }
    }

    pub fn task_runs(&self) -> Api<TaskRun> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create(&self, tr: &TaskRun) -> TaskRun {
        self.task_runs()
            .create(&PostParams::default(), tr)
            .await
            .expect("TaskRun is created")
    }

    /// Polls the TaskRun until `done` holds; panics with the last status after `timeout`.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&TaskRun) -> bool,
    ) -> TaskRun {
        let start = Instant::now();
        loop {
            let tr = self.task_runs().get_opt(name).await.expect("get TaskRun");
            if let Some(tr) = &tr
                && done(tr)
            {
                return tr.clone();
            }
            if start.elapsed() > timeout {
                panic!(
                    "{name}: not {what} after {timeout:?}; status: {:#?}",
                    tr.and_then(|t| t.status)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the TaskRun is gone.
    pub async fn wait_deleted(&self, name: &str, uid: &str, timeout: Duration) {
        let cond = await_condition(self.task_runs(), name, conditions::is_deleted(uid));
        tokio::time::timeout(timeout, cond)
            .await
            .unwrap_or_else(|_| panic!("{name} still exists after {timeout:?}"))
            .expect("watch TaskRun");
    }

    /// (reason, note, type) of every event on the TaskRun, oldest first.
    pub async fn events_for(&self, name: &str) -> Vec<(String, String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), NS);
        let mut list: Vec<Event> = events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter()
            .map(|e| {
                (
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                    e.type_.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Jobs labelled with the task id.
    pub async fn jobs_of(&self, task_id: i64) -> Vec<Job> {
        self.jobs()
            .list(&ListParams::default().labels(&format!("{}={task_id}", names::LABEL_TASK_ID)))
            .await
            .expect("list Jobs")
            .items
    }

    pub async fn config_maps_of(&self, task_id: i64) -> Vec<ConfigMap> {
        self.config_maps()
            .list(&ListParams::default().labels(&format!("{}={task_id}", names::LABEL_TASK_ID)))
            .await
            .expect("list ConfigMaps")
            .items
    }
}

/// Creates the TaskRun CRD from the Rust types and waits until it is Established.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = orchestrator::crd::task_run_crd();
    let name = crd.metadata.name.clone().expect("CRD has a name");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD is created");
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watch CRD");
    // The resource is served a moment after Established on a real server.
    let api: Api<TaskRun> = Api::all(client.clone());
    for _ in 0..100 {
        if api.list(&ListParams::default().limit(1)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("TaskRuns are not served after the CRD is Established");
}

/// A TaskRun as the sync would create it.
pub fn task_run(task_id: i64, version: i64, agent: &str, prompt: &str) -> TaskRun {
    let mut tr = TaskRun::new(
        &names::task_run_name(task_id),
        TaskRunSpec {
            task_id,
            service_name: "web".to_string(),
            agent_name: agent.to_string(),
            context_version: version,
            content_digest: format!("sha256:{}", names::short_hash(prompt, 64)),
            source_path: format!("tasks/{task_id}-demo"),
            suspend: false,
            priority: 0,
            markdown_files: vec![
                MarkdownFile {
                    filename: "acceptance.md".to_string(),
                    content: "# Acceptance\nIt works.\n".to_string(),
                },
                MarkdownFile {
                    filename: "prompt.md".to_string(),
                    content: prompt.to_string(),
                },
            ],
        },
    );
    tr.metadata.namespace = Some(NS.to_string());
    tr
}

/// A condition's (status, reason).
pub fn condition(tr: &TaskRun, type_: &str) -> Option<(String, String)> {
    tr.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

pub fn phase(tr: &TaskRun) -> Option<orchestrator::crd::TaskPhase> {
    tr.status.as_ref().and_then(|s| s.phase)
}

/// The value of one unlabelled or labelled sample line, e.g. `taskrun_phase{phase="Failed"}`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub async fn watch_quiet() {
    // Lets watch events in flight arrive before a check that something did NOT happen.
    let _ = futures::stream::iter(0..1).next().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Every status the TaskRun `name` goes through, as the watch delivers them, from now on.
pub struct StatusRecorder {
    seen: Arc<std::sync::Mutex<Vec<orchestrator::crd::TaskRunStatus>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusRecorder {
    pub fn start(cluster: &Cluster, name: &str) -> StatusRecorder {
        use kube::runtime::{WatchStreamExt, watcher};
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let stream = watcher(
            cluster.task_runs(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(tr)) = stream.next().await {
                let tr: TaskRun = tr;
                if let Some(status) = tr.status {
                    let mut seen = sink.lock().unwrap();
                    if seen.last() != Some(&status) {
                        seen.push(status);
                    }
                }
            }
        });
        StatusRecorder { seen, task }
    }

    pub fn statuses(&self) -> Vec<orchestrator::crd::TaskRunStatus> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StatusRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
