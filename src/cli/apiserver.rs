//! `orchestrator apiserver`: runs the embedded Kubernetes API server alone until Ctrl-C or SIGTERM, and
//! writes a kubeconfig for kubectl and other clients; with `--runner`, the local Job runner
//! beside it.

use crate::cluster::{ApiServer, ApiServerConfig, EmbeddedSettings, export_line};
use crate::cluster::{JobRunner, RunnerConfig};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ApiServerArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Keep objects, certificates and the token here (SQLite); without it, state is in memory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where to write the kubeconfig (default: <data-dir>/kubeconfig, or ./kubeconfig).
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
    /// Also run the local Job runner: Jobs created on this server run as local processes.
    #[arg(long)]
    pub runner: bool,
    /// Where the runner writes each Job's log (default: <data-dir>/logs, or a directory under
    /// the system temp dir).
    #[arg(long, value_name = "DIR", requires = "runner")]
    pub runner_log_dir: Option<PathBuf>,
}

pub fn run(args: ApiServerArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: ApiServerArgs) -> anyhow::Result<()> {
    let server = ApiServer::start(ApiServerConfig {
        port: args.port,
        data_dir: args.data_dir.clone(),
        ..ApiServerConfig::default()
    })
    .await?;
    // Before anything is announced or made that a stop must clean up.
    let stop = crate::cli::shutdown::signal();
    let kubeconfig = args.kubeconfig_out.clone().unwrap_or_else(|| {
        args.data_dir
            .as_ref()
            .map(|d| d.join("kubeconfig"))
            .unwrap_or_else(|| PathBuf::from("kubeconfig"))
    });
    server.write_kubeconfig(&kubeconfig)?;
    let runner = if args.runner {
        let (log_dir, scratch_logs) = EmbeddedSettings {
            data_dir: args.data_dir.clone(),
            log_dir: args.runner_log_dir.clone(),
            ..EmbeddedSettings::default()
        }
        .log_dir();
        std::fs::create_dir_all(&log_dir).with_context(|| {
            format!(
                "creating the Job log directory {}; pass --runner-log-dir",
                log_dir.display()
            )
        })?;
        eprintln!(
            "local Job runner: Jobs run as local processes, logs in {}",
            log_dir.display()
        );
        let client = server.client();
        // Announced before the kubeconfig line, so that a `run` started right after it sees
        // the runner.
        crate::cluster::runner_heartbeat::renew(&client).await;
        // The scratch log directory (if this process chose it) lives as long as the runner.
        Some((
            JobRunner::start(client, RunnerConfig::new(&log_dir)),
            scratch_logs,
        ))
    } else {
        eprintln!("no local Job runner (--runner): Jobs created here will not run");
        None
    };
    eprintln!(
        "embedded API server on {}; kubeconfig written to {}",
        server.url(),
        kubeconfig.display(),
    );
    println!("{}", export_line(&kubeconfig));
    stop.await;
    eprintln!("stopping the embedded API server");
    if let Some((runner, _scratch_logs)) = runner {
        runner.shutdown().await;
    }
    server.shutdown().await;
    Ok(())
}
