//! The sync loop on the embedded API server (or KUBECONFIG's cluster) and a real local git
//! repository: a commit is applied through the notify trigger, the manual trigger starts a
//! sync, the periodic re-sync restores a TaskRun deleted by hand, and shutdown stops the loop.

mod support;
mod sync_repo;

use kube::api::DeleteParams;
use orchestrator::crd::TaskRun;
use orchestrator::desired::SourceIdentity;
use orchestrator::health::SyncStatus;
use orchestrator::metrics::Metrics;
use orchestrator::source::{Credentials, GitSource, SourceConfig, watch_refs};
use orchestrator::sync::apply::{SyncOptions, Syncer};
use orchestrator::sync::crd_install::ensure_crd;
use orchestrator::sync::metrics::SyncMetrics;
use orchestrator::sync::report::{ReportReceiver, report_channel};
use orchestrator::sync::run_loop::{LoopOutputs, LoopSettings, run_sync_loop};
use orchestrator::sync::trigger::{SyncTrigger, TriggerReason, sync_trigger};
use std::sync::Arc;
use std::time::Duration;
use sync_repo::TaskRepo;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

struct RunningLoop {
    reports: ReportReceiver,
    every_report: tokio::sync::mpsc::UnboundedReceiver<orchestrator::sync::report::SyncReport>,
    trigger: SyncTrigger,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    metrics: Metrics,
    _mirror: tempfile::TempDir,
    _watch: Option<orchestrator::source::RefWatch>,
}

async fn start_loop(
    cluster: &support::TestCluster,
    repo: &TaskRepo,
    notify: bool,
    interval: Duration,
) -> RunningLoop {
    let mirror = tempfile::tempdir().unwrap();
    let source = GitSource::new(SourceConfig {
        url: repo.path().display().to_string(),
        branch: "main".into(),
        path: sync_repo::TASKS.into(),
        mirror_dir: mirror.path().to_path_buf(),
        interval,
        credentials: Credentials::default(),
    });
    let ref_changes = Arc::new(Notify::new());
    let watch = notify.then(|| watch_refs(repo.path(), ref_changes.clone()).unwrap());
    let syncer = Syncer::new(
        cluster.client.clone(),
        SourceIdentity::new(&repo.path().display().to_string(), sync_repo::TASKS),
        SyncOptions::new(cluster.namespace.clone()),
    );
    let (reports_tx, reports) = report_channel();
    let (every_tx, every_report) = tokio::sync::mpsc::unbounded_channel();
    let (state, _) = watch::channel(None);
    let (trigger, requests) = sync_trigger();
    let (stop, stop_rx) = watch::channel(false);
    let metrics = Metrics::new();
    let task = tokio::spawn(run_sync_loop(
        source,
        syncer,
        requests,
        notify.then_some(ref_changes),
        LoopOutputs {
            reports: reports_tx,
            every_report: Some(every_tx),
            state,
            metrics: SyncMetrics::register(&metrics),
        },
        LoopSettings::new(interval),
        stop_rx,
    ));
    RunningLoop {
        reports,
        every_report,
        trigger,
        stop,
        task,
        metrics,
        _mirror: mirror,
        _watch: watch,
    }
}

impl RunningLoop {
    /// Waits (at most 10 s) until a report satisfies `pred`.
    async fn report_where(
        &mut self,
        pred: impl Fn(&orchestrator::sync::report::SyncReport) -> bool,
    ) {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.reports.wait_for(|r| r.as_ref().is_some_and(&pred)),
        )
        .await
        .expect("the report came within 10 s")
        .expect("the loop is running");
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the loop stops promptly on shutdown")
            .unwrap();
    }
}

async fn setup() -> (support::TestCluster, TaskRepo) {
    let cluster = support::cluster().await;
    ensure_crd(cluster.client.clone()).await.unwrap();
    let repo = TaskRepo::new();
    repo.write_task(1, "one");
    repo.write_task(2, "two");
    repo.commit("two tasks");
    (cluster, repo)
}

/// The latest-report channel drops a report nobody read before the next one; the notes writer's
/// channel must not, or a commit superseded within seconds would never get its note.
#[tokio::test]
async fn every_report_reaches_the_every_report_channel_in_order() {
    let (cluster, repo) = setup().await;
    let hour = Duration::from_secs(3600);
    let mut running = start_loop(&cluster, &repo, true, hour).await;
    let first = repo
        .repo
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id()
        .to_string();
    running.report_where(|r| r.revision.commit == first).await;
    repo.write_file(1, "prompt.md", "one, edited");
    let second = repo.commit("edit task 1").to_string();
    running.report_where(|r| r.revision.commit == second).await;
    repo.write_file(2, "prompt.md", "two, edited");
    let third = repo.commit("edit task 2").to_string();
    running.report_where(|r| r.revision.commit == third).await;

    let mut seen: Vec<String> = vec![];
    while let Ok(report) = running.every_report.try_recv() {
        if seen.last() != Some(&report.revision.commit) {
            seen.push(report.revision.commit);
        }
    }
    assert_eq!(seen, [first, second, third]);
    running.stop().await;
}

#[tokio::test]
async fn a_commit_is_applied_through_the_notify_trigger_without_waiting_for_the_poll() {
    let (cluster, repo) = setup().await;
    let hour = Duration::from_secs(3600);
    let mut running = start_loop(&cluster, &repo, true, hour).await;
    running
        .report_where(|r| r.status == SyncStatus::Synced && r.created == 2)
        .await;

    repo.write_file(2, "prompt.md", "two, edited");
    let commit = repo.commit("edit task 2").to_string();
    running
        .report_where(|r| r.revision.commit == commit && r.updated == 1)
        .await;
    let tr: TaskRun = cluster.api().get("task-2").await.unwrap();
    assert_eq!(tr.spec.context_version, 2);
    let text = running.metrics.render();
    assert!(
        text.contains(r#"orchestrator_sync_runs_total{status="Synced"}"#),
        "{text}"
    );
    running.stop().await;
}

#[tokio::test]
async fn the_manual_trigger_starts_a_sync() {
    let (cluster, repo) = setup().await;
    let mut running = start_loop(&cluster, &repo, false, Duration::from_secs(3600)).await;
    running.report_where(|r| r.created == 2).await;

    repo.write_task(3, "three");
    let commit = repo.commit("add task 3").to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(
        running.reports.borrow().as_ref().unwrap().revision.commit,
        commit,
        "no notify watch and an hour's interval: nothing syncs on its own"
    );
    assert!(running.trigger.clone().request(TriggerReason::Webhook));
    running
        .report_where(|r| r.revision.commit == commit && r.created == 1)
        .await;
    running.stop().await;
}

#[tokio::test]
async fn the_periodic_resync_restores_a_task_run_deleted_by_hand() {
    let (cluster, repo) = setup().await;
    let mut running = start_loop(&cluster, &repo, false, Duration::from_millis(300)).await;
    running.report_where(|r| r.created == 2).await;

    let api = cluster.api::<TaskRun>();
    api.delete("task-1", &DeleteParams::default())
        .await
        .unwrap();
    running.report_where(|r| r.created == 1).await;
    let restored = api.get("task-1").await.unwrap();
    assert_eq!(restored.spec.markdown_files[0].content, "one");
    running.stop().await;
}
