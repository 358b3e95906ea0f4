//! Sync flows on the embedded API server (or the cluster named by KUBECONFIG): commits in a real
//! git repository in, TaskRuns, versions, prunes and request counts out.

mod support;
mod sync_repo;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use orchestrator::crd::TaskRun;
use orchestrator::desired::SourceIdentity;
use orchestrator::health::SyncStatus;
use orchestrator::names;
use orchestrator::source::SourceSnapshot;
use orchestrator::sync::apply::{SyncOptions, SyncOutcome, Syncer};
use orchestrator::sync::crd_install::{CrdState, ensure_crd};
use std::collections::BTreeMap;
use support::TestCluster;
use sync_repo::TaskRepo;

struct Flow {
    cluster: TestCluster,
    repo: TaskRepo,
    syncer: Syncer,
}

impl Flow {
    async fn new() -> Self {
        let cluster = support::cluster().await;
        ensure_crd(cluster.client.clone())
            .await
            .expect("the CRD is installed and Established");
        let repo = TaskRepo::new();
        let syncer = Self::syncer_for(&cluster, &repo, true);
        Flow {
            cluster,
            repo,
            syncer,
        }
    }

    fn syncer_for(cluster: &TestCluster, repo: &TaskRepo, prune: bool) -> Syncer {
        let source = SourceIdentity::new(&repo.path().to_string_lossy(), sync_repo::TASKS);
        let mut options = SyncOptions::new(cluster.namespace.clone());
        options.prune = prune;
        Syncer::new(cluster.client.clone(), source, options)
    }

    fn api(&self) -> Api<TaskRun> {
        self.cluster.api()
    }

    async fn sync(&mut self) -> SyncOutcome {
        let snapshot = self.repo.snapshot();
        self.sync_snapshot(&snapshot).await
    }

    async fn sync_snapshot(&mut self, snapshot: &SourceSnapshot) -> SyncOutcome {
        self.syncer.sync(snapshot).await.expect("the sync compares")
    }

    /// name → (contextVersion, resourceVersion)
    async fn live(&self) -> BTreeMap<String, (i64, String)> {
        self.api()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|tr| {
                (
                    tr.name_any(),
                    (tr.spec.context_version, tr.resource_version().unwrap()),
                )
            })
            .collect()
    }

    async fn versions(&self) -> BTreeMap<String, i64> {
        self.live()
            .await
            .into_iter()
            .map(|(n, (v, _))| (n, v))
            .collect()
    }

    /// Runs `f` and returns the writes the embedded server saw meanwhile (`None` on a real
    /// cluster, where the resourceVersion checks stand in).
    async fn writes_during<F: std::future::Future>(&self, f: F) -> (F::Output, Option<u64>) {
        let before = self.cluster.request_stats();
        let out = f.await;
        let writes = match (before, self.cluster.request_stats()) {
            (Some(b), Some(a)) => Some(a.since(&b).writes()),
            _ => None,
        };
        (out, writes)
    }
}

fn versions_of(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

#[tokio::test]
async fn first_sync_creates_everything_and_a_resync_writes_nothing() {
    let mut flow = Flow::new().await;
    for id in [1, 2, 3] {
        flow.repo.write_task(id, &format!("do task {id}"));
    }
    flow.repo.commit("three tasks");

    let first = flow.sync().await;
    assert_eq!(
        first.report.status,
        SyncStatus::Synced,
        "{:?}",
        first.report
    );
    assert_eq!(first.report.created, 3);
    assert_eq!(
        flow.versions().await,
        versions_of(&[("task-1", 1), ("task-2", 1), ("task-3", 1)])
    );
    let tr = flow.api().get("task-2").await.unwrap();
    let labels = tr.labels();
    assert_eq!(
        labels[names::LABEL_SOURCE],
        flow.syncer.source().label_value()
    );
    assert_eq!(
        tr.annotations()[names::ANNOTATION_REVISION],
        first.report.revision.to_string()
    );
    assert!(tr.spec.content_digest.starts_with("sha256:"));
    assert_eq!(tr.spec.markdown_files[0].content, "do task 2");

    let before = flow.live().await;
    let before_stats = flow.cluster.request_stats();
    let second = flow.sync().await;
    assert_eq!(second.report.status, SyncStatus::Synced);
    assert_eq!(second.report.unchanged, 3);
    assert!(second.plan.is_noop());
    if let Some((b, a)) = before_stats.zip(flow.cluster.request_stats()) {
        let stats = a.since(&b);
        assert_eq!(stats.writes(), 0, "a no-op sync writes nothing: {stats:?}");
        // Once the metadata watch has caught up with the creates, a no-op re-sync makes no
        // request at all.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let b = flow.cluster.request_stats().unwrap();
            let again = flow.sync().await;
            let stats = flow.cluster.request_stats().unwrap().since(&b);
            assert!(again.plan.is_noop());
            assert_eq!(stats.writes(), 0, "a no-op sync writes nothing: {stats:?}");
            if stats.total() == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no-op re-syncs still make requests 10 s after the first sync: {stats:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(flow.live().await, before, "no resourceVersion moved");

    // The CRD is not written again either.
    assert_eq!(
        ensure_crd(flow.cluster.client.clone()).await.unwrap(),
        CrdState::AlreadyInstalled
    );
}

#[tokio::test]
async fn editing_one_file_raises_exactly_that_tasks_version() {
    let mut flow = Flow::new().await;
    for id in [1, 2, 3] {
        flow.repo.write_task(id, &format!("do task {id}"));
    }
    let c1 = flow.repo.commit("three tasks");
    flow.sync().await;
    let before = flow.live().await;

    flow.repo
        .write_file(2, "prompt.md", "do task 2, but better");
    flow.repo.commit("edit task 2");
    let (outcome, writes) = flow
        .writes_during(flow.syncer.clone().sync(&flow.repo.snapshot()))
        .await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.report.updated, 1);
    assert_eq!(outcome.report.unchanged, 2);
    if let Some(writes) = writes {
        assert_eq!(writes, 1, "exactly one write");
    }
    let after = flow.live().await;
    assert_eq!(after["task-1"], before["task-1"], "untouched");
    assert_eq!(after["task-3"], before["task-3"], "untouched");
    assert_eq!(after["task-2"].0, 2);
    let tr = flow.api().get("task-2").await.unwrap();
    assert_eq!(tr.labels()[names::LABEL_CONTEXT_VERSION], "2");
    assert_ne!(
        tr.annotations()[names::ANNOTATION_REVISION],
        format!("main@sha1:{c1}"),
        "the revision annotation names the commit that produced version 2"
    );
    let t1 = flow.api().get("task-1").await.unwrap();
    assert_eq!(
        t1.annotations()[names::ANNOTATION_REVISION],
        format!("main@sha1:{c1}"),
        "an untouched task keeps naming the commit that produced its content"
    );
    // And its commit time, which orders the queue.
    let c2 = flow
        .repo
        .repo
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id();
    let time_of = |c| {
        let seconds = flow.repo.repo.find_commit(c).unwrap().time().seconds();
        orchestrator::desired::commit_time_text(seconds).unwrap()
    };
    assert_eq!(
        tr.annotations()[names::ANNOTATION_REVISION_TIME],
        time_of(c2)
    );
    assert_eq!(
        t1.annotations()[names::ANNOTATION_REVISION_TIME],
        time_of(c1)
    );
}

#[tokio::test]
async fn deleting_a_folder_prunes_exactly_that_task_run_and_nothing_unmarked() {
    let mut flow = Flow::new().await;
    for id in [1, 2, 3, 4] {
        flow.repo.write_task(id, &format!("do task {id}"));
    }
    flow.repo.commit("four tasks");
    flow.sync().await;

    // A TaskRun made by hand (no source mark) and one opted out of pruning.
    let mut by_hand = flow.api().get("task-1").await.unwrap();
    by_hand.metadata = kube::api::ObjectMeta {
        name: Some("task-99".into()),
        ..Default::default()
    };
    by_hand.spec.task_id = 99;
    flow.api()
        .create(&Default::default(), &by_hand)
        .await
        .unwrap();
    flow.api()
        .patch(
            "task-4",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {names::ANNOTATION_PRUNE: names::PRUNE_DISABLED}}
            })),
        )
        .await
        .unwrap();

    flow.repo.remove_task(2);
    flow.repo.remove_task(4);
    flow.repo.commit("drop tasks 2 and 4");
    let outcome = flow.sync().await;
    assert_eq!(outcome.report.pruned, 1, "{:?}", outcome.plan);
    assert_eq!(outcome.report.status, SyncStatus::Synced);
    let names: Vec<String> = flow.versions().await.into_keys().collect();
    assert_eq!(names, ["task-1", "task-3", "task-4", "task-99"]);

    // --prune=false keeps what leaves Git.
    flow.repo.remove_task(3);
    flow.repo.commit("drop task 3");
    let mut keeper = Flow::syncer_for(&flow.cluster, &flow.repo, false);
    let kept = keeper.sync(&flow.repo.snapshot()).await.unwrap();
    assert_eq!(kept.report.pruned, 0);
    assert!(flow.versions().await.contains_key("task-3"));
}

#[tokio::test]
async fn hand_edits_and_hand_deletes_are_healed_by_the_next_sync() {
    let mut flow = Flow::new().await;
    flow.repo.write_task(1, "original");
    flow.repo.write_task(2, "second");
    flow.repo.commit("two tasks");
    flow.sync().await;

    flow.api()
        .patch(
            "task-1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"agentName": "someone-else",
                         "markdownFiles": [{"filename": "prompt.md", "content": "hacked"}]}
            })),
        )
        .await
        .unwrap();
    let deleted = flow
        .api()
        .delete("task-2", &DeleteParams::default())
        .await
        .unwrap();
    // The controller's finalizer is not in play here: no controller runs in this test.
    // The promise: a sync heals every change its watch has seen. A watch event arrives a few
    // milliseconds after the write's response (on a real server too), so wait until the
    // syncer's watch has shown the delete, rather than for a guessed time.
    let gone_at = deleted
        .left()
        .and_then(|tr| tr.metadata.resource_version)
        .expect("the deleted TaskRun, with the deletion's resourceVersion");
    assert!(
        flow.syncer
            .wait_until_seen(&gone_at, std::time::Duration::from_secs(10))
            .await,
        "the syncer's watch shows the delete"
    );

    let outcome = flow.sync().await;
    assert_eq!(
        (outcome.report.updated, outcome.report.created),
        (1, 1),
        "{:?}",
        outcome.plan
    );
    let healed = flow.api().get("task-1").await.unwrap();
    assert_eq!(healed.spec.agent_name, "claude-code");
    assert_eq!(healed.spec.markdown_files[0].content, "original");
    assert_eq!(healed.spec.context_version, 1, "same content, same version");
    let recreated = flow.api().get("task-2").await.unwrap();
    assert_eq!(
        recreated.spec.context_version, 1,
        "a TaskRun deleted by hand comes back at version 1 (README: contextVersion)"
    );
}

#[tokio::test]
async fn a_broken_folder_does_not_stop_the_rest_and_keeps_its_task_run() {
    let mut flow = Flow::new().await;
    flow.repo.write_task(1, "one");
    flow.repo.write_task(2, "two");
    flow.repo.commit("two tasks");
    flow.sync().await;
    let before = flow.live().await;

    flow.repo.write_file(2, "task.yaml", "serviceName: web\n"); // agentName missing
    flow.repo.write_file(1, "prompt.md", "one, edited");
    flow.repo.write_task(3, "three");
    flow.repo.commit("break task 2, edit 1, add 3");
    let outcome = flow.sync().await;
    assert_eq!(outcome.report.status, SyncStatus::OutOfSync);
    assert_eq!(
        outcome.report.folder_errors.len(),
        1,
        "{:?}",
        outcome.report
    );
    assert_eq!(outcome.report.folder_errors[0].task_id, Some(2));
    assert_eq!((outcome.report.created, outcome.report.updated), (1, 1));
    let after = flow.live().await;
    assert_eq!(after["task-2"], before["task-2"], "kept exactly as it was");
    assert_eq!(after["task-1"].0, 2);
    assert_eq!(after["task-3"].0, 1);
    assert!(outcome.converged, "nothing a re-sync could fix");
}

#[tokio::test]
async fn a_restart_keeps_versions_and_a_force_push_back_gets_a_new_larger_version() {
    let mut flow = Flow::new().await;
    flow.repo.write_task(1, "a");
    flow.repo.write_task(2, "stable");
    let commit_a = flow.repo.commit("a");
    flow.sync().await;
    flow.repo.write_file(1, "prompt.md", "b");
    flow.repo.commit("b");
    flow.sync().await;
    assert_eq!(
        flow.versions().await,
        versions_of(&[("task-1", 2), ("task-2", 1)])
    );

    // A restart: a new Syncer with no memory, a snapshot read with a fresh cache.
    let mut restarted = Flow::syncer_for(&flow.cluster, &flow.repo, true);
    let before = flow.live().await;
    let (outcome, writes) = flow
        .writes_during(restarted.sync(&flow.repo.snapshot()))
        .await;
    let outcome = outcome.unwrap();
    assert!(outcome.plan.is_noop(), "{:?}", outcome.plan);
    if let Some(writes) = writes {
        assert_eq!(writes, 0);
    }
    assert_eq!(flow.live().await, before);

    // A force-push back to commit a: task 1's content returns to "a" → version 3, never 1.
    flow.repo.reset_hard(commit_a);
    let outcome = restarted.sync(&flow.repo.snapshot()).await.unwrap();
    assert_eq!(outcome.report.updated, 1);
    assert_eq!(
        flow.versions().await,
        versions_of(&[("task-1", 3), ("task-2", 1)])
    );
    let tr = flow.api().get("task-1").await.unwrap();
    assert_eq!(
        tr.annotations()[names::ANNOTATION_REVISION],
        format!("main@sha1:{commit_a}")
    );
}
