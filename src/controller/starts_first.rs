//! Starts before reports. When many TaskRuns land at once (a sync of a large batch of new tasks,
//! or the controller starting with much to do), kube-runtime's runner takes the waiting
//! reconciles in no particular order once its slots are full, so the reports on Jobs already
//! running (a status write, an event) compete for the API server with the creates of Jobs not
//! started yet, and the last agent starts only after most reports are written.
//!
//! So while some TaskRun waits for the controller's first look (new, or changed since it was
//! last looked at), a reconcile that would only report leaves its writes for later. It is asked
//! for again as soon as every waiting TaskRun has been looked at, and at the latest after
//! [`MAX_DEFERRAL`], so a steady stream of new TaskRuns delays reports by that much at most.
//! What is written then is the state of that moment: a Job that started and ended meanwhile is
//! reported once, as Succeeded or Failed, with one event.

use crate::crd::TaskRun;
use crate::desired::TextHash;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// The longest a report waits for the starts.
pub const MAX_DEFERRAL: Duration = Duration::from_secs(30);

/// How much longer a report waits: `None` to write it now. `waiting` counts the other TaskRuns
/// not looked at yet; `deferred_for` is how long this report has waited so far.
pub fn report_delay(waiting: usize, deferred_for: Duration) -> Option<Duration> {
    (waiting > 0 && deferred_for < MAX_DEFERRAL).then(|| MAX_DEFERRAL - deferred_for)
}

/// Which TaskRuns wait for their first look, and which reports wait for them.
#[derive(Default)]
pub struct StartsFirst {
    state: Mutex<State>,
    /// Asks for the reconcile of a TaskRun whose report may go now; none: reports never wait.
    wake: Option<UnboundedSender<ObjectRef<TaskRun>>>,
}

/// A TaskRun's uid as a 64-bit hash: three tables of 10,000 uids as strings cost the
/// controller megabytes, and two uids that collide only let a report go early.
type Uid = u64;

fn uid_of(tr: &TaskRun) -> Option<Uid> {
    tr.metadata.uid.as_deref().map(|uid| TextHash::of(uid).0)
}

#[derive(Default)]
struct State {
    /// The generation last looked at, by TaskRun uid.
    looked_at: HashMap<Uid, i64>,
    /// TaskRuns (uid) seen at a generation not looked at yet.
    waiting: HashSet<Uid>,
    /// Reports left for later, by TaskRun uid: whose, and since when.
    deferred: HashMap<Uid, (ObjectRef<TaskRun>, Instant)>,
    /// The uids of a relist in progress: what the relist did not show was deleted meanwhile.
    relisted: Option<HashSet<Uid>>,
}

impl StartsFirst {
    /// Reports wait for starts; `wake` asks for a reconcile when a report may go.
    pub fn new(wake: UnboundedSender<ObjectRef<TaskRun>>) -> StartsFirst {
        StartsFirst {
            state: Mutex::default(),
            wake: Some(wake),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the TaskRun watch (before its store sees the event).
    pub fn watch_event(&self, event: &watcher::Event<TaskRun>) {
        if self.wake.is_none() {
            return;
        }
        let mut state = self.state();
        match event {
            watcher::Event::Init => state.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(tr) => {
                if let (Some(relisted), Some(uid)) = (&mut state.relisted, uid_of(tr)) {
                    relisted.insert(uid);
                }
                state.saw(tr);
            }
            watcher::Event::Apply(tr) => state.saw(tr),
            watcher::Event::Delete(tr) => {
                if let Some(uid) = uid_of(tr) {
                    state.forget(|u| u == uid);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = state.relisted.take() {
                    state.forget(|uid| !relisted.contains(&uid));
                }
            }
        }
        self.wake_if_none_wait(&mut state);
    }

    /// A reconcile of `tr` ended (its Job created, or not to be): it no longer waits for its
    /// first look.
    pub fn looked_at(&self, tr: &TaskRun) {
        let Some(uid) = uid_of(tr) else { return };
        let mut state = self.state();
        state
            .looked_at
            .insert(uid, tr.metadata.generation.unwrap_or_default());
        state.waiting.remove(&uid);
        self.wake_if_none_wait(&mut state);
    }

    /// Whether `tr`'s report may be written now (`None`), or how long it waits at most.
    pub fn report_delay(&self, tr: &TaskRun, now: Instant) -> Option<Duration> {
        let uid = uid_of(tr)?;
        let mut state = self.state();
        // Not counting `tr` itself, whose reconcile this is.
        let waiting = state.waiting.len() - usize::from(state.waiting.contains(&uid));
        let since = match state.deferred.get(&uid) {
            Some((_, since)) => *since,
            None if waiting == 0 => return None,
            None => now,
        };
        let delay = report_delay(waiting, now.saturating_duration_since(since));
        match delay {
            // Name and namespace only: what the wake needs.
            Some(_) => state.deferred.entry(uid).or_insert_with(|| {
                let name = ObjectRef::new(&tr.name_any());
                (name.within(&tr.namespace().unwrap_or_default()), now)
            }),
            None => {
                state.deferred.remove(&uid);
                return None;
            }
        };
        delay
    }

    /// When no TaskRun waits any more, asks for every report left for later.
    fn wake_if_none_wait(&self, state: &mut State) {
        let Some(wake) = &self.wake else { return };
        if !state.waiting.is_empty() || state.deferred.is_empty() {
            return;
        }
        tracing::debug!(
            reports = state.deferred.len(),
            "every TaskRun was looked at; the reports left for later go now"
        );
        for (_, (task_run, _)) in state.deferred.drain() {
            let _ = wake.send(task_run);
        }
    }
}

impl State {
    fn saw(&mut self, tr: &TaskRun) {
        let Some(uid) = uid_of(tr) else { return };
        // A TaskRun being deleted is cleaned up, not started.
        if tr.metadata.deletion_timestamp.is_some() {
            self.waiting.remove(&uid);
        } else if self.looked_at.get(&uid) != Some(&tr.metadata.generation.unwrap_or_default()) {
            tracing::trace!(task_run = %tr.name_any(), "waits for its first look");
            self.waiting.insert(uid);
        }
    }

    fn forget(&mut self, gone: impl Fn(Uid) -> bool) {
        self.looked_at.retain(|uid, _| !gone(*uid));
        self.waiting.retain(|uid| !gone(*uid));
        self.deferred.retain(|uid, _| !gone(*uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn a_report_waits_while_others_wait_for_their_first_look_and_never_longer_than_the_cap() {
        let s = Duration::from_secs;
        // (TaskRuns waiting, waited so far, expected)
        let table = [
            (0, s(0), None),
            (0, s(10), None),
            (1, s(0), Some(MAX_DEFERRAL)),
            (500, s(10), Some(MAX_DEFERRAL - s(10))),
            (1, MAX_DEFERRAL, None),
            (1, MAX_DEFERRAL + s(1), None),
        ];
        for (waiting, waited, expected) in table {
            assert_eq!(
                report_delay(waiting, waited),
                expected,
                "{waiting} waiting, waited {waited:?}"
            );
        }
    }

    fn task_run(name: &str, generation: i64) -> TaskRun {
        let mut tr = crate::controller::children::tests::task_run("svc", 1, 1);
        tr.metadata.name = Some(name.into());
        tr.metadata.namespace = Some("ns".into());
        tr.metadata.uid = Some(format!("uid-{name}"));
        tr.metadata.generation = Some(generation);
        tr
    }

    fn woken(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ObjectRef<TaskRun>>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(r) = rx.try_recv() {
            names.push(r.name);
        }
        names.sort();
        names
    }

    #[test]
    fn reports_wait_for_the_first_looks_and_are_asked_for_when_the_last_is_done() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let starts = StartsFirst::new(tx);
        let now = Instant::now();
        let (a, b, c) = (task_run("a", 1), task_run("b", 1), task_run("c", 1));
        for tr in [&a, &b, &c] {
            starts.watch_event(&watcher::Event::Apply(tr.clone()));
        }
        starts.looked_at(&a);
        assert_eq!(
            starts.report_delay(&a, now),
            Some(MAX_DEFERRAL),
            "b and c wait"
        );
        starts.looked_at(&b);
        assert_eq!(
            starts.report_delay(&a, now + Duration::from_secs(1)),
            Some(MAX_DEFERRAL - Duration::from_secs(1)),
            "the wait counts from the first deferral"
        );
        assert_eq!(woken(&mut rx), Vec::<String>::new());
        starts.looked_at(&c);
        assert_eq!(
            woken(&mut rx),
            ["a"],
            "asked for once the last first look ended"
        );
        assert_eq!(starts.report_delay(&a, now), None);
        assert_eq!(starts.report_delay(&b, now), None);

        // A status write changes no generation: no new wait; a spec change does.
        starts.watch_event(&watcher::Event::Apply(b.clone()));
        assert_eq!(starts.report_delay(&a, now), None);
        starts.watch_event(&watcher::Event::Apply(task_run("b", 2)));
        assert!(starts.report_delay(&a, now).is_some());
        starts.looked_at(&task_run("b", 2));
        assert_eq!(woken(&mut rx), ["a"]);
    }

    #[test]
    fn a_deleted_or_deleting_task_run_is_not_waited_for() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let starts = StartsFirst::new(tx);
        let now = Instant::now();
        let (a, b) = (task_run("a", 1), task_run("b", 1));
        starts.watch_event(&watcher::Event::Apply(a.clone()));
        starts.watch_event(&watcher::Event::Apply(b.clone()));
        starts.looked_at(&a);
        assert!(starts.report_delay(&a, now).is_some());
        starts.watch_event(&watcher::Event::Delete(b.clone()));
        assert_eq!(woken(&mut rx), ["a"]);

        let mut deleting = task_run("d", 1);
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        starts.watch_event(&watcher::Event::Apply(deleting));
        assert_eq!(starts.report_delay(&a, now), None);
    }

    #[test]
    fn a_relist_forgets_the_task_runs_deleted_while_the_watch_was_away() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let starts = StartsFirst::new(tx);
        let now = Instant::now();
        let (a, gone) = (task_run("a", 1), task_run("gone", 1));
        starts.watch_event(&watcher::Event::Apply(a.clone()));
        starts.watch_event(&watcher::Event::Apply(gone.clone()));
        starts.looked_at(&a);
        assert!(starts.report_delay(&a, now).is_some());
        starts.watch_event(&watcher::Event::Init);
        starts.watch_event(&watcher::Event::InitApply(a.clone()));
        starts.watch_event(&watcher::Event::InitDone);
        assert_eq!(woken(&mut rx), ["a"]);
        assert_eq!(starts.report_delay(&a, now), None);
    }

    #[test]
    fn without_a_wake_channel_reports_never_wait() {
        let starts = StartsFirst::default();
        let (a, b) = (task_run("a", 1), task_run("b", 1));
        starts.watch_event(&watcher::Event::Apply(a.clone()));
        starts.watch_event(&watcher::Event::Apply(b));
        starts.looked_at(&a);
        assert_eq!(starts.report_delay(&a, Instant::now()), None);
    }
}
