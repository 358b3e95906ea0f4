//! Watches through kube-rs: event order, resume from a resourceVersion, bookmarks, selectors,
//! timeouts, 410 Expired and kube-runtime's relist, streaming lists, and a small Controller.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube_envtest::ApiServerConfig;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::{cluster, embedded_cluster, wait_until};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn rv_of(o: &ConfigMap) -> u64 {
    o.metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

/// (type, name, resourceVersion) of the next `n` events.
async fn take_events(
    stream: impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>>,
    n: usize,
) -> Vec<(String, String, u64)> {
    let fut = stream
        .map(|e| match e.unwrap() {
            WatchEvent::Added(o) => (
                "ADDED".to_string(),
                o.metadata.name.clone().unwrap(),
                rv_of(&o),
            ),
            WatchEvent::Modified(o) => (
                "MODIFIED".to_string(),
                o.metadata.name.clone().unwrap(),
                rv_of(&o),
            ),
            WatchEvent::Deleted(o) => (
                "DELETED".to_string(),
                o.metadata.name.clone().unwrap(),
                rv_of(&o),
            ),
            WatchEvent::Bookmark(b) => (
                "BOOKMARK".to_string(),
                String::new(),
                b.metadata.resource_version.parse().unwrap(),
            ),
            WatchEvent::Error(s) => (
                format!("ERROR {} {}", s.code, s.reason),
                s.message.clone(),
                0,
            ),
        })
        .take(n)
        .collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("events arrive in time")
}

#[tokio::test]
async fn watch_sees_changes_in_order_and_resumes_from_a_resource_version() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let stream = api.watch(&WatchParams::default(), &start).await.unwrap();

    api.create(&PostParams::default(), &cm("w1", json!({})))
        .await
        .unwrap();
    let mid = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("w2", json!({})))
        .await
        .unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();

    let events = take_events(stream, 4).await;
    let kinds: Vec<_> = events.iter().map(|(t, n, _)| format!("{t} {n}")).collect();
    assert_eq!(kinds, ["ADDED w1", "MODIFIED w1", "ADDED w2", "DELETED w1"]);
    assert!(
        events.windows(2).all(|w| w[0].2 < w[1].2),
        "resourceVersions increase: {events:?}"
    );

    // Resuming from the MODIFIED event's resourceVersion replays only what came after it.
    let resumed = api
        .watch(&WatchParams::default(), &rv_of(&mid).to_string())
        .await
        .unwrap();
    let replay = take_events(resumed, 2).await;
    let kinds: Vec<_> = replay.iter().map(|(t, n, _)| format!("{t} {n}")).collect();
    assert_eq!(kinds, ["ADDED w2", "DELETED w1"]);
}

#[tokio::test]
async fn watch_from_zero_starts_with_the_current_state() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    let events = take_events(api.watch(&WatchParams::default(), "0").await.unwrap(), 2).await;
    let mut names: Vec<_> = events.iter().map(|(t, n, _)| format!("{t} {n}")).collect();
    names.sort();
    assert_eq!(names, ["ADDED a", "ADDED b"]);
}

#[tokio::test]
async fn label_selector_watch_turns_matching_changes_into_added_and_deleted() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    api.create(&PostParams::default(), &cm("s", json!({"app": "no"})))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let stream = api
        .watch(&WatchParams::default().labels("app=yes"), &rv)
        .await
        .unwrap();
    let set = |v: &'static str| {
        let api = api.clone();
        async move {
            api.patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"app": v}}})),
            )
            .await
            .unwrap();
        }
    };
    set("yes").await;
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    set("no").await;
    let kinds: Vec<_> = take_events(stream, 3)
        .await
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn bookmarks_and_timeouts() {
    let c = embedded_cluster(ApiServerConfig {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = c.api();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut wp = WatchParams::default().timeout(2);
    wp.bookmarks = true;
    let events = take_events(api.watch(&wp, &rv).await.unwrap(), 1).await;
    assert_eq!(events[0].0, "BOOKMARK");
    assert!(events[0].2 >= rv.parse::<u64>().unwrap());

    let started = std::time::Instant::now();
    let mut quiet = WatchParams::default().timeout(1);
    quiet.bookmarks = false;
    let all: Vec<_> = api.watch(&quiet, &rv).await.unwrap().collect().await;
    assert!(all.is_empty(), "no bookmarks unless asked for");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the watch ends at timeoutSeconds"
    );
}

#[tokio::test]
async fn too_old_resource_version_gets_410_expired_and_the_watcher_relists() {
    let c = embedded_cluster(ApiServerConfig {
        watch_history: 10,
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = c.api();
    let old = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // kube-runtime's watcher with 1-second watches: after the churn below its resourceVersion
    // is older than the history, so its next watch gets 410 and it lists again.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen_w = seen.clone();
    let w = watcher(
        api.clone(),
        watcher::Config::default().timeout(1).disable_bookmarks(),
    )
    .default_backoff()
    .for_each(move |e| {
        // The 410 surfaces as one Err item; the watcher then lists again.
        if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = e {
            seen_w.lock().unwrap().push(o.metadata.name.unwrap());
        }
        futures::future::ready(())
    });
    let task = tokio::spawn(w);
    wait_until(Duration::from_secs(10), || async {
        c.request_stats().unwrap().count("configmaps", "list") >= 2
    })
    .await
    .expect("the watcher lists");
    let lists_before = c.request_stats().unwrap().count("configmaps", "list");

    let secrets: Api<Secret> = c.api();
    for i in 0..30 {
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}})).unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let stream = api.watch(&WatchParams::default(), &old).await.unwrap();
    let events = take_events(stream, 1).await;
    assert_eq!(events[0].0, "ERROR 410 Expired", "{events:?}");
    assert!(
        events[0].1.starts_with("too old resource version"),
        "{events:?}"
    );

    wait_until(Duration::from_secs(15), || async {
        c.request_stats().unwrap().count("configmaps", "list") > lists_before
    })
    .await
    .expect("the watcher relists after 410");
    api.create(&PostParams::default(), &cm("after-relist", json!({})))
        .await
        .unwrap();
    wait_until(Duration::from_secs(15), || async {
        seen.lock().unwrap().iter().any(|n| n == "after-relist")
    })
    .await
    .expect("the watcher keeps watching after the relist");
    task.abort();
}

#[tokio::test]
async fn concurrent_watchers_see_the_same_ordered_events() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let a = api.watch(&WatchParams::default(), &rv).await.unwrap();
    let b = api.watch(&WatchParams::default(), &rv).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let api = api.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    api.create(&PostParams::default(), &cm(&format!("c{w}-{i}"), json!({})))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let (ea, eb) = tokio::join!(take_events(a, 40), take_events(b, 40));
    assert_eq!(ea, eb);
    assert!(ea.windows(2).all(|w| w[0].2 < w[1].2));
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events() {
    let c = cluster().await;
    let v = c.client.apiserver_version().await.unwrap();
    let version: kube_envtest::KubernetesVersion =
        format!("{}.{}", v.major, v.minor.trim_end_matches('+'))
            .parse()
            .unwrap();
    if !version.serves_watch_list() {
        eprintln!(
            "skipping: streaming lists need Kubernetes 1.32 (the WatchList feature gate); the server is v{version}"
        );
        return;
    }
    let api: Api<ConfigMap> = c.api();
    api.create(&PostParams::default(), &cm("pre", json!({})))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut init_names = vec![];
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match e {
            watcher::Event::InitApply(o) => init_names.push(o.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(init_names, ["pre"]);
}

#[tokio::test]
async fn a_small_controller_reconciles_every_object() {
    let c = cluster().await;
    let api: Api<ConfigMap> = c.api();
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &cm(&format!("r{i}"), json!({"reconcile": "yes"})),
        )
        .await
        .unwrap();
    }
    struct Ctx {
        api: Api<ConfigMap>,
    }
    async fn reconcile(o: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
        let name = o.metadata.name.clone().unwrap();
        ctx.api
            .patch(&name, &PatchParams::apply("test-controller"), &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "annotations": {"reconciled": "true"}},
            })))
            .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Ctx>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }
    let controller = Controller::new(
        api.clone(),
        watcher::Config::default().labels("reconcile=yes"),
    )
    .run(reconcile, error_policy, Arc::new(Ctx { api: api.clone() }))
    .for_each(|_| futures::future::ready(()));
    let task = tokio::spawn(controller);
    api.create(
        &PostParams::default(),
        &cm("r-late", json!({"reconcile": "yes"})),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(20), || async {
        let items = api
            .list(&ListParams::default().labels("reconcile=yes"))
            .await
            .unwrap()
            .items;
        items.len() == 6
            && items.iter().all(|o| {
                o.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("reconciled"))
                    .map(String::as_str)
                    == Some("true")
            })
    })
    .await
    .expect("the controller annotates every ConfigMap");
    task.abort();
}
