//! What the API serves from, as plain inputs: the repository writer, the TaskRun cache, the
//! latest sync report, a sync trigger, readiness checks, a metrics renderer and the secrets.

use super::auth::{ApiToken, WebhookSecret};
use super::commit::RepoWriter;
use super::error::ApiError;
use super::metrics::ApiMetrics;
use crate::crd::TaskRun;
use crate::notes::read::NoteQuery;
use crate::sync::report::SyncReport;
use kube::runtime::reflector::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Asks the sync for an immediate fetch and sync (the sync's `SyncTrigger`, wrapped).
pub type TriggerSync = Arc<dyn Fn() + Send + Sync>;
/// Renders the Prometheus registry as OpenMetrics text.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;
/// One readiness condition, asked on every `/readyz`.
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Default largest request body: a task's markdown limit plus room for JSON escaping.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The namespace of TaskRuns when none is given (the sketch's).
pub const DEFAULT_NAMESPACE: &str = "orchestrator";

/// Named readiness checks; `/readyz` is 200 when every one holds.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, ReadyCheck)>,
}

impl Readiness {
    pub fn with(mut self, name: impl Into<String>, check: ReadyCheck) -> Self {
        self.checks.push((name.into(), check));
        self
    }

    /// A check that turns true once the reflector behind `store` has listed everything.
    /// Spawns a task, so call it inside a Tokio runtime.
    pub fn with_store_synced(self, name: impl Into<String>, store: &Store<TaskRun>) -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        let (set, store) = (flag.clone(), store.clone());
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                set.store(true, Ordering::Relaxed);
            }
        });
        self.with(name, Arc::new(move || flag.load(Ordering::Relaxed)))
    }

    /// Each check by name with its current answer.
    pub fn evaluate(&self) -> Vec<(String, bool)> {
        self.checks
            .iter()
            .map(|(name, check)| (name.clone(), check()))
            .collect()
    }
}

/// Where writes go: a repository writer, or nowhere with the reason (reads still work).
#[derive(Clone, Debug)]
pub enum Writes {
    To(RepoWriter),
    Disabled { reason: String, branch: String },
}

impl Writes {
    /// The writer, or 503 saying why this server takes no writes.
    pub fn writer(&self) -> Result<&RepoWriter, ApiError> {
        match self {
            Writes::To(writer) => Ok(writer),
            Writes::Disabled { reason, .. } => Err(ApiError::Unavailable(format!(
                "this server accepts no writes: {reason}"
            ))),
        }
    }

    /// The branch the sync follows.
    pub fn branch(&self) -> &str {
        match self {
            Writes::To(writer) => writer.branch(),
            Writes::Disabled { branch, .. } => branch,
        }
    }
}

/// Everything the router needs. Cloning is cheap (all shared).
#[derive(Clone)]
pub struct AppState {
    pub writes: Writes,
    /// A reflector cache of TaskRuns (`kube::runtime::reflector`), read by `GET /tasks`.
    pub task_runs: Store<TaskRun>,
    /// The namespace TaskRuns live in.
    pub namespace: String,
    /// The latest sync report, `None` until the first sync.
    pub reports: watch::Receiver<Option<SyncReport>>,
    pub trigger: TriggerSync,
    pub readiness: Readiness,
    pub metrics: RenderMetrics,
    /// The API's own series (register them in the shared registry that `metrics` renders).
    pub api_metrics: ApiMetrics,
    /// `None`: write endpoints answer 401 to everyone.
    pub token: Option<ApiToken>,
    /// `None`: the webhook answers 403.
    pub webhook_secret: Option<WebhookSecret>,
    /// Where `GET /status/{rev}` reads git notes of older revisions (the repository the notes
    /// writer writes to); `None`: only the latest sync is known.
    pub notes: Option<NoteQuery>,
    /// `None`: every agent name is accepted.
    pub known_agents: Option<Arc<Vec<String>>>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// The cluster, for operations on runs (retry, cancel); `None`: they answer 503.
    pub client: Option<kube::Client>,
    /// A connection that sends no complete request headers this long is closed.
    pub header_read_timeout: Duration,
}

impl AppState {
    /// The cached TaskRun `name` of this state's namespace.
    pub fn cached_task_run(&self, name: &str) -> Option<std::sync::Arc<TaskRun>> {
        self.task_runs
            .get(&kube::runtime::reflector::ObjectRef::<TaskRun>::new(name).within(&self.namespace))
    }

    /// A state with no sync behind it: the trigger only logs, there is no report, no check,
    /// no metric. Set the fields that the caller has.
    pub fn new(writes: Writes, task_runs: Store<TaskRun>) -> Self {
        let (_, reports) = watch::channel(None);
        AppState {
            writes,
            task_runs,
            namespace: DEFAULT_NAMESPACE.to_string(),
            reports,
            trigger: Arc::new(|| tracing::debug!("no sync in this process to trigger")),
            readiness: Readiness::default(),
            metrics: Arc::new(String::new),
            api_metrics: ApiMetrics::default(),
            token: None,
            webhook_secret: None,
            notes: None,
            known_agents: None,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            client: None,
            header_read_timeout: crate::http_serve::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}
