//! `orchestrator uninstall`: flags in; what deploy/ installed removed, with one progress line
//! per step, and nothing left Terminating (see [`crate::uninstall`]).

use crate::cli::run::parse_duration;
use crate::cluster::{
    ClusterArgs, ClusterChoice, ClusterInputs, EmbeddedSettings, choose_cluster, connect,
};
use crate::uninstall::{UninstallOptions, uninstall};
use anyhow::{Context, bail};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct UninstallArgs {
    /// The namespace deploy/ installed into.
    #[arg(long, short = 'n', default_value = "orchestrator")]
    pub namespace: String,
    /// Keep the TaskRun CustomResourceDefinition (and so the TaskRuns of other namespaces).
    #[arg(long)]
    pub keep_crd: bool,
    /// The Lease a running controller holds (`run --lease-name`).
    #[arg(long, default_value = "orchestrator-leader")]
    pub lease_name: String,
    /// How long a running controller gets to release the TaskRuns before this command
    /// releases them itself.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub release_timeout: Duration,
    /// How long each other wait may last (pods to stop, the namespace and the CRD to go).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: UninstallArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run_async(args))
}

async fn run_async(args: UninstallArgs) -> anyhow::Result<()> {
    let choice = choose_cluster(&ClusterInputs::gather(&args.cluster));
    if let ClusterChoice::Embedded(_) = choice {
        bail!(
            "orchestrator uninstall needs a cluster (KUBECONFIG, --kubeconfig or the in-cluster \
             config); a fresh embedded server holds nothing to uninstall"
        );
    }
    let connected = connect(&choice, &EmbeddedSettings::from_args(&args.cluster))
        .await
        .context("connecting to the cluster")?;
    println!(
        "orchestrator uninstall: talking to {}",
        connected.description
    );
    let options = UninstallOptions {
        namespace: args.namespace.clone(),
        keep_crd: args.keep_crd,
        lease_name: args.lease_name.clone(),
        release_timeout: args.release_timeout,
        timeout: args.timeout,
    };
    let started = std::time::Instant::now();
    let result = uninstall(connected.client.clone(), &options, &mut |line| {
        println!("orchestrator uninstall: {line}")
    })
    .await;
    connected.shutdown().await;
    result.with_context(|| {
        format!(
            "uninstalling orchestrator from namespace {}",
            args.namespace
        )
    })?;
    println!(
        "orchestrator uninstall: done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
