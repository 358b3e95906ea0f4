//! `orchestrator run`: flags in; the whole loop out: git source → sync (→ controller → notes,
//! API) on one cluster until SIGINT/SIGTERM, or with `--until-done` until every task finished.

use crate::cli::agent_check::default_agents_file;
use crate::cli::agent_sources::{self, AgentSource};
use crate::cli::api::{ApiParts, api_state};
use crate::cli::run_checks::{
    Finished, Runner, Verdict, bind_api, branch_to_follow, first_fetch, wait_until_done,
};
use crate::cli::source_identity::resolve_source_identity;
use crate::cluster::{ClusterArgs, ClusterInputs, EmbeddedSettings, choose_cluster, connect};
use crate::controller::profiles::LiveProfiles;
use crate::controller::{AgentProfiles, ControllerConfig, ControllerMetrics, run_controller};
use crate::crd::TaskRun;
use crate::desired::SourceIdentity;
use crate::leader::{LeaseConfig, spawn_election};
use crate::metrics::Metrics;
use crate::notes::metrics::NotesMetrics;
use crate::notes::writer::{NotesConfig, spawn_notes_writer};
use crate::source::credentials::{Credentials, remote_callbacks};
use crate::source::mirror::local_repo_path;
use crate::source::{GitSource, SourceConfig, watch_refs};
use crate::sync::apply::{DEFAULT_CONCURRENCY, SyncOptions, Syncer};
use crate::sync::crd_install::{CrdCheck, CrdState, check_crd, ensure_crd};
use crate::sync::metrics::SyncMetrics;
use crate::sync::report::{ReportReceiver, report_channel};
use crate::sync::run_loop::{LoopOutputs, LoopSettings, run_sync_loop};
use crate::sync::trigger::sync_trigger;
use crate::sync::until_done::{FAILED_LOG_LINES, exit_code, failed_task_runs, status_table};
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
#[command(after_help = crate::cli::run_checks::EXIT_CODES_HELP)]
pub struct RunArgs {
    /// The task repository: a local path, or an https, ssh or file:// URL.
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or ref to follow (default: the branch checked out in a local repository when
    /// the loop starts, which a later `git checkout` does not change; a URL's default branch).
    /// `--branch HEAD` follows whatever is checked out.
    #[arg(long)]
    pub branch: Option<String>,
    /// Names this source in the ownership mark of its TaskRuns, instead of the repository's
    /// normalised origin URL and --path (which every clone shares).
    #[arg(long, env = "ORCHESTRATOR_SOURCE_NAME")]
    pub source_name: Option<String>,
    /// The environment whose git note this loop writes: `default` writes
    /// refs/notes/orchestrator, any other NAME refs/notes/orchestrator-NAME, so two clusters
    /// syncing one repository both annotate each commit.
    #[arg(long, default_value = crate::notes::DEFAULT_ENVIRONMENT, env = "ORCHESTRATOR_ENVIRONMENT")]
    pub environment: String,
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
    /// table. Exit code 1 if a task Failed, 2 if the sync is not Synced (broken folder) or the
    /// repository cannot be read, 4 if nothing would run the tasks (see the exit codes below).
    #[arg(long)]
    pub until_done: bool,
    /// Agent profiles file for the controller, reloaded when it changes (default:
    /// `<repo>/<path>/agents.yaml` of a local repository, then ./agents.yaml). Without profiles
    /// the controller does not run.
    #[arg(long, env = "ORCHESTRATOR_AGENTS", conflicts_with_all = ["agents_configmap", "agents_from_repo"])]
    pub agents: Option<PathBuf>,
    /// Agent profiles from this ConfigMap (key agents.yaml) in --namespace, watched: an edit
    /// takes effect without a restart.
    #[arg(long, value_name = "NAME", conflicts_with = "agents_from_repo")]
    pub agents_configmap: Option<String>,
    /// Agent profiles from this file of the synced revision (read from the same commit as the
    /// tasks), for teams that review agent changes in pull requests too.
    #[arg(long, value_name = "PATH")]
    pub agents_from_repo: Option<String>,
    /// Sync only: do not run the TaskRun controller in this process.
    #[arg(long)]
    pub no_controller: bool,
    /// With --no-controller and --until-done: how long to wait for a controller elsewhere to
    /// pick up the TaskRuns before exiting 4.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub controller_wait: Duration,
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
    /// Jobs that may run at once over all agents (each agent profile's maxConcurrent caps its
    /// own). Over the limit a TaskRun waits, Pending with reason Queued, and gets no Job.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_running: Option<u32>,
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

async fn run_async(mut args: RunArgs) -> anyhow::Result<i32> {
    // Installed first: a SIGTERM during start-up stops `run` cleanly (temporary directories
    // removed, exit 0) once it is up, rather than killing it by the default action.
    let stop_signal = crate::cli::shutdown::signal_logged(
        "shutdown signal received; finishing running reconciles and the last note",
    );
    let credentials = args.git.load()?;
    let local_repo = local_repo_path(&args.repo)
        .map(|dir| {
            dir.canonicalize()
                .with_context(|| format!("--repo {}: no such directory", dir.display()))
        })
        .transpose()?;
    let source_identity =
        resolve_source_identity(&args.repo, &args.path, args.source_name.as_deref())?;
    let notes_ref = crate::notes::notes_ref_for(&args.environment).map_err(anyhow::Error::msg)?;
    args.branch = Some(branch_to_follow(
        args.branch.as_deref(),
        local_repo.as_deref(),
    )?);
    let agents = agent_source(&args, local_repo.as_deref());
    if args.until_done && !args.no_controller && agents.is_none() {
        eprintln!(
            "Error: --until-done: no agent profiles, so nothing would run the tasks; give --agents FILE, --agents-configmap NAME, or --agents-from-repo PATH (an agents.yaml committed to the repository is read only with that flag), or pass --no-controller when a controller elsewhere runs them"
        );
        return Ok(crate::sync::until_done::EXIT_NOT_RUNNABLE);
    }

    let choice = choose_cluster(&ClusterInputs::gather(&args.cluster));
    let connected = connect(&choice, &EmbeddedSettings::from_args(&args.cluster))
        .await
        .context("connecting to the cluster")?;
    println!("orchestrator run: talking to {}", connected.description);
    let branch = args.branch.as_deref().unwrap_or("HEAD");
    if let Some(line) = connected.export_line() {
        println!("orchestrator run: kubectl can reach it with:\n{line}");
    }
    if let Some(warning) = connected.missing_runner_warning().await {
        warn!("{warning}");
        eprintln!("orchestrator run: warning: {warning}");
    }
    println!(
        "orchestrator run: syncing {} (branch {}{}) into namespace {:?}, every {:?}; notes on {notes_ref}",
        source_identity.display(),
        branch,
        if branch == "HEAD" {
            ", following HEAD"
        } else {
            ", a later checkout does not move it"
        },
        args.namespace,
        args.interval
    );
    let client = connected.client.clone();
    let resolved = Resolved {
        credentials,
        local_repo,
        source_identity,
        agents,
        notes_ref,
    };
    let result = run_connected(stop_signal, args, client, resolved).await;
    connected.shutdown().await;
    result
}

/// The one source of the agent profiles; `None` runs no controller.
fn agent_source(args: &RunArgs, local_repo: Option<&Path>) -> Option<AgentSource> {
    if args.no_controller {
        return None;
    }
    if let Some(name) = &args.agents_configmap {
        return Some(AgentSource::ConfigMap(name.clone()));
    }
    if let Some(path) = &args.agents_from_repo {
        return Some(AgentSource::Repo(path.clone()));
    }
    if let Some(path) = args
        .agents
        .clone()
        .or_else(|| default_agents_file(local_repo, &args.path))
    {
        return Some(AgentSource::File(path));
    }
    warn!("no agent profiles (--agents): TaskRuns are synced but no controller runs them");
    None
}

/// What start-up resolved from the flags before connecting.
struct Resolved {
    credentials: Credentials,
    local_repo: Option<PathBuf>,
    source_identity: SourceIdentity,
    agents: Option<AgentSource>,
    notes_ref: String,
}

async fn run_connected(
    stop_signal: impl Future<Output = ()> + Send + 'static,
    args: RunArgs,
    client: Client,
    resolved: Resolved,
) -> anyhow::Result<i32> {
    let Resolved {
        credentials,
        local_repo,
        source_identity,
        agents,
        notes_ref,
    } = resolved;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn({
        let tx = shutdown_tx.clone();
        async move {
            stop_signal.await;
            let _ = tx.send(true);
        }
    });
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Bound first, so a port in use fails `run` before any fetch or write.
    let mut api_listener = match args.api {
        true => Some(bind_api(args.api_args.addr).await?),
        false => None,
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
        branch: args.branch.clone().unwrap_or_else(|| "HEAD".into()),
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
    let mut source = source;
    if let Err(e) = first_fetch(&mut source).await
        && args.until_done
    {
        // The message `validate` gives for the same repository, and no endless retry.
        eprintln!("Error: {e}");
        return Ok(crate::sync::until_done::EXIT_SOURCE_ERROR);
    }
    let mirror_path = source.mirror_path();
    let revision_repo = local_repo.clone().unwrap_or_else(|| mirror_path.clone());
    let mut _profiles_file_watch = None;
    let agents = match agents {
        None => None,
        Some(AgentSource::File(path)) => {
            let (live, watch) = agent_sources::watch_file(&path)?;
            _profiles_file_watch = Some(watch);
            Some(live)
        }
        Some(AgentSource::ConfigMap(name)) => {
            let live = agent_sources::load_configmap(&client, &args.namespace, &name).await?;
            tokio::spawn(agent_sources::follow_configmap(
                client.clone(),
                args.namespace.clone(),
                name,
                live.clone(),
                shutdown_rx.clone(),
            ));
            Some(live)
        }
        Some(AgentSource::Repo(path)) => {
            let Some(snapshot) = source.last_good() else {
                bail!(
                    "--agents-from-repo {path}: the first fetch failed, so there is no revision to read the agent profiles from"
                );
            };
            let commit = snapshot.revision.commit.clone();
            let (_, text) = agent_sources::read_at_revision(&revision_repo, &commit, &path)
                .map_err(|e| anyhow::anyhow!("--agents-from-repo: {e}"))?;
            let origin = format!("{path} at {}", snapshot.revision);
            let live = LiveProfiles::new(AgentProfiles::parse(&text, &origin)?, origin);
            tokio::spawn(agent_sources::follow_repo(
                revision_repo.clone(),
                path,
                reports_rx.clone(),
                live.clone(),
                shutdown_rx.clone(),
            ));
            Some(live)
        }
    };

    let mut options = SyncOptions::new(args.namespace.clone());
    options.prune = args.prune;
    options.concurrency = args.concurrency;
    options.finalizer = agents.is_some();
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
    // from it too. It keeps what they read, not the markdown (see `keep_what_run_reads`).
    let mut cache_task = None;
    let store = (!args.no_notes || args.api || args.until_done).then(|| {
        let (store, writer) = reflector::store::<TaskRun>();
        let api = Api::<TaskRun>::namespaced(client.clone(), &args.namespace);
        let task_runs = watcher(api, watcher::Config::default()).modify(keep_what_run_reads);
        cache_task = Some(tokio::spawn(
            reflector(writer, task_runs)
                .backoff(crate::watch_backoff::watch_backoff())
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
                agent_names: agent_names.clone(),
                profiles: agents.clone(),
                follower,
                client: client.clone(),
            })?;
            let state = api_state(&args.api_args, parts)?;
            let listener = api_listener
                .take()
                .context("the API's listener was bound at start")?;
            let addr = listener.local_addr().unwrap_or(args.api_args.addr);
            println!("orchestrator run: serving the API on http://{addr}");
            Some(tokio::spawn(crate::api::serve_on(
                listener,
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

    prepare_task_run_crd(client.clone(), args.skip_crd_install).await?;

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

    let live_profiles = agents.clone();
    let notes_profiles = agents.clone();
    let controller = agents.map(|agents| {
        let controller_metrics = Arc::new(metrics.register_with(ControllerMetrics::register));
        let mut config = ControllerConfig::with_live_profiles(Some(args.namespace.clone()), agents);
        config.max_running = args.max_running;
        tokio::spawn(run_controller(
            client.clone(),
            config,
            controller_metrics,
            shutdown(shutdown_rx.clone()),
        ))
    });
    let controller_wait = args.controller_wait;
    let runner = move || match &live_profiles {
        Some(profiles) => Runner::InProcess {
            agents: profiles.names(),
        },
        None => Runner::Elsewhere {
            wait: controller_wait,
        },
    };

    let notes = match (&store, args.no_notes) {
        (Some(store), false) => {
            let mut config = NotesConfig::new(local_repo.clone().unwrap_or(mirror_path));
            config.notes_ref = notes_ref.clone();
            if local_repo.is_none() {
                let credentials = credentials.clone();
                config.remote = Some(crate::notes::push::NotesRemote {
                    url: args.repo.clone(),
                    callbacks: Some(Arc::new(move || remote_callbacks(&credentials))),
                });
            }
            Some(spawn_notes_writer(
                config,
                tokio_stream::wrappers::UnboundedReceiverStream::new(notes_rx).map(move |r| {
                    let problem = notes_profiles.as_ref().and_then(LiveProfiles::problem);
                    agent_sources::note_profiles_problem(r, problem)
                }),
                Arc::new(store.clone()),
                metrics.register_with(NotesMetrics::register),
            ))
        }
        _ => None,
    };

    let code = match (&store, args.until_done) {
        (Some(store), true) => {
            let finished =
                wait_until_done(store, state_rx, reports_rx, runner, shutdown_rx.clone()).await?;
            match finished {
                Finished::Done(done) => {
                    let (report, live) = *done;
                    print!("{}", status_table(&report, &live));
                    for tr in failed_task_runs(&report, &live) {
                        let name = tr.metadata.name.clone().unwrap_or_default();
                        match crate::cli::task_ops::log_tail(
                            &client,
                            &args.namespace,
                            tr,
                            FAILED_LOG_LINES,
                        )
                        .await
                        {
                            Ok(tail) => {
                                println!(
                                    "\n--- {name} Failed: the last {FAILED_LOG_LINES} lines of its log ---"
                                );
                                print!("{tail}");
                                if !tail.is_empty() && !tail.ends_with('\n') {
                                    println!();
                                }
                            }
                            Err(why) => println!("\n--- {name} Failed: no log to show ({why}) ---"),
                        }
                    }
                    exit_code(&report, &live)
                }
                Finished::Stopped(verdict) => {
                    report_stop(&verdict, args.controller_wait);
                    crate::sync::until_done::EXIT_NOT_RUNNABLE
                }
                Finished::Interrupted => 130,
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

/// What `run`'s TaskRun cache keeps of a TaskRun: all that its readers use (the notes writer:
/// status and context version; the API: metadata, spec and the markdown files' names;
/// `--until-done`: status, spec and metadata), without the markdown's content and the
/// managedFields, most of a TaskRun's bytes. The sync holds no markdown between writes (the
/// snapshot leaves it in git); this cache would otherwise hold every task's.
pub fn keep_what_run_reads(task_run: &mut TaskRun) {
    task_run.metadata.managed_fields = None;
    for file in &mut task_run.spec.markdown_files {
        file.content = String::new();
    }
}

/// Says why `--until-done` stopped before the tasks finished.
fn report_stop(verdict: &Verdict, controller_wait: Duration) {
    match verdict {
        Verdict::MissingProfiles(missing) => {
            eprintln!(
                "Error: --until-done: these tasks can never run, their agent has no profile:"
            );
            for line in missing {
                eprintln!("  {line}");
            }
        }
        Verdict::NoController => eprintln!(
            "Error: --until-done --no-controller: no controller picked up the TaskRuns within {controller_wait:?}; run `orchestrator controller` against this cluster, or drop --no-controller"
        ),
        Verdict::Wait | Verdict::Done => {}
    }
}

/// The TaskRun CRD at start: installed, or upgraded when the cluster's is older; with
/// `--skip-crd-install` only checked, and a missing or older one refuses the start.
async fn prepare_task_run_crd(client: Client, skip_install: bool) -> anyhow::Result<()> {
    if skip_install {
        if check_crd(client).await? == CrdCheck::UpToDate {
            info!("--skip-crd-install: the cluster's TaskRun CRD is up to date");
        }
        return Ok(());
    }
    match ensure_crd(client).await? {
        CrdState::Installed => println!("orchestrator run: installed the TaskRun CRD"),
        CrdState::Upgraded => println!("orchestrator run: upgraded the TaskRun CRD"),
        CrdState::AlreadyInstalled => {}
    }
    Ok(())
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
    /// The profiles in use: readiness reports a new version that is invalid.
    profiles: Option<LiveProfiles>,
    /// With `--leader-elect`: a follower is ready without a sync of its own.
    follower: Option<crate::leader::Leadership>,
    client: Client,
}

/// What the API shares with this loop: the same repository and branch, the latest report, the
/// manual trigger, the metrics registry, and a readiness check that the first sync finished.
fn api_parts(w: ApiWiring<'_>) -> anyhow::Result<ApiParts> {
    use crate::api::Readiness;
    let branch = match (w.args.branch.as_deref().unwrap_or("HEAD"), w.local_repo) {
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
    // An API server outage makes the process unready until the server answers again.
    let cluster_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(crate::cli::api::probe_cluster(
        w.client.clone(),
        cluster_up.clone(),
    ));
    let readiness = Readiness::default()
        .with(
            "cluster",
            Arc::new(move || cluster_up.load(std::sync::atomic::Ordering::Relaxed)),
        )
        .with(
            "sync",
            Arc::new(move || {
                let following = w.follower.as_ref().is_some_and(|l| !l.is_leader());
                following || reports.borrow().is_some()
            }),
        )
        .with_store_synced("caches", &w.store);
    let readiness = match w.profiles.clone() {
        Some(profiles) => readiness.with("agents", Arc::new(move || profiles.problem().is_none())),
        None => readiness,
    };
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
        client: Some(w.client),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_markdown_files_names_not_their_content() {
        use crate::crd::{MarkdownFile, TaskRunSpec};
        let spec = TaskRunSpec {
            task_id: 7,
            service_name: "web".into(),
            agent_name: "claude-code".into(),
            context_version: 2,
            content_digest: "sha256:00".into(),
            source_path: "tasks/7-x".into(),
            suspend: false,
            priority: 0,
            markdown_files: vec![MarkdownFile {
                filename: "prompt.md".into(),
                content: "x".repeat(4096),
            }],
        };
        let mut tr = TaskRun::new("task-7", spec);
        tr.metadata.managed_fields = Some(vec![Default::default()]);
        let mut kept = tr.clone();
        keep_what_run_reads(&mut kept);
        assert_eq!(kept.spec.markdown_files[0].filename, "prompt.md");
        assert_eq!(kept.spec.markdown_files[0].content, "");
        assert_eq!(kept.metadata.managed_fields, None);
        tr.spec.markdown_files[0].content.clear();
        tr.metadata.managed_fields = None;
        assert_eq!(kept, tr, "everything else is kept as it was");
    }

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
