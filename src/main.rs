//! The `orchestrator` binary: CLI wiring only.

use clap::{Parser, Subcommand};
use orchestrator::cluster::{ClusterChoice, ClusterInputs, choose_cluster};

#[derive(Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "GitOps for AI-agent tasks on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Extra CA certificates (PEM) to trust for https git remotes, besides the system's: a
    /// self-hosted Gitea or GitLab behind a private CA.
    #[arg(long, global = true, value_name = "FILE")]
    git_ca_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a task repository to start from: agents.yaml with local shell agents, one example
    /// task, a README of the folder rules and a first commit; overwrites nothing.
    Init(orchestrator::cli::init::InitArgs),
    /// Print the TaskRun CustomResourceDefinition as YAML.
    Crd,
    /// Run the TaskRun controller alone (ConfigMaps, Jobs, status, events, /metrics).
    Controller(orchestrator::cli::controller::ControllerArgs),
    /// Check task folders (a repository revision or a plain folder); non-zero exit on any error.
    Validate(orchestrator::cli::validate::ValidateArgs),
    /// Print the TaskRuns a repository revision describes (offline: no cluster needed).
    Plan(orchestrator::cli::plan::PlanArgs),
    /// Serve the HTTP API alone: submit tasks and add context as commits.
    Api(Box<orchestrator::cli::api::ApiCommand>),
    /// Run the whole loop: sync a repository's task folders onto a cluster (or the embedded
    /// one), run them with the controller, write notes; `--until-done` exits when all finished.
    Run(Box<orchestrator::cli::run::RunArgs>),
    /// Run the embedded Kubernetes API server on 127.0.0.1 and write a kubeconfig.
    Apiserver(orchestrator::cli::apiserver::ApiServerArgs),
    /// Print the sync and health of a commit from its git note; the exit code says the state.
    Status(orchestrator::cli::status::StatusArgs),
    /// Wait until a commit's note says Synced (and Healthy); the CI / pull-request check.
    Wait(orchestrator::cli::wait::WaitArgs),
    /// Remove what deploy/ installed: stop the controller, release the TaskRuns, delete the
    /// rest, the namespace and the CRD, leaving nothing Terminating.
    Uninstall(orchestrator::cli::uninstall::UninstallArgs),
    /// Print the agent's output of a task from the Pod log API (TASK: a task id or TaskRun name).
    Logs(orchestrator::cli::task_ops::LogsArgs),
    /// Run a finished task again, same content, as a new attempt (annotates the TaskRun).
    Retry(orchestrator::cli::task_ops::RetryArgs),
    /// Stop a task's running Job now (annotates the TaskRun; phase Failed, reason Cancelled).
    Cancel(orchestrator::cli::task_ops::CancelArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube-client logs every failed request at ERROR; the outage logs say it once.
            orchestrator::outage_log::log_filter(std::env::var("RUST_LOG").ok().as_deref()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: log files, CI output and `kubectl logs` get
        // plain text. NO_COLOR (no-color.org) turns them off everywhere.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let cli = Cli::parse();
    if let Command::Run(args) = &cli.command
        && !matches!(
            choose_cluster(&ClusterInputs::gather(&args.cluster)),
            ClusterChoice::Embedded(_)
        )
    {
        tune_malloc_for_sync();
    }
    bound_git_memory();
    if let Some(ca) = &cli.git_ca_file {
        anyhow::ensure!(
            ca.is_file(),
            "--git-ca-file {}: no such file; give a PEM file of CA certificates",
            ca.display()
        );
        // SAFETY: libgit2's global options may only change while no other thread uses
        // libgit2; no thread has been started yet.
        unsafe { git2::opts::set_ssl_cert_file(ca) }
            .map_err(|e| anyhow::anyhow!("--git-ca-file {}: {}", ca.display(), e.message()))?;
    }
    match cli.command {
        Command::Init(args) => orchestrator::cli::init::run(args),
        Command::Crd => {
            orchestrator::cli::output::print(&orchestrator::crd::task_run_crd_yaml())?;
            Ok(())
        }
        Command::Controller(args) => orchestrator::cli::controller::run(args),
        Command::Validate(args) => orchestrator::cli::validate::run(args),
        Command::Plan(args) => orchestrator::cli::plan::run(args),
        Command::Api(command) => orchestrator::cli::api::run(*command),
        Command::Run(args) => orchestrator::cli::run::run(*args),
        Command::Apiserver(args) => orchestrator::cli::apiserver::run(args),
        Command::Status(args) => orchestrator::cli::status::run(args),
        Command::Wait(args) => orchestrator::cli::wait::run(args),
        Command::Uninstall(args) => orchestrator::cli::uninstall::run(args),
        Command::Logs(args) => orchestrator::cli::task_ops::run_logs(args),
        Command::Retry(args) => orchestrator::cli::task_ops::run_retry(args),
        Command::Cancel(args) => orchestrator::cli::task_ops::run_cancel(args),
    }
}

/// How much of the git pack files libgit2 keeps mapped at once, and in windows of what size.
/// Its defaults (8 GiB in windows of 1 GiB) keep every pack page it ever read resident in the
/// process: `orchestrator run` reading the markdown of 100,000 tasks from a 50 MB pack held it
/// all as RSS. Bounded, the pages stay in the page cache, shared and reclaimable, not in ours.
const GIT_MAPPED_LIMIT: usize = 8 << 20;
const GIT_WINDOW_SIZE: usize = 1 << 20;

/// Sets [`GIT_MAPPED_LIMIT`] and [`GIT_WINDOW_SIZE`], and turns libgit2's object cache off: each
/// tree and blob is read once (our own cache, by tree id, is what re-reads hit), and with the
/// cache each folder-reading thread kept what it parsed until it ended (all of it with the
/// 256 MiB default, 8 MiB a handle when bounded). Called before any thread starts.
fn bound_git_memory() {
    // SAFETY: libgit2's global options may only change while no other thread uses libgit2; no
    // thread has been started yet.
    let set = unsafe {
        git2::opts::set_mwindow_size(GIT_WINDOW_SIZE)
            .and_then(|()| git2::opts::set_mwindow_mapped_limit(GIT_MAPPED_LIMIT))
    };
    git2::opts::enable_caching(false);
    if let Err(e) = set {
        tracing::warn!(error = %e, "could not bound libgit2's memory; it keeps its defaults");
    }
}

/// glibc's malloc gives threads arenas of their own (up to 8 per core), and memory freed in one
/// arena is not reused by the others: `orchestrator run` syncing 100,000 tasks held about
/// 100 MiB more with the default than with two (docs/performance.md, Sync memory). Only `run`
/// against a cluster: `orchestrator apiserver` with two served those 100,000 writes at about
/// half the speed, so a `run` that hosts the embedded server keeps glibc's default. A
/// `MALLOC_ARENA_MAX` in the environment wins.
///
/// Blocks of 256 KiB and more are mapped on their own and unmapped when freed. glibc's default
/// raises that threshold to the largest block freed so far, after which a re-sync's tables of
/// every task (the plan, the settlement, the report: megabytes each at 100,000 tasks) came from
/// the arenas and left them fragmented: RSS crept from 248 to 275 MiB in 40 s of re-syncs every
/// second, and to 359 MiB in ten minutes; with the fixed threshold it stays put. A
/// `MALLOC_MMAP_THRESHOLD_` in the environment wins. Called before any thread starts.
fn tune_malloc_for_sync() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 256 * 1024),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: no other thread exists yet, and mallopt only sets a parameter of malloc.
            unsafe { libc::mallopt(parameter, value) };
        }
    }
}
