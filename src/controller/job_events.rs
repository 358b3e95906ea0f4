//! Warning events about Jobs (core/v1, field-selected `involvedObject.kind=Job,type=Warning`) in;
//! per Job, the latest reason, message and time of each Warning reason out, for
//! [`super::lifecycle`] to tell why a Job has no Pod (`FailedCreate`: a missing ServiceAccount, a
//! quota, an admission webhook).
//!
//! The Job controller records these on the Job, not on a Pod (there is none), so neither the Job
//! nor the Pod watch shows them. What is kept is small: no Event objects, only up to
//! [`MAX_REASONS_PER_JOB`] `(reason, message, time)` per Job uid, and Jobs the Job cache no longer
//! holds are dropped as the map grows. [`event_of`] (which event counts, and as what) is pure.

use super::caches::{CachedJob, OwnedStore};
use super::lifecycle::JobEvent;
use crate::crd::TaskRun;
use crate::outage_log::{OutageLog, WatchRequests};
use crate::watch_backoff::watch_backoff;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The field selector of the events watch. kube-apiserver serves both fields for core/v1 events
/// (and so does the embedded server); events written through events.k8s.io/v1 (`regarding`) are
/// the same objects and are listed here too.
pub const JOB_EVENTS_FIELD_SELECTOR: &str = "involvedObject.kind=Job,type=Warning";

/// Reasons kept per Job; a Job that piles up more distinct Warning reasons keeps the latest.
pub const MAX_REASONS_PER_JOB: usize = 4;

/// Jobs remembered before those the Job cache no longer holds are dropped.
const PRUNE_AT: usize = 1024;

/// One Warning event about a Job, reduced to what the TaskRun's status reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobWarning {
    pub namespace: String,
    /// The Job's name and uid (an event may outlive its Job, and a new Job may take the name).
    pub job_name: String,
    pub job_uid: String,
    pub reason: String,
    pub message: String,
    /// When it last happened: lastTimestamp, else eventTime, else firstTimestamp, else creation.
    pub at: Option<Timestamp>,
}

/// The Warning event about a Job that `event` is, or `None` (another kind, Normal, no uid). Pure.
pub fn event_of(event: &Event) -> Option<JobWarning> {
    let about = &event.involved_object;
    if about.kind.as_deref() != Some("Job") || event.type_.as_deref() != Some("Warning") {
        return None;
    }
    let at = event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Some(JobWarning {
        namespace: about
            .namespace
            .clone()
            .or_else(|| event.metadata.namespace.clone())?,
        job_name: about.name.clone()?,
        job_uid: about.uid.clone().filter(|u| !u.is_empty())?,
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
        at,
    })
}

#[derive(Clone, Debug)]
struct Kept {
    reason: String,
    message: String,
    at: Option<Timestamp>,
}

/// What is kept of one Job: where it is (to ask the Job cache whether it still exists) and its
/// Warnings.
#[derive(Clone, Debug, Default)]
struct KeptJob {
    namespace: String,
    name: String,
    warnings: Vec<Kept>,
}

/// Whether the Job `namespace/name` with `uid` still exists (as the Job cache shows it).
pub trait JobExists: Fn(&str, &str, &str) -> bool {}
impl<F: Fn(&str, &str, &str) -> bool> JobExists for F {}

/// The latest Warning of each reason per Job uid, shared by the events watch (which records)
/// and the reconcile (which reads).
#[derive(Clone, Default)]
pub struct JobEvents(Arc<Mutex<HashMap<String, KeptJob>>>);

impl JobEvents {
    /// Keeps `warning` unless an as new or newer one of its reason is kept already. Returns
    /// whether anything changed (a re-listed event changes nothing).
    pub fn record(&self, warning: &JobWarning, job_exists: impl JobExists) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_AT && !map.contains_key(&warning.job_uid) {
            map.retain(|uid, job| job_exists(&job.namespace, &job.name, uid));
        }
        let job = map
            .entry(warning.job_uid.clone())
            .or_insert_with(|| KeptJob {
                namespace: warning.namespace.clone(),
                name: warning.job_name.clone(),
                warnings: Vec::new(),
            });
        let kept = &mut job.warnings;
        if let Some(same) = kept.iter_mut().find(|k| k.reason == warning.reason) {
            if same.at > warning.at || (same.at == warning.at && same.message == warning.message) {
                return false;
            }
            same.message = warning.message.clone();
            same.at = warning.at;
        } else {
            kept.push(Kept {
                reason: warning.reason.clone(),
                message: warning.message.clone(),
                at: warning.at,
            });
        }
        // Oldest first, as `lifecycle` reads them (the latest matching one wins).
        kept.sort_by_key(|k| k.at);
        if kept.len() > MAX_REASONS_PER_JOB {
            kept.remove(0);
        }
        true
    }

    /// The Warnings kept for the Job with `uid`, oldest first.
    pub fn of_job(&self, uid: &str) -> Vec<JobEvent> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(uid)
            .into_iter()
            .flat_map(|job| &job.warnings)
            .map(|k| JobEvent {
                reason: k.reason.clone(),
                message: k.message.clone(),
                type_: "Warning".to_string(),
            })
            .collect()
    }

    /// Jobs with something kept.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The watch of Warning events about Jobs: each one is kept in `events` (see
/// [`JobEvents::record`]) and passed on when it changed what is kept, for the mapper
/// ([`task_run_of_event`]) to reconcile its TaskRun. Errors are logged where they arise (as the
/// other watches do) and not passed on.
pub fn warning_events(
    api: Api<Event>,
    events: JobEvents,
    jobs: OwnedStore<CachedJob>,
    outage: Arc<OutageLog>,
) -> impl Stream<Item = Result<Event, watcher::Error>> + Send + 'static {
    let config = watcher::Config::default().fields(JOB_EVENTS_FIELD_SELECTOR);
    let mut requests = WatchRequests::default();
    watcher(api, config)
        .backoff(watch_backoff())
        .inspect(move |result| outage.watch_result(&mut requests, result.as_ref().err()))
        .applied_objects()
        .filter_map(move |result| {
            let changed = result.ok().filter(|event| {
                event_of(event).is_some_and(|warning| {
                    events.record(&warning, |ns: &str, name: &str, uid: &str| {
                        job_uid(&jobs, ns, name).as_deref() == Some(uid)
                    })
                })
            });
            std::future::ready(changed.map(Ok))
        })
}

fn job_uid(jobs: &OwnedStore<CachedJob>, namespace: &str, name: &str) -> Option<String> {
    jobs.get(namespace, name)?.metadata.uid.clone()
}

/// The TaskRun controlling the Job an event is about, as the Job cache knows it (the very Job:
/// same uid).
pub fn task_run_of_event(
    jobs: &OwnedStore<CachedJob>,
    event: &Event,
) -> Option<ObjectRef<TaskRun>> {
    let warning = event_of(event)?;
    let job = jobs.get(&warning.namespace, &warning.job_name)?;
    if job.metadata.uid.as_deref() != Some(warning.job_uid.as_str()) {
        return None;
    }
    super::controlling_task_run(&job.metadata, &warning.namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> Event {
        serde_json::from_value(value).unwrap()
    }

    const SA_MESSAGE: &str = "Error creating: pods \"web-42-v1-x\" is forbidden: error looking up service account tasks/agent: serviceaccount \"agent\" not found";

    fn failed_create(at: &str, message: &str) -> Event {
        event(json!({
            "metadata": {"name": "web-42-v1.1", "namespace": "tasks"},
            "involvedObject": {"kind": "Job", "name": "web-42-v1", "namespace": "tasks", "uid": "u1"},
            "reason": "FailedCreate", "message": message, "type": "Warning",
            "lastTimestamp": at,
        }))
    }

    #[test]
    fn which_events_count_and_as_what() {
        // (what, event, (reason, message, time) it counts as)
        type Want<'a> = Option<(&'a str, &'a str, Option<&'a str>)>;
        let cases: Vec<(&str, Event, Want)> = vec![
            (
                "the Job controller's FailedCreate (core/v1)",
                failed_create("2026-01-01T10:00:00Z", SA_MESSAGE),
                Some(("FailedCreate", SA_MESSAGE, Some("2026-01-01T10:00:00Z"))),
            ),
            (
                "written through events.k8s.io/v1: eventTime, no lastTimestamp",
                event(json!({
                    "metadata": {"name": "e", "namespace": "tasks"},
                    "involvedObject": {"kind": "Job", "name": "web-42-v1", "uid": "u1"},
                    "reason": "FailedCreate", "message": "quota", "type": "Warning",
                    "eventTime": "2026-01-01T10:00:01.500000Z",
                })),
                Some(("FailedCreate", "quota", Some("2026-01-01T10:00:01.5Z"))),
            ),
            (
                "no time at all",
                event(json!({
                    "metadata": {"name": "e", "namespace": "tasks"},
                    "involvedObject": {"kind": "Job", "name": "web-42-v1", "uid": "u1"},
                    "reason": "FailedCreate", "type": "Warning",
                })),
                Some(("FailedCreate", "", None)),
            ),
            (
                "Normal events are not trouble",
                event(json!({
                    "metadata": {"name": "e", "namespace": "tasks"},
                    "involvedObject": {"kind": "Job", "name": "web-42-v1", "uid": "u1"},
                    "reason": "SuccessfulCreate", "type": "Normal",
                })),
                None,
            ),
            (
                "about a Pod, not a Job",
                event(json!({
                    "metadata": {"name": "e", "namespace": "tasks"},
                    "involvedObject": {"kind": "Pod", "name": "p", "uid": "u2"},
                    "reason": "Failed", "type": "Warning",
                })),
                None,
            ),
            (
                "no uid: cannot tell which Job of that name",
                event(json!({
                    "metadata": {"name": "e", "namespace": "tasks"},
                    "involvedObject": {"kind": "Job", "name": "web-42-v1"},
                    "reason": "FailedCreate", "type": "Warning",
                })),
                None,
            ),
        ];
        for (what, e, want) in cases {
            let got = event_of(&e);
            let got = got.as_ref().map(|w| {
                assert_eq!(
                    (
                        w.namespace.as_str(),
                        w.job_name.as_str(),
                        w.job_uid.as_str()
                    ),
                    ("tasks", "web-42-v1", "u1"),
                    "{what}"
                );
                (
                    w.reason.as_str(),
                    w.message.as_str(),
                    w.at.map(|t| t.to_string()),
                )
            });
            let want = want.map(|(r, m, t)| (r, m, t.map(str::to_string)));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn the_latest_of_each_reason_is_kept_per_job() {
        let events = JobEvents::default();
        let all = |_: &str, _: &str, _: &str| true;
        let first = event_of(&failed_create("2026-01-01T10:00:00Z", "first")).unwrap();
        let later = event_of(&failed_create("2026-01-01T10:00:10Z", SA_MESSAGE)).unwrap();
        assert!(events.record(&first, all));
        assert!(events.record(&later, all));
        // A relist delivers the older one again: it changes nothing.
        assert!(!events.record(&first, all));
        assert!(!events.record(&later, all));
        assert_eq!(
            events.of_job("u1"),
            [JobEvent {
                reason: "FailedCreate".into(),
                message: SA_MESSAGE.into(),
                type_: "Warning".into()
            }]
        );
        assert!(events.of_job("other").is_empty());
        // Other reasons are kept beside it, oldest first, at most MAX_REASONS_PER_JOB.
        for (i, reason) in ["A", "B", "C", "D"].iter().enumerate() {
            let mut w = later.clone();
            w.reason = reason.to_string();
            w.at = Some(format!("2026-01-01T10:01:0{i}Z").parse().unwrap());
            assert!(events.record(&w, all));
        }
        let reasons: Vec<String> = events.of_job("u1").into_iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["A", "B", "C", "D"]);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn jobs_that_are_gone_are_dropped_as_the_map_grows() {
        let events = JobEvents::default();
        let base = event_of(&failed_create("2026-01-01T10:00:00Z", "m")).unwrap();
        let with_uid = |uid: String| JobWarning {
            job_uid: uid,
            ..base.clone()
        };
        for i in 0..PRUNE_AT {
            events.record(
                &with_uid(format!("gone-{i}")),
                |_: &str, _: &str, _: &str| true,
            );
        }
        assert_eq!(events.len(), PRUNE_AT);
        // The next new Job prunes those the Job cache no longer has.
        events.record(
            &with_uid("live".into()),
            |ns: &str, name: &str, uid: &str| (ns, name, uid) == ("tasks", "web-42-v1", "gone-7"),
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events.of_job("gone-7").len(), 1);
        assert_eq!(events.of_job("live").len(), 1);
    }
}
