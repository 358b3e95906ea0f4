//! `orchestrator api`: flags in, the HTTP API served alone (commits go to Git; a separate
//! `orchestrator run` syncs them) until SIGINT or SIGTERM.

use crate::api::auth::{ApiToken, TOKEN_ENV, WEBHOOK_SECRET_ENV, WebhookSecret, load_secret};
use crate::api::metrics::ApiMetrics;
use crate::api::state::{DEFAULT_BODY_LIMIT, DEFAULT_NAMESPACE};
use crate::api::{AppState, DEFAULT_ADDR, Person, Readiness, RepoWriter, WriterConfig, Writes};
use crate::controller::agents::AgentProfiles;
use crate::crd::TaskRun;
use crate::metrics::Metrics;
use crate::notes::read::NoteQuery;
use crate::secret_source::SecretSource;
use crate::source::credentials::{Credentials, remote_callbacks};
use crate::source::mirror::local_repo_path;
use crate::sync::report::ReportReceiver;
use crate::sync::trigger::{SyncTrigger, TriggerReason};
use anyhow::Context;
use futures::StreamExt;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{info, warn};

/// The API's flags, shared by `orchestrator api` and `orchestrator run` (flatten them).
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// Address the API listens on; loopback unless told otherwise.
    #[arg(long = "api-addr", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// File whose first line is the bearer token of write endpoints (else ORCHESTRATOR_API_TOKEN).
    /// Without a token the API accepts no writes.
    #[arg(long = "api-token-file")]
    pub token_file: Option<PathBuf>,
    /// File whose first line is the push-webhook secret (else ORCHESTRATOR_WEBHOOK_SECRET).
    #[arg(long = "webhook-secret-file")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Author of the API's commits, `Name <email>`.
    #[arg(long = "commit-author", value_parser = parse_person,
          default_value = "orchestrator-api <orchestrator-api@localhost>")]
    pub author: Person,
    /// Committer of the API's commits, `Name <email>`; the author when left out.
    #[arg(long = "commit-committer", value_parser = parse_person)]
    pub committer: Option<Person>,
    /// Largest request body in bytes (413 above it).
    #[arg(long = "api-body-limit", default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Longest time a request may take, in seconds.
    #[arg(long = "api-request-timeout", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// A connection that has not sent a request's complete headers this many seconds after it
    /// opened (or after the request began) is closed.
    #[arg(long = "api-header-read-timeout", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
}

impl ApiArgs {
    /// The commit identity and the branch and path to write to.
    pub fn writer_config(&self, branch: &str, path: &str) -> WriterConfig {
        let mut config = WriterConfig::new(branch, path);
        config.author = self.author.clone();
        config.committer = self
            .committer
            .clone()
            .unwrap_or_else(|| self.author.clone());
        config
    }

    /// Sets the token, webhook secret and limits on `state` (the caller sets `known_agents`
    /// from the agent profiles it loaded).
    pub fn configure(&self, mut state: AppState) -> anyhow::Result<AppState> {
        let token =
            load_secret(self.token_file.as_deref(), TOKEN_ENV).context("loading the API token")?;
        let origin = secret_origin(self.token_file.as_deref(), "--api-token-file", TOKEN_ENV);
        match token.absence() {
            None => {}
            // Unset: perhaps forgotten, so louder than a deliberately empty value.
            Some(absence) if token == SecretSource::Unset && self.token_file.is_none() => warn!(
                "no API token: {origin} {absence}, so the write endpoints are off (they answer \
                 401); set --api-token-file or {TOKEN_ENV}"
            ),
            Some(absence) => info!(
                "no API token: {origin} {absence}, so the write endpoints are off (they answer 401)"
            ),
        }
        state.token = token.into_value().as_deref().map(ApiToken::new);
        let secret = load_secret(self.webhook_secret_file.as_deref(), WEBHOOK_SECRET_ENV)
            .context("loading the webhook secret")?;
        if secret == SecretSource::Empty {
            let origin = secret_origin(
                self.webhook_secret_file.as_deref(),
                "--webhook-secret-file",
                WEBHOOK_SECRET_ENV,
            );
            info!("no webhook secret: {origin} is empty, so webhooks are off (they answer 403)");
        }
        state.webhook_secret = secret.into_value().as_deref().map(WebhookSecret::new);
        state.body_limit = self.body_limit;
        state.request_timeout = Duration::from_secs(self.request_timeout_secs.max(1));
        state.header_read_timeout = Duration::from_secs(self.header_read_timeout_secs.max(1));
        Ok(state)
    }
}

/// Where a secret was read from, for the one line that says it is missing.
fn secret_origin(file: Option<&std::path::Path>, flag: &str, env: &str) -> String {
    match file {
        Some(path) => format!("the file {} ({flag})", path.display()),
        None => env.to_string(),
    }
}

fn parse_person(raw: &str) -> Result<Person, String> {
    Person::parse(raw).ok_or_else(|| format!("{raw:?} is not `Name <email>`"))
}

/// `orchestrator api`.
#[derive(clap::Args, Debug, Clone)]
pub struct ApiCommand {
    /// The task repository: a local path, or a URL (https://, ssh://, file://) that the API
    /// clones into --clone-dir and pushes to.
    #[arg(long)]
    pub repo: String,
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The folder inside the repository that holds the task folders.
    #[arg(long, default_value = "")]
    pub path: String,
    /// Namespace of the TaskRuns (for 409 checks and GET /tasks).
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Where the API keeps its bare clone of a remote --repo.
    #[arg(long)]
    pub clone_dir: Option<PathBuf>,
    /// Agent profiles file (the controller's); a submitted task must name one of its agents.
    /// Without it, every agent name is accepted.
    #[arg(long, env = "ORCHESTRATOR_AGENTS")]
    pub agents: Option<PathBuf>,
    /// Credentials for pushing to an ssh or https URL.
    #[command(flatten)]
    pub git: crate::cli::git_args::GitCredentialArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub fn run(command: ApiCommand) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run_async(command))
}

async fn run_async(command: ApiCommand) -> anyhow::Result<()> {
    // Installed before anything else, so that a SIGTERM during start-up is not the default kill.
    let stop = crate::cli::shutdown::signal_logged("shutting down the API");
    let credentials = command.git.load()?;
    let known_agents = match &command.agents {
        Some(path) => Some(AgentProfiles::load(path)?.names()),
        None => {
            warn!("no --agents file: every agent name is accepted");
            None
        }
    };
    let (store, store_writer) = reflector::store::<TaskRun>();
    let cluster_up = Arc::new(AtomicBool::new(false));
    let mut cluster_client = None;
    match kube::Client::try_default().await {
        Ok(client) => {
            cluster_client = Some(client.clone());
            let api = kube::Api::<TaskRun>::namespaced(client.clone(), &command.namespace);
            // The same slim cache as `run --api` serves from: no markdown content, no managedFields.
            let task_runs = watcher(api, watcher::Config::default())
                .modify(crate::cli::run::keep_what_run_reads);
            let stream = reflector(store_writer, task_runs)
                .backoff(crate::watch_backoff::watch_backoff())
                .touched_objects();
            tokio::spawn(stream.for_each(|_| std::future::ready(())));
            tokio::spawn(probe_cluster(client, cluster_up.clone()));
        }
        Err(e) => warn!(error = %e, "no Kubernetes cluster: GET /api/v1/tasks stays empty"),
    }
    let cluster = cluster_up.clone();
    let readiness = Readiness::default()
        .with("cluster", Arc::new(move || cluster.load(Ordering::Relaxed)))
        .with_store_synced("caches", &store);
    let metrics = Metrics::new();
    let parts = ApiParts {
        repo: command.repo.clone(),
        branch: command.branch.clone(),
        path: command.path.clone(),
        namespace: command.namespace.clone(),
        credentials,
        known_agents,
        task_runs: store,
        reports: None,
        trigger: None,
        metrics,
        readiness,
        clone_dir: command.clone_dir.clone(),
        client: cluster_client,
    };
    serve_api(&command.api, parts, stop).await
}

/// What the API reuses from the process that serves it (`orchestrator run` has all of it).
pub struct ApiParts {
    /// The task repository as the user gave it: a local path (commits land on its branch, where
    /// the sync reads them) or a URL (the API commits in its own clone and pushes).
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub namespace: String,
    pub credentials: Credentials,
    /// The agents of the controller's profiles; `None` accepts every agent name.
    pub known_agents: Option<Vec<String>>,
    /// A reflector cache of the namespace's TaskRuns.
    pub task_runs: Store<TaskRun>,
    /// The sync's latest report, when a sync runs in this process.
    pub reports: Option<ReportReceiver>,
    /// The sync's trigger, when a sync runs in this process.
    pub trigger: Option<SyncTrigger>,
    /// The shared registry: the API registers its series and `/metrics` renders it all.
    pub metrics: Metrics,
    /// Checks `/readyz` asks besides "the repository is readable" (added here).
    pub readiness: Readiness,
    /// Where the clone of a remote repository is kept (default: a temp dir named by the URL).
    pub clone_dir: Option<PathBuf>,
    /// The cluster client, for retry and cancel.
    pub client: Option<kube::Client>,
}

/// Serves the API with `args` over `parts` until `shutdown`. A repository the API cannot write
/// (a local branch checked out in a working tree) leaves the API up for reads, with writes
/// answering 503 and the reason.
pub async fn serve_api(
    args: &ApiArgs,
    parts: ApiParts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = api_state(args, parts)?;
    crate::api::serve(args.addr, state, shutdown)
        .await
        .context("serving the API")
}

/// The API's state over `parts`, configured by `args` (token, limits): what [`serve_api`]
/// serves, and what `orchestrator run --api` serves beside its loop. Fails on bad arguments
/// (an unreadable token file), never on the repository: a repository the API cannot write
/// leaves writes answering 503 with the reason. Starts the repository probe; call it inside
/// the runtime.
pub fn api_state(args: &ApiArgs, parts: ApiParts) -> anyhow::Result<AppState> {
    let mut config = args.writer_config(&parts.branch, &parts.path);
    let credentials = parts.credentials.clone();
    config.callbacks = Some(Arc::new(move || remote_callbacks(&credentials)));
    let writes = match open_writer(&parts.repo, parts.clone_dir.as_deref(), config) {
        Ok(writer) => Writes::To(writer),
        Err(e) => {
            let reason = crate::api::routes::redact(&e.to_string());
            warn!(%reason, "the API takes no writes");
            Writes::Disabled {
                reason,
                branch: parts.branch.clone(),
            }
        }
    };
    let source_ok = Arc::new(AtomicBool::new(false));
    if let Writes::Disabled { .. } = &writes {
        // Writes are off (a branch checked out in a working tree): the source is still ready
        // when the sync can read the branch there.
        let (repo, branch, ok) = (parts.repo.clone(), parts.branch.clone(), source_ok.clone());
        tokio::task::spawn_blocking(move || match local_branch_readable(&repo, &branch) {
            Ok(()) => ok.store(true, Ordering::Relaxed),
            Err(e) => warn!(error = %crate::api::routes::redact(&e), "repository not readable"),
        });
    }
    if let Writes::To(writer) = &writes {
        let (writer, ok) = (writer.clone(), source_ok.clone());
        tokio::spawn(async move {
            match writer.probe().await {
                Ok(tip) => {
                    info!(
                        tip = tip.as_deref().unwrap_or("(no commit yet)"),
                        "repository readable"
                    );
                    ok.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(error = %crate::api::routes::redact(&e.to_string()), "repository not reachable")
                }
            }
        });
    }
    let mut state = AppState::new(writes, parts.task_runs);
    state.client = parts.client;
    state.namespace = parts.namespace;
    state.known_agents = parts.known_agents.map(Arc::new);
    if let Some(reports) = parts.reports {
        state.reports = reports;
    }
    if let Some(trigger) = parts.trigger {
        state.trigger = Arc::new(move || {
            trigger.request(TriggerReason::Api);
        });
    }
    // Notes live on the task repository (the notes writer pushes them there).
    let mut notes = NoteQuery::new(parts.repo);
    notes.branch = Some(parts.branch);
    notes.credentials = parts.credentials;
    state.notes = Some(notes);
    let source = source_ok.clone();
    state.readiness = parts
        .readiness
        .with("source", Arc::new(move || source.load(Ordering::Relaxed)));
    state.api_metrics = ApiMetrics::register(&parts.metrics);
    let metrics = parts.metrics;
    state.metrics = Arc::new(move || metrics.render());
    args.configure(state)
}

/// Whether `branch` of the local repository `repo` can be read (an unborn branch counts: the
/// sync waits for its first commit); the reason when not.
fn local_branch_readable(repo: &str, branch: &str) -> Result<(), String> {
    let path = local_repo_path(repo).ok_or_else(|| format!("{repo} is not a local path"))?;
    let repository = git2::Repository::open(&path)
        .map_err(|e| format!("opening {}: {}", path.display(), e.message()))?;
    match repository.find_reference(&format!("refs/heads/{branch}")) {
        Ok(reference) => reference
            .peel_to_commit()
            .map(|_| ())
            .map_err(|e| format!("reading branch {branch}: {}", e.message())),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(()),
        Err(e) => Err(format!("reading branch {branch}: {}", e.message())),
    }
}

fn open_writer(
    repo: &str,
    clone_dir: Option<&std::path::Path>,
    config: WriterConfig,
) -> Result<RepoWriter, crate::api::CommitError> {
    if let Some(local) = local_repo_path(repo).filter(|p| p.exists()) {
        return RepoWriter::open(&local, config);
    }
    let dir = clone_dir.map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "orchestrator-api-{}",
            crate::names::short_hash(repo, 12)
        ))
    });
    RepoWriter::for_remote(repo, &dir, config)
}

/// How often `/readyz`'s `cluster` check asks the API server for its version; an outage shows
/// within this (plus the same as the request's timeout).
pub(crate) const CLUSTER_PROBE_EVERY: Duration = Duration::from_secs(2);

/// Keeps `up` saying whether the API server answers, for `/readyz`'s `cluster` check: a
/// `GET /version` every [`CLUSTER_PROBE_EVERY`], a hung server counting as down.
pub(crate) async fn probe_cluster(client: kube::Client, up: Arc<AtomicBool>) {
    loop {
        let ok = tokio::time::timeout(CLUSTER_PROBE_EVERY, client.apiserver_version())
            .await
            .is_ok_and(|answer| answer.is_ok());
        up.store(ok, Ordering::Relaxed);
        tokio::time::sleep(CLUSTER_PROBE_EVERY).await;
    }
}
