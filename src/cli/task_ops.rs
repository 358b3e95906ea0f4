//! `orchestrator logs|retry|cancel TASK`: a task id or TaskRun name and a cluster in; the
//! agent's log (from the Pod log API), or a retry/cancel annotation on the TaskRun, out.

use crate::cluster::{ClusterChoice, ClusterInputs, EmbeddedSettings, choose_cluster, connect};
use crate::controller::children::CONTAINER_NAME;
use crate::controller::lifecycle::latest_pod;
use crate::crd::TaskRun;
use crate::names;
use crate::operate::{
    FIELD_MANAGER_CLI, OperateError, request_cancel, request_retry, task_run_name_of,
};
use anyhow::Context;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client};
use std::io::Write;

/// Which task on which cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct TaskTarget {
    /// A task id (`42`) or a TaskRun name (`task-42`).
    pub task: String,
    /// Namespace of the TaskRuns.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config, then the pod's own).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: TaskTarget,
    /// The content version whose run to show (default: the TaskRun's current one).
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
    /// Keep printing as the agent writes.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// The attempt before the latest one (an earlier Pod of the Job, or the Job before a retry).
    #[arg(long)]
    pub previous_attempt: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RetryArgs {
    #[command(flatten)]
    pub target: TaskTarget,
    /// Also run a task that Succeeded again.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CancelArgs {
    #[command(flatten)]
    pub target: TaskTarget,
    /// Who cancels, recorded on the TaskRun (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
}

async fn client_for(target: &TaskTarget) -> anyhow::Result<Client> {
    let choice = choose_cluster(&ClusterInputs::gather(&crate::cluster::ClusterArgs {
        kubeconfig: target.kubeconfig.clone(),
        ..Default::default()
    }));
    if let ClusterChoice::Embedded(_) = choice {
        anyhow::bail!(
            "no cluster is configured: pass --kubeconfig with the cluster's kubeconfig (for the embedded server, the file `orchestrator apiserver --kubeconfig-out` writes), or set KUBECONFIG"
        );
    }
    Ok(connect(&choice, &EmbeddedSettings::default()).await?.client)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// `orchestrator retry TASK [--force]`.
pub fn run_retry(args: RetryArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = client_for(&args.target).await?;
        let api = Api::<TaskRun>::namespaced(client, &args.target.namespace);
        let name = task_run_name_of(&args.target.task);
        let done = request_retry(
            &api,
            &args.target.namespace,
            &name,
            args.force,
            FIELD_MANAGER_CLI,
            k8s_openapi::jiff::Timestamp::now(),
        )
        .await?;
        println!(
            "{}: retry requested ({}={}); the controller starts a new attempt of contextVersion {}",
            done.name, done.annotation, done.value, done.context_version
        );
        anyhow::Ok(())
    })
}

/// `orchestrator cancel TASK`.
pub fn run_cancel(args: CancelArgs) -> anyhow::Result<()> {
    let who = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|w| !w.trim().is_empty())
        .unwrap_or_else(|| "orchestrator-cli".to_string());
    runtime()?.block_on(async {
        let client = client_for(&args.target).await?;
        let api = Api::<TaskRun>::namespaced(client, &args.target.namespace);
        let name = task_run_name_of(&args.target.task);
        let done = request_cancel(
            &api,
            &args.target.namespace,
            &name,
            &who,
            FIELD_MANAGER_CLI,
            k8s_openapi::jiff::Timestamp::now(),
        )
        .await?;
        println!(
            "{}: cancel requested ({}={}); the controller stops its Job (phase Failed, reason Cancelled)",
            done.name, done.annotation, done.value
        );
        anyhow::Ok(())
    })
}

/// Why there is no log to show.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoLog {
    #[error(
        "{task}: no Job of contextVersion {version} exists any more; finished Jobs and their Pods are removed after the profile's ttlSecondsAfterFinished, and the TaskRun keeps the outcome (status.result, status.message): see `kubectl get taskrun {task} -o yaml`"
    )]
    JobGone { task: String, version: i64 },
    #[error(
        "{task}: Job {job} has no Pod (yet, or any more: it was never scheduled, or its Pods were removed); `kubectl describe job {job}` shows why"
    )]
    NoPod { task: String, job: String },
    #[error("{task}: Job {job} has had only one attempt; there is no previous one")]
    NoPreviousAttempt { task: String, job: String },
}

/// Pure: the Jobs of one content version (every attempt) and each one's Pods in; the Pod whose
/// log to show out: the latest Pod of the latest attempt, or with `previous` the one before it.
pub fn pick_pod<'a>(
    task: &str,
    version: i64,
    jobs: &'a [(Job, Vec<Pod>)],
    previous: bool,
) -> Result<&'a Pod, NoLog> {
    let attempt = |j: &Job| {
        j.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::LABEL_ATTEMPT))
            .and_then(|a| a.parse::<u32>().ok())
            .unwrap_or(1)
    };
    let mut ordered: Vec<&(Job, Vec<Pod>)> = jobs.iter().collect();
    ordered.sort_by_key(|(j, _)| {
        (
            attempt(j),
            j.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let Some((latest_job, _)) = ordered.last() else {
        return Err(NoLog::JobGone {
            task: task.to_string(),
            version,
        });
    };
    let job_name = latest_job.metadata.name.clone().unwrap_or_default();
    // Every Pod of every attempt, oldest first.
    let mut pods: Vec<&Pod> = Vec::new();
    for (_, job_pods) in &ordered {
        let mut these: Vec<&Pod> = job_pods.iter().collect();
        these.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
        pods.extend(these);
    }
    let latest_of_latest = latest_pod(&ordered.last().map(|(_, p)| p.clone()).unwrap_or_default())
        .and_then(|p| p.metadata.name.clone());
    let Some(at) = pods
        .iter()
        .rposition(|p| p.metadata.name == latest_of_latest && latest_of_latest.is_some())
    else {
        return Err(NoLog::NoPod {
            task: task.to_string(),
            job: job_name,
        });
    };
    if previous {
        return at
            .checked_sub(1)
            .map(|i| pods[i])
            .ok_or(NoLog::NoPreviousAttempt {
                task: task.to_string(),
                job: job_name,
            });
    }
    Ok(pods[at])
}

/// `orchestrator logs TASK`.
pub fn run_logs(args: LogsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = client_for(&args.target).await?;
        let ns = &args.target.namespace;
        let name = task_run_name_of(&args.target.task);
        let task_runs = Api::<TaskRun>::namespaced(client.clone(), ns);
        let tr = task_runs
            .get_opt(&name)
            .await
            .with_context(|| format!("reading TaskRun {name}"))?
            .ok_or_else(|| OperateError::NotFound {
                name: name.clone(),
                namespace: ns.clone(),
            })?;
        let version = args.version.unwrap_or(tr.spec.context_version);
        let jobs_api = Api::<Job>::namespaced(client.clone(), ns);
        let pods_api = Api::<Pod>::namespaced(client.clone(), ns);
        let selector = format!(
            "{}={},{}={}",
            names::LABEL_TASK_ID,
            tr.spec.task_id,
            names::LABEL_CONTEXT_VERSION,
            version
        );
        let jobs = jobs_api
            .list(&ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("listing the Jobs of {name}"))?;
        let mut with_pods = Vec::new();
        for job in jobs.items {
            let job_name = job.metadata.name.clone().unwrap_or_default();
            let mut pods = pods_api
                .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}")))
                .await
                .with_context(|| format!("listing the Pods of Job {job_name}"))?
                .items;
            if pods.is_empty() {
                // Clusters before v1.27 label Pods with the short form only.
                pods = pods_api
                    .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                    .await
                    .with_context(|| format!("listing the Pods of Job {job_name}"))?
                    .items;
            }
            with_pods.push((job, pods));
        }
        let pod = pick_pod(&name, version, &with_pods, args.previous_attempt)?;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let params = LogParams {
            container: Some(CONTAINER_NAME.to_string()),
            follow: args.follow,
            tail_lines: args.tail,
            ..LogParams::default()
        };
        let explain = |e: kube::Error| match &e {
            kube::Error::Api(s) if s.code == 404 => anyhow::anyhow!(
                "the API server has no log for Pod {pod_name} (404: {}); the Pod may be gone, or this server does not serve pods/log (the embedded API server does not yet)",
                s.message
            ),
            _ => anyhow::Error::new(e).context(format!("reading the log of Pod {pod_name}")),
        };
        eprintln!("== {name} contextVersion {version}: Pod {pod_name}");
        if args.follow {
            let stream = pods_api.log_stream(&pod_name, &params).await.map_err(explain)?;
            let mut lines = stream.lines();
            let mut out = std::io::stdout();
            while let Some(line) = lines.try_next().await.context("reading the log stream")? {
                writeln!(out, "{line}")?;
            }
        } else {
            let text = pods_api.logs(&pod_name, &params).await.map_err(explain)?;
            print!("{text}");
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
        }
        anyhow::Ok(())
    })
}

/// The last `lines` lines of the latest attempt's log of a task, for `--until-done`'s failure
/// report; `Err` with the reason when there is none.
pub async fn log_tail(
    client: &Client,
    namespace: &str,
    tr: &TaskRun,
    lines: i64,
) -> Result<String, String> {
    let name = tr.metadata.name.clone().unwrap_or_default();
    let pods_api = Api::<Pod>::namespaced(client.clone(), namespace);
    let pod_name = match tr.status.as_ref().and_then(|s| s.pod_name.clone()) {
        Some(p) => p,
        None => {
            let job = tr
                .status
                .as_ref()
                .and_then(|s| s.job_name.clone())
                .ok_or_else(|| format!("{name} has no Job"))?;
            let pods = pods_api
                .list(&ListParams::default().labels(&format!("job-name={job}")))
                .await
                .map_err(|e| format!("listing the Pods of Job {job}: {e}"))?
                .items;
            latest_pod(&pods)
                .and_then(|p| p.metadata.name.clone())
                .ok_or_else(|| {
                    format!(
                        "Job {job} has no Pod any more (removed after its TTL, or never created)"
                    )
                })?
        }
    };
    let params = LogParams {
        container: Some(CONTAINER_NAME.to_string()),
        tail_lines: Some(lines),
        ..LogParams::default()
    };
    pods_api
        .logs(&pod_name, &params)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => format!(
                "no log for Pod {pod_name} (404): the Pod is gone, or the API server does not serve pods/log"
            ),
            e => format!("reading the log of Pod {pod_name}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str, attempt: u32) -> Job {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"orchestrator.io/attempt": attempt.to_string()}}}))
            .unwrap()
    }

    fn pod(name: &str, created: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created}}))
            .unwrap()
    }

    #[test]
    fn the_latest_pod_of_the_latest_attempt_and_the_one_before() {
        let one_job_two_pods = vec![(
            job("web-42-v1", 1),
            vec![
                pod("web-42-v1-b", "2026-01-01T10:05:00Z"),
                pod("web-42-v1-a", "2026-01-01T10:00:00Z"),
            ],
        )];
        let retried = vec![
            (
                job("web-42-v1-r2", 2),
                vec![pod("web-42-v1-r2-x", "2026-01-01T11:00:00Z")],
            ),
            (
                job("web-42-v1", 1),
                vec![pod("web-42-v1-a", "2026-01-01T10:00:00Z")],
            ),
        ];
        let one = vec![(
            job("web-42-v1", 1),
            vec![pod("web-42-v1-a", "2026-01-01T10:00:00Z")],
        )];
        let no_pod = vec![(job("web-42-v1", 1), vec![])];
        let name = |r: Result<&Pod, NoLog>| r.map(|p| p.metadata.name.clone().unwrap());
        // (jobs, previous, want)
        type Jobs = Vec<(Job, Vec<Pod>)>;
        let cases: Vec<(&Jobs, bool, Result<String, NoLog>)> = vec![
            (&one_job_two_pods, false, Ok("web-42-v1-b".into())),
            (&one_job_two_pods, true, Ok("web-42-v1-a".into())),
            (&retried, false, Ok("web-42-v1-r2-x".into())),
            (&retried, true, Ok("web-42-v1-a".into())),
            (
                &one,
                true,
                Err(NoLog::NoPreviousAttempt {
                    task: "task-42".into(),
                    job: "web-42-v1".into(),
                }),
            ),
            (
                &no_pod,
                false,
                Err(NoLog::NoPod {
                    task: "task-42".into(),
                    job: "web-42-v1".into(),
                }),
            ),
        ];
        for (jobs, previous, want) in cases {
            assert_eq!(
                name(pick_pod("task-42", 1, jobs, previous)),
                want,
                "{previous}"
            );
        }
        assert_eq!(
            pick_pod("task-42", 3, &[], false).unwrap_err().to_string(),
            "task-42: no Job of contextVersion 3 exists any more; finished Jobs and their Pods are removed after the profile's ttlSecondsAfterFinished, and the TaskRun keeps the outcome (status.result, status.message): see `kubectl get taskrun task-42 -o yaml`"
        );
    }
}
