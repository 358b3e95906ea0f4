//! The live half of `orchestrator plan`: flags and a snapshot in; the diff against the TaskRuns
//! of a reachable cluster out (`None` when no kubeconfig is configured).

use super::plan::{Output, PlanArgs};
use crate::cluster::{ClusterChoice, ClusterInputs, EmbeddedSettings, choose_cluster, connect};
use crate::desired::{KnownTaskRuns, SourceIdentity};
use crate::source::SourceSnapshot;
use crate::sync::apply::{SyncError, SyncOptions, Syncer};
use crate::sync::diff::{PlanDiff, plan_diff, render_markdown, render_table};
use anyhow::Context;
use std::time::Duration;

/// How long `plan` waits for a cluster before falling back to the offline plan.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The diff against the cluster the kubeconfig names; `Ok(None)` when there is none (never
/// the embedded server: it would be empty). A cluster without the TaskRun CRD has no TaskRuns.
pub fn live_diff(args: &PlanArgs, snapshot: &SourceSnapshot) -> anyhow::Result<Option<PlanDiff>> {
    let inputs = ClusterInputs::gather(&crate::cluster::ClusterArgs {
        kubeconfig: args.kubeconfig.clone(),
        ..Default::default()
    });
    let choice = choose_cluster(&inputs);
    if matches!(choice, ClusterChoice::Embedded(_)) {
        return Ok(None);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let identity = source_identity(args)?;
    let namespace = args.namespace.clone();
    runtime.block_on(async move {
        let work = async {
            let connected = connect(&choice, &EmbeddedSettings::default()).await?;
            let syncer = Syncer::new(
                connected.client.clone(),
                identity,
                SyncOptions::new(&namespace),
            );
            let mut statuses = std::collections::HashMap::new();
            let live = match syncer
                .list_live_and(|tr| {
                    if let (Some(name), Some(status)) = (&tr.metadata.name, &tr.status) {
                        statuses.insert(name.clone(), status.clone());
                    }
                })
                .await
            {
                Ok(live) => live,
                Err(SyncError::ListTaskRuns {
                    source: kube::Error::Api(status),
                    ..
                }) if status.code == 404 => KnownTaskRuns::new(),
                Err(e) => return Err(anyhow::Error::new(e)),
            };
            let plan = syncer.plan_against(snapshot, &live);
            anyhow::Ok(crate::sync::diff::with_live_outcomes(
                plan_diff(snapshot, &plan, &namespace),
                &statuses,
            ))
        };
        match tokio::time::timeout(LIVE_TIMEOUT, work).await {
            Ok(diff) => diff.map(Some),
            Err(_) => anyhow::bail!("the cluster did not answer within {LIVE_TIMEOUT:?}"),
        }
    })
}

/// The identity `orchestrator run` gives the same repository, so the diff prunes what `run`
/// would: any clone of it (a CI checkout of a pull request included) has the same identity.
fn source_identity(args: &PlanArgs) -> anyhow::Result<SourceIdentity> {
    let repo = args.source.repo.clone().unwrap_or_else(|| ".".into());
    super::source_identity::resolve_source_identity(
        &repo,
        &args.source.path,
        args.source_name.as_deref(),
    )
}

/// The diff in the requested format (YAML is the JSON document as YAML).
pub fn render(diff: &PlanDiff, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Table => render_table(diff),
        Output::Markdown => render_markdown(diff),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(diff)?),
        Output::Yaml => serde_norway::to_string(diff)?,
    })
}
