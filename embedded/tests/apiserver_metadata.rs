//! Metadata-only lists (`Api::list_metadata`), which the sync's re-syncs use.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use std::collections::BTreeMap;

#[tokio::test]
async fn list_metadata_returns_metadata_without_the_data() {
    let c = support::cluster().await;
    let api = c.api::<ConfigMap>();
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("meta".into());
    cm.metadata.labels = Some(BTreeMap::from([("app".into(), "x".into())]));
    cm.data = Some(BTreeMap::from([("big".into(), "y".repeat(10_000))]));
    api.create(&PostParams::default(), &cm).await.unwrap();

    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let item = &list.items[0];
    assert_eq!(item.metadata.name.as_deref(), Some("meta"));
    assert_eq!(item.metadata.labels.as_ref().unwrap()["app"], "x");
    assert!(item.metadata.resource_version.is_some());
    assert_eq!(
        item.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
}

#[tokio::test]
async fn metadata_watch_events_carry_metadata_without_the_data() {
    use futures::StreamExt;
    use kube::api::{PartialObjectMeta, WatchEvent, WatchParams};
    let c = support::cluster().await;
    let meta_api = c.api::<PartialObjectMeta<ConfigMap>>();
    let mut events = meta_api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();

    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("watched".into());
    cm.data = Some(BTreeMap::from([("big".into(), "y".repeat(10_000))]));
    c.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
        .unwrap();
    let WatchEvent::Added(item) = event else {
        panic!("expected ADDED, got {event:?}");
    };
    assert_eq!(item.metadata.name.as_deref(), Some("watched"));
    assert_eq!(
        item.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
}
