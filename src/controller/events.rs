//! Events on TaskRuns: a fixed reason and a note in, an events.k8s.io Event out through
//! kube-runtime's Recorder. A failed publish is logged and never fails the reconcile.

use super::reasons::EventReason;
use crate::crd::TaskRun;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "orchestrator-controller";

pub fn recorder(client: kube::Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: REPORTING_CONTROLLER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Publishes one event on `tr`. `related` names the child the event is about: the Recorder
/// folds events with the same reason and related object into one series, so naming the child
/// keeps, say, the JobCreated events of two context versions apart.
pub async fn publish(
    recorder: &Recorder,
    tr: &TaskRun,
    reason: EventReason,
    note: String,
    related: Option<ObjectReference>,
) {
    let event = Event {
        type_: if reason.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.as_str().to_string(),
        note: Some(note),
        action: reason.action().to_string(),
        secondary: related,
    };
    match recorder.publish(&event, &tr.object_ref(&())).await {
        // The API server went away: the reconcile's own requests fail too and the controller's
        // outage log says so once; a line per TaskRun here would multiply it.
        Err(e) if crate::outage_log::is_connection_error(&e) => tracing::debug!(
            task_run = tr.metadata.name.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            error = %e,
            "could not publish event while the API server is unreachable"
        ),
        Err(e) => tracing::warn!(
            task_run = tr.metadata.name.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            error = %e,
            "could not publish event"
        ),
        Ok(()) => {}
    }
}

/// A reference to a child for an event's `related` field.
pub fn related<K: Resource<DynamicType = ()>>(child: &K) -> ObjectReference {
    child.object_ref(&())
}
