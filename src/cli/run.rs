//! `orchestrator run`: flags in; the whole loop out: git source → sync (→ controller → notes,
//! API) on one cluster until SIGINT/SIGTERM, or with `--until-done` until every task finished.

use crate::cli::api::{ApiParts, api_state};
use crate::cluster::{ClusterArgs, ClusterInputs, EmbeddedSettings, choose_cluster, connect};
use crate::controller::{AgentProfiles, ControllerConfig, ControllerMetrics, run_controller};
use crate::crd::TaskRun;
use crate::desired::{LiveTaskRuns, SourceIdentity};
use crate::leader::{LeaseConfig, spawn_election};
use crate::metrics::Metrics;
use crate::notes::metrics::NotesMetrics;
use crate::notes::writer::{NotesConfig, spawn_notes_writer};
use crate::source::credentials::{Credentials, remote_callbacks};
use crate::source::mirror::local_repo_path;
use crate::source::{GitSource, SourceConfig, watch_refs};
use crate::sync::apply::{DEFAULT_CONCURRENCY, SyncOptions, Syncer};
use crate::sync::crd_install::{CrdState, ensure_crd};
use crate::sync::metrics::SyncMetrics;
use crate::sync::report::{ReportReceiver, report_channel};
use crate::sync::run_loop::{LoopOutputs, LoopSettings, LoopState, run_sync_loop};
use crate::sync::trigger::sync_trigger;
use crate::sync::until_done::{all_applied, all_terminal, exit_code, status_table};
use anyhow::{Context, bail};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// The API calls `run` makes itself: the notes writer's TaskRun reflector and `--until-done`.
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: crate::names::GROUP,
    resource: "taskruns",
    verbs: &["list", "watch"],
}];

/// How long shutdown waits for the notes writer's last note and push.
const NOTES_FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The task repository: a local path, or an https, ssh or file:// URL.
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or ref to follow (default: HEAD, the checked-out or the remote's default).
    #[arg(long, default_value = "HEAD")]
    pub branch: String,
    /// Folder inside the repository that holds the task folders (default: the root).
    #[arg(long, default_value = "")]
    pub path: String,
    /// Poll and re-sync interval (`30s`, `1m`, `500ms`); every re-sync heals drift.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub interval: Duration,
    /// Namespace of the TaskRuns.
    #[arg(
        long,
        short = 'n',
        default_value = "default",
        env = "ORCHESTRATOR_NAMESPACE"
    )]
    pub namespace: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete TaskRuns of this source whose folder left Git (`--prune=false` keeps them).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub prune: bool,
    /// Do not create the TaskRun CRD when it is missing.
    #[arg(long)]
    pub skip_crd_install: bool,
    /// Exit once the sync converged and every task reached Succeeded or Failed; print a status
    /// table. Exit code 1 if a task Failed, 2 if the sync is not Synced (broken folder).
    #[arg(long)]
    pub until_done: bool,
    /// Agent profiles for the controller (default: `<repo>/<path>/agents.yaml` of a local
    /// repository, then ./agents.yaml). Without one the controller does not run.
    #[arg(long, env = "ORCHESTRATOR_AGENTS")]
    pub agents: Option<PathBuf>,
    /// Sync only: do not run the TaskRun controller in this process.
    #[arg(long)]
    pub no_controller: bool,
    /// Do not write git notes onto synced commits.
    #[arg(long)]
    pub no_notes: bool,
    /// Serve the HTTP API (submit tasks, add context, webhook, status, /metrics) beside the
    /// loop; its commits and webhooks trigger a sync at once.
    #[arg(long)]
    pub api: bool,
    #[command(flatten)]
    pub api_args: crate::cli::api::ApiArgs,
    /// Writes in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Where bare mirrors of remote repositories are kept.
    #[arg(long)]
    pub mirror_dir: Option<PathBuf>,
    #[command(flatten)]
    pub git: crate::cli::git_args::GitCredentialArgs,
    #[command(flatten)]
    pub leader: LeaderArgs,
}

/// Leader election, for two or more replicas against one cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Elect a leader on a coordination.k8s.io Lease: only the leader syncs, reconciles and
    /// writes notes. A leader that loses the lease exits (status 3) so it stops writing at once.
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the Lease (in --namespace).
    #[arg(long, default_value = "orchestrator-leader")]
    pub lease_name: String,
    /// How long a lease lasts without renewal; the holder renews every 2/15 of it and gives up
    /// after 2/3 of it without a renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,
}

impl LeaderArgs {
    fn lease_config(&self, namespace: &str) -> LeaseConfig {
        let identity = self.leader_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "orchestrator".into());
            format!("{host}-{}", std::process::id())
        });
        let mut config = LeaseConfig::new(namespace, &identity);
        config.name = self.lease_name.clone();
        config.lease_duration = self.lease_duration;
        config.renew_deadline = self.lease_duration * 2 / 3;
        config.retry_period = (self.lease_duration * 2 / 15).max(Duration::from_millis(100));
        config
    }
}

/// The exit status of a replica that lost its lease.
const EXIT_LOST_LEADERSHIP: i32 = 3;

/// `30s`, `1m`, `500ms`, `2h`, or plain seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 30s, 1m or 500ms"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(format!(
                "{raw:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if d.is_zero() {
        return Err("the interval must be larger than zero".into());
    }
    Ok(d)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let code = runtime.block_on(run_async(args))?;
    // Let spawned tasks (runner processes, notes pushes) see the runtime end before exiting.
    runtime.shutdown_timeout(Duration::from_secs(5));
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

async fn run_async(args: RunArgs) -> anyhow::Result<i32> {
    let credentials = args.git.load()?;
    let local_repo = local_repo_path(&args.repo)
        .map(|dir| {
            dir.canonicalize()
                .with_context(|| format!("--repo {}: no such directory", dir.display()))
        })
        .transpose()?;
    // A local repository is identified by its canonical path, so `--repo .` and an absolute
    // path own the same TaskRuns.
    let identity_repo = local_repo
        .as_ref()
        .map_or(args.repo.clone(), |p| p.display().to_string());
    let source_identity = SourceIdentity::new(&identity_repo, &args.path);
    let agents = load_agents(&args, local_repo.as_deref())?;

    let choice = choose_cluster(&ClusterInputs::gather(&args.cluster));
    let connected = connect(&choice, &EmbeddedSettings::from_args(&args.cluster))
        .await
        .context("connecting to the cluster")?;
    crate::cli::output::println(&format!(
        "orchestrator run: talking to {}",
        connected.description
    ))?;
    crate::cli::output::println(&format!(
        "orchestrator run: syncing {} (branch {}, path {:?}) into namespace {:?}, every {:?}",
        source_identity.repo, args.branch, args.path, args.namespace, args.interval
    ))?;
    let client = connected.client.clone();
    let result = run_connected(
        args,
        client,
        credentials,
        local_repo,
        source_identity,
        agents,
    )
    .await;
    connected.shutdown().await;
    result
}

fn load_agents(args: &RunArgs, local_repo: Option<&Path>) -> anyhow::Result<Option<AgentProfiles>> {
    if args.no_controller {
        return Ok(None);
    }
    if let Some(path) = &args.agents {
        return Ok(Some(AgentProfiles::load(path)?));
    }
    let candidates = local_repo
        .map(|repo| repo.join(args.path.trim_matches('/')).join("agents.yaml"))
        .into_iter()
        .chain(std::iter::once(PathBuf::from("agents.yaml")));
    for candidate in candidates {
        if candidate.is_file() {
            info!(agents = %candidate.display(), "agent profiles");
            return Ok(Some(AgentProfiles::load(&candidate)?));
        }
    }
    warn!("no agent profiles (--agents): TaskRuns are synced but no controller runs them");
    Ok(None)
}

async fn run_connected(
    args: RunArgs,
    client: Client,
    credentials: Credentials,
    local_repo: Option<PathBuf>,
    source_identity: SourceIdentity,
    agents: Option<AgentProfiles>,
) -> anyhow::Result<i32> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn({
        let tx = shutdown_tx.clone();
        async move {
            crate::cli::controller::shutdown_signal().await;
            let _ = tx.send(true);
        }
    });
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let metrics = Metrics::new();
    let sync_metrics = SyncMetrics::register(&metrics);
    let (reports_tx, reports_rx) = report_channel();
    // The notes writer sees every report, not just the latest (see `LoopOutputs`).
    let (notes_tx, notes_rx) = tokio::sync::mpsc::unbounded_channel();
    let (state_tx, state_rx) = watch::channel(None);
    let (trigger, requests) = sync_trigger();

    // A mirror of our own choosing is removed when this function returns (clean exit, Ctrl-C,
    // SIGTERM); one named with --mirror-dir is the user's and is kept for the next run.
    let (mirror_dir, _scratch_mirrors) = match &args.mirror_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let scratch = crate::scratch::ScratchDir::for_this_process("orchestrator-mirrors");
            (scratch.path().to_path_buf(), Some(scratch))
        }
    };
    let source_url = local_repo
        .as_ref()
        .map_or(args.repo.clone(), |p| p.display().to_string());
    let source = GitSource::new(SourceConfig {
        url: source_url,
        branch: args.branch.clone(),
        path: args.path.clone(),
        mirror_dir,
        interval: args.interval,
        credentials: credentials.clone(),
    });
    let ref_changes = Arc::new(Notify::new());
    let _ref_watch = match source.local_path() {
        Some(path) => match watch_refs(&path, ref_changes.clone()) {
            Ok(watch) => Some(watch),
            Err(e) => {
                warn!(error = %e, "cannot watch the repository's refs; polling only");
                None
            }
        },
        None => None,
    };
    let mirror_path = source.mirror_path();

    let mut options = SyncOptions::new(args.namespace.clone());
    options.prune = args.prune;
    options.concurrency = args.concurrency;
    let syncer = Syncer::new(client.clone(), source_identity, options);
    let agent_names = agents.as_ref().map(|a| a.names());

    // The election outlives the work: the lease is released only after every writer stopped.
    // It starts before the API so that a follower's readiness can say it follows.
    let (election_stop_tx, election_stop_rx) = watch::channel(false);
    let elected = args.leader.leader_elect.then(|| {
        let config = args.leader.lease_config(&args.namespace);
        let (leadership, handle) = spawn_election(
            client.clone(),
            config.clone(),
            shutdown(election_stop_rx.clone()),
        );
        (config, leadership, handle)
    });
    let follower = elected
        .as_ref()
        .map(|(_, leadership, _)| leadership.clone());

    // One TaskRun cache for the notes writer, the API and --until-done; followers serve reads
    // from it too.
    let mut cache_task = None;
    let store = (!args.no_notes || args.api || args.until_done).then(|| {
        let (store, writer) = reflector::store::<TaskRun>();
        let api = Api::<TaskRun>::namespaced(client.clone(), &args.namespace);
        cache_task = Some(tokio::spawn(
            reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff()
                .touched_objects()
                .for_each(|_| std::future::ready(())),
        ));
        store
    });

    let api_server = match (&store, args.api) {
        (Some(store), true) => {
            let parts = api_parts(ApiWiring {
                args: &args,
                local_repo: local_repo.as_deref(),
                credentials: &credentials,
                store: store.clone(),
                reports: reports_rx.clone(),
                trigger: trigger.clone(),
                metrics: metrics.clone(),
                agent_names,
                follower,
            })?;
            let state = api_state(&args.api_args, parts)?;
            let addr = args.api_args.addr;
            crate::cli::output::println(&format!(
                "orchestrator run: serving the API on http://{addr}"
            ))?;
            Some(tokio::spawn(crate::api::serve(
                addr,
                state,
                shutdown(shutdown_rx.clone()),
            )))
        }
        _ => None,
    };

    let mut election = None;
    if let Some((config, mut leadership, handle)) = elected {
        crate::cli::output::println(&format!(
            "orchestrator run: {} waits for the lease {}/{} before writing",
            config.identity, config.namespace, config.name
        ))?;
        tokio::select! {
            _ = leadership.acquired() => {}
            _ = shutdown(shutdown_rx.clone()) => return Ok(0),
        }
        crate::cli::output::println(&format!("orchestrator run: {} leads", config.identity))?;
        let on_loss = tokio::spawn(async move {
            leadership.lost().await;
            // Exiting is the one way to be sure that no task of this process writes again.
            eprintln!(
                "orchestrator run: {} lost the lease {}; exiting",
                config.identity, config.name
            );
            std::process::exit(EXIT_LOST_LEADERSHIP);
        });
        election = Some((handle, on_loss));
    }

    if args.skip_crd_install {
        info!("--skip-crd-install: not checking the TaskRun CRD");
    } else if ensure_crd(client.clone()).await? == CrdState::Installed {
        crate::cli::output::println("orchestrator run: installed the TaskRun CRD")?;
    }

    let sync_loop = tokio::spawn(run_sync_loop(
        source,
        syncer,
        requests,
        Some(ref_changes),
        LoopOutputs {
            reports: reports_tx,
            every_report: (!args.no_notes).then_some(notes_tx),
            state: state_tx,
            metrics: sync_metrics,
        },
        LoopSettings::new(args.interval),
        shutdown_rx.clone(),
    ));

    let controller = agents.map(|agents| {
        let controller_metrics = Arc::new(metrics.register_with(ControllerMetrics::register));
        let config = ControllerConfig::new(Some(args.namespace.clone()), agents);
        tokio::spawn(run_controller(
            client.clone(),
            config,
            controller_metrics,
            shutdown(shutdown_rx.clone()),
        ))
    });
    let running_controller = controller.is_some();

    let notes = match (&store, args.no_notes) {
        (Some(store), false) => {
            let mut config = NotesConfig::new(local_repo.clone().unwrap_or(mirror_path));
            if local_repo.is_none() {
                let credentials = credentials.clone();
                config.remote = Some(crate::notes::push::NotesRemote {
                    url: args.repo.clone(),
                    callbacks: Some(Arc::new(move || remote_callbacks(&credentials))),
                });
            }
            Some(spawn_notes_writer(
                config,
                tokio_stream::wrappers::UnboundedReceiverStream::new(notes_rx),
                Arc::new(store.clone()),
                metrics.register_with(NotesMetrics::register),
            ))
        }
        _ => None,
    };

    let code = match (&store, args.until_done) {
        (Some(store), true) => {
            let finished = wait_until_done(
                store,
                state_rx,
                reports_rx,
                running_controller,
                shutdown_rx.clone(),
            )
            .await?;
            match finished {
                Some((report, live)) => {
                    crate::cli::output::print(&status_table(&report, &live))?;
                    exit_code(&report, &live)
                }
                None => 130,
            }
        }
        _ => {
            shutdown(shutdown_rx.clone()).await;
            0
        }
    };

    let _ = shutdown_tx.send(true);
    let _ = sync_loop.await;
    if let Some(api_server) = api_server
        && let Ok(Err(e)) = api_server.await
    {
        warn!(error = %e, "the API server failed");
    }
    if let Some(controller) = controller {
        let _ = controller.await;
    }
    if let Some(notes) = notes {
        // The loop dropped its report sender, so the writer's stream has ended: it writes the
        // final state (and pushes it once) and stops.
        notes.wake();
        if tokio::time::timeout(NOTES_FLUSH_TIMEOUT, notes.join())
            .await
            .is_err()
        {
            warn!("the notes writer did not finish within {NOTES_FLUSH_TIMEOUT:?}; stopping it");
        }
    }
    drop(trigger);
    // Stopped before the cluster connection closes, so that it does not log the closed
    // connection and its reconnect attempts as errors.
    if let Some(cache_task) = cache_task {
        cache_task.abort();
        let _ = cache_task.await;
    }
    if let Some((handle, on_loss)) = election {
        on_loss.abort();
        let _ = election_stop_tx.send(true);
        let _ = handle.await;
    }
    Ok(code)
}

/// The TaskRuns of a reflector cache by name.
fn cached(store: &reflector::Store<TaskRun>) -> LiveTaskRuns {
    store
        .state()
        .into_iter()
        .filter_map(|tr| Some((tr.metadata.name.clone()?, (*tr).clone())))
        .collect()
}

struct ApiWiring<'a> {
    args: &'a RunArgs,
    local_repo: Option<&'a Path>,
    credentials: &'a Credentials,
    store: reflector::Store<TaskRun>,
    reports: ReportReceiver,
    trigger: crate::sync::trigger::SyncTrigger,
    metrics: Metrics,
    agent_names: Option<Vec<String>>,
    /// With `--leader-elect`: a follower is ready without a sync of its own.
    follower: Option<crate::leader::Leadership>,
}

/// What the API shares with this loop: the same repository and branch, the latest report, the
/// manual trigger, the metrics registry, and a readiness check that the first sync finished.
fn api_parts(w: ApiWiring<'_>) -> anyhow::Result<ApiParts> {
    use crate::api::Readiness;
    let branch = match (w.args.branch.as_str(), w.local_repo) {
        ("HEAD", Some(dir)) => git2::Repository::open(dir)
            .ok()
            .and_then(|r| r.head().ok()?.shorthand().ok().map(String::from))
            .context("--api needs a branch to commit to: check out a branch or pass --branch")?,
        ("HEAD", None) => {
            bail!("--api with a remote --repo needs --branch (the branch to commit to)")
        }
        (branch, _) => branch.to_string(),
    };
    let reports = w.reports.clone();
    let readiness = Readiness::default()
        .with(
            "sync",
            Arc::new(move || {
                let following = w.follower.as_ref().is_some_and(|l| !l.is_leader());
                following || reports.borrow().is_some()
            }),
        )
        .with_store_synced("caches", &w.store);
    Ok(ApiParts {
        repo: w.args.repo.clone(),
        branch,
        path: w.args.path.clone(),
        namespace: w.args.namespace.clone(),
        credentials: w.credentials.clone(),
        known_agents: w.agent_names,
        task_runs: w.store,
        reports: Some(w.reports),
        trigger: Some(w.trigger),
        metrics: w.metrics,
        readiness,
        clone_dir: None,
    })
}

/// Waits until the loop converged and (with a controller) every task is terminal; `None` when
/// a shutdown signal came first.
/// Waits until the loop converged and the TaskRun cache shows every task of its report (and,
/// with a controller, every task terminal); `None` when a shutdown signal came first. The cache
/// is the one the notes writer reads, so its last note is the final state too.
async fn wait_until_done(
    store: &reflector::Store<TaskRun>,
    mut state: watch::Receiver<Option<LoopState>>,
    reports: ReportReceiver,
    running_controller: bool,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<(crate::sync::report::SyncReport, LiveTaskRuns)>> {
    loop {
        tokio::select! {
            changed = state.wait_for(|s| s.as_ref().is_some_and(|s| s.converged)) => {
                if changed.is_err() {
                    bail!("the sync loop stopped before it converged");
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return Ok(None),
        }
        let Some(report) = reports.borrow().clone() else {
            continue;
        };
        let live = cached(store);
        if all_applied(&report, &live) && (!running_controller || all_terminal(&report, &live)) {
            return Ok(Some((report, live)));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (raw, want) in [
            ("1m", Some(Duration::from_secs(60))),
            ("30s", Some(Duration::from_secs(30))),
            ("45", Some(Duration::from_secs(45))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2h", Some(Duration::from_secs(7200))),
            ("0s", None),
            ("1d", None),
            ("m", None),
        ] {
            assert_eq!(parse_duration(raw).ok(), want, "{raw}");
        }
    }
}
