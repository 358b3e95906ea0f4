//! `orchestrator apiserver`: runs the embedded Kubernetes API server alone until Ctrl-C and
//! writes a kubeconfig for kubectl and other clients.

use crate::cluster::{ApiServer, ApiServerConfig};
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
    let kubeconfig = args.kubeconfig_out.unwrap_or_else(|| {
        args.data_dir
            .map(|d| d.join("kubeconfig"))
            .unwrap_or_else(|| PathBuf::from("kubeconfig"))
    });
    server.write_kubeconfig(&kubeconfig)?;
    eprintln!(
        "embedded API server on {}; kubeconfig written to {} (try: KUBECONFIG={} kubectl get ns)",
        server.url(),
        kubeconfig.display(),
        kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
