//! The queue's plan, computed once over every TaskRun and shared by the reconciles that read it,
//! instead of once per reconcile (which made a controller with a running limit quadratic in the
//! number of TaskRuns: 29 s of CPU for 1,000 TaskRuns behind `--max-running 200`).
//!
//! A plan stays right while it is reused:
//! - the TaskRuns it lets start are counted as running in it, so starting them (one after
//!   another, each under the start lock) leaves its decisions for the others unchanged;
//! - a freed slot makes it too strict, never too lax: the Job watch (or the finished TaskRun's
//!   reconcile) asks for a new plan through [`Kicks`], and the kicker computes one at once;
//! - a TaskRun it does not know (created since) gets a new plan before it is decided;
//! - anything else that changes it (a priority edited, a Job resumed by hand) is taken in within
//!   [`PLAN_MAX_AGE`].
//!
//! Plans are computed and stored only under the start lock, so a plan never misses a start that
//! another reconcile reserved while it was being computed.

use super::lifecycle::QueueSlot;
use super::queue::QueuePlan;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a plan decides starts at most.
pub const PLAN_MAX_AGE: Duration = Duration::from_secs(1);

/// How long a plan tells a TaskRun that it waits, at most. Longer than [`PLAN_MAX_AGE`]: a plan
/// only ever grows too strict for the TaskRuns it has waiting when a slot frees, and every
/// freed slot makes a new plan at once (the kicker); what else frees a slot (a profile's
/// `maxConcurrent` raised) is taken in within this long.
pub const QUEUED_MAX_AGE: Duration = Duration::from_secs(10);

/// How long the kicker waits after the first freed slot for others, so that a wave of Jobs that
/// end together makes one plan, not one each; at least twice as long as the last plan took, so
/// that planning takes at most a third of one core however many TaskRuns there are.
pub const KICK_COALESCE: Duration = Duration::from_millis(20);

/// One plan of one namespace, indexed by TaskRun name.
#[derive(Debug)]
pub struct SharedPlan {
    computed: Instant,
    plan: QueuePlan,
    /// Every TaskRun the plan placed: `None` may start, `Some(i)` waits as `plan.queued[i]`.
    placed: HashMap<String, Option<usize>>,
}

/// Where a plan puts one TaskRun.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    Start,
    Queued(QueueSlot),
}

impl SharedPlan {
    pub fn new(plan: QueuePlan, computed: Instant) -> SharedPlan {
        let mut placed = HashMap::with_capacity(plan.start.len() + plan.queued.len());
        for name in &plan.start {
            placed.insert(name.clone(), None);
        }
        for (i, q) in plan.queued.iter().enumerate() {
            placed.insert(q.name.clone(), Some(i));
        }
        SharedPlan {
            computed,
            plan,
            placed,
        }
    }

    pub fn plan(&self) -> &QueuePlan {
        &self.plan
    }

    /// Where this plan puts `name`: `None` when it does not know it (created since, or wanting
    /// no Job when the plan was made).
    pub fn placement(&self, name: &str) -> Option<Placement> {
        match self.placed.get(name)? {
            None => Some(Placement::Start),
            Some(i) => {
                let q = &self.plan.queued[*i];
                Some(Placement::Queued(QueueSlot {
                    position: q.position,
                    waiting: q.waiting,
                    limit: q.limit.clone(),
                }))
            }
        }
    }
}

/// The latest plan per namespace.
#[derive(Default)]
pub struct PlanCache(Mutex<HashMap<String, Arc<SharedPlan>>>);

impl PlanCache {
    /// Where the latest plan of `namespace` puts `name`, if that plan is younger than `max_age`
    /// at `now` ([`PLAN_MAX_AGE`] to start, [`QUEUED_MAX_AGE`] to wait).
    pub fn placement(
        &self,
        namespace: &str,
        name: &str,
        now: Instant,
        max_age: Duration,
    ) -> Option<Placement> {
        let plans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let plan = plans.get(namespace)?;
        if now.saturating_duration_since(plan.computed) >= max_age {
            return None;
        }
        plan.placement(name)
    }

    /// Keeps `plan` as the latest of `namespace`. Only under the start lock (see the module).
    pub fn store(&self, namespace: &str, plan: SharedPlan) -> Arc<SharedPlan> {
        let plan = Arc::new(plan);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(namespace.to_string(), plan.clone());
        plan
    }
}

/// Writes of a moved queue place (see [`super::status::QUEUE_POSITION_REFRESH`]) allowed per
/// second over all TaskRuns: with thousands waiting, refreshing every place every 30 s would be
/// hundreds of writes a second, each triggering a reconcile, for a number nobody acts on. A
/// refresh that finds no token waits for the TaskRun's next periodic look.
pub const QUEUE_REFRESHES_PER_SECOND: f64 = 20.0;

/// A token bucket of [`QUEUE_REFRESHES_PER_SECOND`], as many at once.
pub struct RefreshBudget(Mutex<(Instant, f64)>);

impl Default for RefreshBudget {
    fn default() -> Self {
        RefreshBudget(Mutex::new((Instant::now(), QUEUE_REFRESHES_PER_SECOND)))
    }
}

impl RefreshBudget {
    /// Takes a token if there is one at `now`.
    pub fn take(&self, now: Instant) -> bool {
        let mut bucket = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (last, tokens) = &mut *bucket;
        let earned =
            now.saturating_duration_since(*last).as_secs_f64() * QUEUE_REFRESHES_PER_SECOND;
        *tokens = (*tokens + earned).min(QUEUE_REFRESHES_PER_SECOND);
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Namespaces whose queue should be planned again because a slot was freed; the kicker (see
/// `reconcile::kick_queues`) takes them.
#[derive(Default)]
pub struct Kicks {
    namespaces: Mutex<BTreeSet<String>>,
    asked: tokio::sync::Notify,
}

impl Kicks {
    /// Cheap and synchronous: called from watch streams and reconciles.
    pub fn ask(&self, namespace: &str) {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if !namespaces.contains(namespace) {
            namespaces.insert(namespace.to_string());
        }
        drop(namespaces);
        // Stores a permit when the kicker is busy, so an ask is never lost.
        self.asked.notify_one();
    }

    /// Waits for an ask, then `pause` longer for the ones that come with it; the namespaces.
    pub async fn next(&self, pause: Duration) -> BTreeSet<String> {
        self.asked.notified().await;
        tokio::time::sleep(pause).await;
        std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::queue::Queued;

    fn plan() -> QueuePlan {
        QueuePlan {
            start: vec!["a".into()],
            queued: vec![Queued {
                name: "b".into(),
                agent: "x".into(),
                position: 1,
                waiting: 1,
                limit: "agent x runs 1 of maxConcurrent 1".into(),
            }],
        }
    }

    #[test]
    fn a_plan_places_what_it_knows_while_it_is_young() {
        let cache = PlanCache::default();
        let t0 = Instant::now();
        let at = |ns, name, now| cache.placement(ns, name, now, PLAN_MAX_AGE);
        assert_eq!(at("ns", "a", t0), None, "no plan yet");
        cache.store("ns", SharedPlan::new(plan(), t0));
        assert_eq!(at("ns", "a", t0), Some(Placement::Start));
        let Some(Placement::Queued(slot)) = at("ns", "b", t0) else {
            panic!("b waits");
        };
        assert_eq!((slot.position, slot.waiting), (1, 1));
        assert_eq!(at("ns", "c", t0), None, "created since");
        assert_eq!(at("other", "a", t0), None, "per namespace");
        let later = t0 + PLAN_MAX_AGE;
        assert_eq!(at("ns", "a", later), None, "too old to start");
        assert!(
            cache.placement("ns", "b", later, QUEUED_MAX_AGE).is_some(),
            "not too old to wait"
        );
    }

    #[test]
    fn queue_place_refreshes_are_limited_per_second() {
        let budget = RefreshBudget::default();
        let t0 = Instant::now();
        let burst = (0..100).filter(|_| budget.take(t0)).count();
        assert_eq!(
            burst, QUEUE_REFRESHES_PER_SECOND as usize,
            "a second's worth at once"
        );
        assert!(!budget.take(t0));
        let half = t0 + Duration::from_millis(500);
        let later = (0..100).filter(|_| budget.take(half)).count();
        assert_eq!(
            later,
            (QUEUE_REFRESHES_PER_SECOND / 2.0) as usize,
            "earned in 0.5 s"
        );
        let much_later = half + Duration::from_secs(60);
        let capped = (0..100).filter(|_| budget.take(much_later)).count();
        assert_eq!(
            capped, QUEUE_REFRESHES_PER_SECOND as usize,
            "never more than a second's worth"
        );
    }

    #[tokio::test]
    async fn asks_that_come_together_are_taken_together_and_none_is_lost() {
        let kicks = Kicks::default();
        kicks.ask("a");
        kicks.ask("b");
        kicks.ask("a");
        let taken = kicks.next(KICK_COALESCE).await;
        assert_eq!(taken.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        // An ask while nobody waits is kept for the next wait.
        kicks.ask("c");
        let taken = tokio::time::timeout(Duration::from_secs(5), kicks.next(KICK_COALESCE))
            .await
            .expect("the ask was kept");
        assert_eq!(taken.into_iter().collect::<Vec<_>>(), ["c"]);
    }
}
