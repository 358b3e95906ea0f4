//! `orchestrator controller`: flags in, the TaskRun controller running alone (with /metrics) out.

use crate::cluster::{ClusterArgs, ClusterInputs, EmbeddedSettings, choose_cluster, connect};
use crate::controller::metrics::{OPENMETRICS_CONTENT_TYPE, encode_openmetrics};
use crate::controller::{AgentProfiles, ControllerConfig, ControllerMetrics, run_controller};
use anyhow::Context as _;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Namespace whose TaskRuns to reconcile; all namespaces when left out.
    #[arg(long, short = 'n', env = "ORCHESTRATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Agent profiles file (see deploy/agents.yaml).
    #[arg(long, env = "ORCHESTRATOR_AGENTS", default_value = "agents.yaml")]
    pub agents: PathBuf,
    /// Where /metrics is served (OpenMetrics text).
    #[arg(
        long,
        env = "ORCHESTRATOR_METRICS_ADDR",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_addr: SocketAddr,
    /// Reconciles that may run at once (also the bound on requests in flight: kube-rs has no
    /// client-side rate limit).
    #[arg(long, default_value_t = crate::controller::DEFAULT_CONCURRENCY)]
    pub concurrency: u16,
    /// Jobs that may run at once over all agents (each agent profile's maxConcurrent caps its
    /// own). Over the limit a TaskRun waits, Pending with reason Queued, and gets no Job.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_running: Option<u32>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: ControllerArgs) -> anyhow::Result<()> {
    // Installed before anything else, so that a SIGTERM during start-up is not the default kill.
    let stop = crate::cli::shutdown::signal_logged(
        "shutdown signal received; finishing running reconciles",
    );
    let agents = AgentProfiles::load(&args.agents)?;
    let choice = choose_cluster(&ClusterInputs::gather(&args.cluster));
    let connected = connect(&choice, &EmbeddedSettings::from_args(&args.cluster)).await?;
    tracing::info!("using {}", connected.description);
    if let Some(line) = connected.export_line() {
        println!("{line}");
    }
    let client = connected.client.clone();
    if connected.embedded.is_some() {
        // A fresh embedded server knows no TaskRuns yet; a real cluster gets the CRD from deploy/.
        crate::sync::crd_install::ensure_crd(client.clone()).await?;
        if let Some(ns) = &args.namespace {
            ensure_namespace(&client, ns).await?;
        }
    }
    // The same names as `orchestrator run` serves (`orchestrator_taskrun_total`).
    let mut registry = Registry::with_prefix(crate::metrics::METRIC_PREFIX);
    let metrics = Arc::new(ControllerMetrics::register(&mut registry));
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for /metrics; pick another --metrics-addr",
                args.metrics_addr
            )
        })?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
                    encode_openmetrics(&registry),
                )
            }
        }),
    );
    let server = tokio::spawn(crate::http_serve::serve(
        listener,
        app,
        crate::http_serve::DEFAULT_HEADER_READ_TIMEOUT,
        std::future::pending(),
    ));
    let mut config = ControllerConfig::new(args.namespace, agents);
    config.concurrency = args.concurrency;
    config.max_running = args.max_running;
    run_controller(client, config, metrics, stop).await;
    server.abort();
    connected.shutdown().await;
    Ok(())
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.to_string());
        api.create(&kube::api::PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name} on the embedded server"))?;
    }
    Ok(())
}
