//! The queue: every TaskRun that wants a Job or runs one, each agent's `maxConcurrent` and the
//! global cap (`--max-running`) in; which waiting TaskRuns may start a Job now, and the place of
//! each one that must wait, out. Pure, and derived from cluster state alone, so it survives a
//! restart.
//!
//! Order: higher `priority` first, then the earlier commit that introduced the task's current
//! version, then the smaller task id. A task held back by its agent's limit does not hold back
//! tasks of other agents.

use super::job_phase::holds_slot;
use k8s_openapi::api::batch::v1::Job;
use std::cmp::Reverse;
use std::collections::BTreeMap;

/// One TaskRun as the queue sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub name: String,
    pub agent: String,
    pub task_id: i64,
    pub priority: i32,
    /// Order of the commit that introduced the current version (e.g. its commit time in
    /// seconds); `None` sorts after every known one.
    pub introduced: Option<i64>,
    pub state: EntryState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Has a Job that is not finished and not suspended: takes a slot.
    Running,
    /// Wants a Job (not suspended, not finished) and has none yet.
    Waiting,
}

/// Limits: per agent (`maxConcurrent`) and over all agents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub per_agent: BTreeMap<String, u32>,
    pub global: Option<u32>,
}

/// A waiting TaskRun that may not start yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub name: String,
    pub agent: String,
    /// 1-based, among the tasks waiting for the same limit.
    pub position: usize,
    pub waiting: usize,
    /// The full limit, for the message: `agent codex runs 5 of maxConcurrent 5`.
    pub limit: String,
}

/// The decision: names that may create their Job now, in start order, and the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueuePlan {
    pub start: Vec<String>,
    pub queued: Vec<Queued>,
}

impl QueuePlan {
    /// `taskrun_queued` per agent.
    pub fn queued_per_agent(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for q in &self.queued {
            *counts.entry(q.agent.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

/// Where one TaskRun stands: `job` is its current attempt's Job as last seen (or just created);
/// `held` says it wants no Job (suspended, its run finished, or cancelled). `None`: neither takes
/// a slot nor waits for one.
pub fn entry_state(job: Option<&Job>, held: bool) -> Option<EntryState> {
    match job {
        Some(job) => holds_slot(
            job.spec.as_ref().and_then(|s| s.suspend),
            job.status.as_ref(),
        )
        .then_some(EntryState::Running),
        None => (!held).then_some(EntryState::Waiting),
    }
}

/// When the commit that introduced a TaskRun's current version was made, in seconds: the sync's
/// `orchestrator.io/revision-time` annotation; for a TaskRun without one (made by hand, or
/// written before orchestrator recorded it) the TaskRun's creation time. Both are cluster state,
/// so the order survives a restart.
pub fn introduced_at(
    annotations: Option<&BTreeMap<String, String>>,
    created: Option<k8s_openapi::jiff::Timestamp>,
) -> Option<i64> {
    annotations
        .and_then(|a| a.get(crate::names::ANNOTATION_REVISION_TIME))
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .or(created)
        .map(|t| t.as_second())
}

/// The start order of waiting entries.
pub fn queue_key(e: &QueueEntry) -> (Reverse<i32>, bool, i64, i64) {
    (
        Reverse(e.priority),
        e.introduced.is_none(),
        e.introduced.unwrap_or(0),
        e.task_id,
    )
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Blocker<'a> {
    Global,
    Agent(&'a str),
}

pub fn plan_queue(entries: &[QueueEntry], limits: &Limits) -> QueuePlan {
    let mut running_per_agent: BTreeMap<&str, u32> = BTreeMap::new();
    let mut running = 0u32;
    for e in entries.iter().filter(|e| e.state == EntryState::Running) {
        *running_per_agent.entry(e.agent.as_str()).or_insert(0) += 1;
        running += 1;
    }
    let mut waiting: Vec<&QueueEntry> = entries
        .iter()
        .filter(|e| e.state == EntryState::Waiting)
        .collect();
    waiting.sort_by_key(|e| queue_key(e));

    let mut plan = QueuePlan::default();
    let mut held: Vec<(&QueueEntry, Blocker<'_>)> = Vec::new();
    for e in waiting {
        let agent_max = limits.per_agent.get(&e.agent).copied();
        let agent_running = running_per_agent
            .get(e.agent.as_str())
            .copied()
            .unwrap_or(0);
        if agent_max.is_some_and(|max| agent_running >= max) {
            held.push((e, Blocker::Agent(&e.agent)));
        } else if limits.global.is_some_and(|max| running >= max) {
            held.push((e, Blocker::Global));
        } else {
            plan.start.push(e.name.clone());
            *running_per_agent.entry(e.agent.as_str()).or_insert(0) += 1;
            running += 1;
        }
    }
    let mut totals: BTreeMap<Blocker<'_>, usize> = BTreeMap::new();
    for (_, b) in &held {
        *totals.entry(*b).or_insert(0) += 1;
    }
    let mut seen: BTreeMap<Blocker<'_>, usize> = BTreeMap::new();
    for (e, b) in held {
        let position = seen.entry(b).or_insert(0);
        *position += 1;
        let limit = match b {
            Blocker::Agent(agent) => format!(
                "agent {agent} runs {} of maxConcurrent {}",
                running_per_agent.get(agent).copied().unwrap_or(0),
                limits.per_agent.get(agent).copied().unwrap_or(0)
            ),
            Blocker::Global => format!(
                "all agents run {running} of --max-running {}",
                limits.global.unwrap_or(0)
            ),
        };
        plan.queued.push(Queued {
            name: e.name.clone(),
            agent: e.agent.clone(),
            position: *position,
            waiting: totals[&b],
            limit,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, agent: &str, state: EntryState) -> QueueEntry {
        QueueEntry {
            name: format!("task-{id}"),
            agent: agent.into(),
            task_id: id,
            priority: 0,
            introduced: Some(100),
            state,
        }
    }

    fn waiting(id: i64, agent: &str) -> QueueEntry {
        entry(id, agent, EntryState::Waiting)
    }

    fn running(id: i64, agent: &str) -> QueueEntry {
        entry(id, agent, EntryState::Running)
    }

    fn limits(per_agent: &[(&str, u32)], global: Option<u32>) -> Limits {
        Limits {
            per_agent: per_agent.iter().map(|(a, n)| (a.to_string(), *n)).collect(),
            global,
        }
    }

    #[test]
    fn the_commit_order_comes_from_the_revision_time_else_the_creation_time() {
        let ts = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap();
        let annotated = |v: &str| {
            BTreeMap::from([(
                crate::names::ANNOTATION_REVISION_TIME.to_string(),
                v.to_string(),
            )])
        };
        let created = Some(ts("2026-01-02T00:00:00Z"));
        let cases = [
            (
                "the commit time",
                Some(annotated("2026-01-01T00:00:10Z")),
                created,
                Some(1_767_225_610),
            ),
            ("no annotation: created", None, created, Some(1_767_312_000)),
            (
                "unreadable: created",
                Some(annotated("yesterday")),
                created,
                Some(1_767_312_000),
            ),
            ("nothing known", Some(BTreeMap::new()), None, None),
        ];
        for (what, annotations, created, want) in cases {
            assert_eq!(introduced_at(annotations.as_ref(), created), want, "{what}");
        }
    }

    #[test]
    fn which_tasks_start_and_where_the_rest_wait() {
        let pri = |mut e: QueueEntry, p: i32| {
            e.priority = p;
            e
        };
        let at = |mut e: QueueEntry, t: Option<i64>| {
            e.introduced = t;
            e
        };
        // (name, entries, limits, started, queued as (name, position, waiting))
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            Vec<QueueEntry>,
            Limits,
            Vec<&str>,
            Vec<(&str, usize, usize)>,
        )> = vec![
            (
                "no limits: everything starts, by task id",
                vec![waiting(3, "a"), waiting(1, "a"), waiting(2, "b")],
                limits(&[], None),
                vec!["task-1", "task-2", "task-3"],
                vec![],
            ),
            (
                "maxConcurrent 2 with one running: one starts, the rest queue in order",
                vec![
                    running(9, "a"),
                    waiting(3, "a"),
                    waiting(1, "a"),
                    waiting(2, "a"),
                ],
                limits(&[("a", 2)], None),
                vec!["task-1"],
                vec![("task-2", 1, 2), ("task-3", 2, 2)],
            ),
            (
                "a full agent does not hold back another agent",
                vec![running(9, "a"), waiting(1, "a"), waiting(2, "b")],
                limits(&[("a", 1)], None),
                vec!["task-2"],
                vec![("task-1", 1, 1)],
            ),
            (
                "priority first, then the earlier commit, then task id",
                vec![
                    at(waiting(1, "a"), Some(300)),
                    at(waiting(2, "a"), Some(200)),
                    pri(at(waiting(3, "a"), Some(400)), 5),
                    at(waiting(4, "a"), None),
                    at(waiting(5, "a"), Some(200)),
                ],
                limits(&[("a", 1)], None),
                vec!["task-3"],
                vec![
                    ("task-2", 1, 4),
                    ("task-5", 2, 4),
                    ("task-1", 3, 4),
                    ("task-4", 4, 4),
                ],
            ),
            (
                "negative priority waits behind the default",
                vec![pri(waiting(1, "a"), -1), waiting(2, "a")],
                limits(&[("a", 1)], None),
                vec!["task-2"],
                vec![("task-1", 1, 1)],
            ),
            (
                "global cap across agents",
                vec![
                    running(9, "a"),
                    waiting(1, "a"),
                    waiting(2, "b"),
                    waiting(3, "b"),
                ],
                limits(&[], Some(2)),
                vec!["task-1"],
                vec![("task-2", 1, 2), ("task-3", 2, 2)],
            ),
            (
                "agent limit and global cap: each queue counts its own",
                vec![
                    running(8, "a"),
                    waiting(1, "a"),
                    waiting(2, "b"),
                    waiting(3, "c"),
                ],
                limits(&[("a", 1)], Some(2)),
                vec!["task-2"],
                vec![("task-1", 1, 1), ("task-3", 1, 1)],
            ),
            (
                "more running than the limit (limit lowered): nothing starts, nothing is stopped",
                vec![running(7, "a"), running(8, "a"), waiting(1, "a")],
                limits(&[("a", 1)], None),
                vec![],
                vec![("task-1", 1, 1)],
            ),
        ];
        for (name, entries, limits, start, queued) in cases {
            let plan = plan_queue(&entries, &limits);
            assert_eq!(plan.start, start, "{name}");
            let got: Vec<(&str, usize, usize)> = plan
                .queued
                .iter()
                .map(|q| (q.name.as_str(), q.position, q.waiting))
                .collect();
            assert_eq!(got, queued, "{name}");
        }
    }

    #[test]
    fn queued_messages_name_the_full_limit_and_counts_per_agent() {
        let entries = vec![
            running(9, "codex"),
            waiting(1, "codex"),
            waiting(2, "codex"),
            waiting(3, "aider"),
        ];
        let plan = plan_queue(&entries, &limits(&[("codex", 1)], Some(2)));
        let limits: Vec<&str> = plan.queued.iter().map(|q| q.limit.as_str()).collect();
        assert_eq!(
            limits,
            [
                "agent codex runs 1 of maxConcurrent 1",
                "agent codex runs 1 of maxConcurrent 1",
            ]
        );
        assert_eq!(plan.start, ["task-3"]);
        assert_eq!(plan.queued_per_agent(), BTreeMap::from([("codex", 2)]));
        let global = plan_queue(&entries, &limits_of_global());
        assert_eq!(
            global.queued[0].limit,
            "all agents run 1 of --max-running 1"
        );
    }

    fn limits_of_global() -> Limits {
        limits(&[], Some(1))
    }

    #[test]
    fn two_hundred_tasks_two_agents_never_exceed_five_each() {
        // Simulate rounds: start what the plan allows, finish everything running, repeat.
        let mut entries: Vec<QueueEntry> = (1..=200)
            .map(|i| waiting(i, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        let limits = limits(&[("a", 5), ("b", 5)], None);
        let mut rounds = 0;
        while entries.iter().any(|e| e.state == EntryState::Waiting) {
            let plan = plan_queue(&entries, &limits);
            for e in entries.iter_mut() {
                if plan.start.contains(&e.name) {
                    e.state = EntryState::Running;
                }
            }
            for agent in ["a", "b"] {
                let n = entries
                    .iter()
                    .filter(|e| e.agent == agent && e.state == EntryState::Running)
                    .count();
                assert!(n <= 5, "agent {agent} runs {n}");
            }
            entries.retain(|e| e.state == EntryState::Waiting);
            rounds += 1;
        }
        assert_eq!(rounds, 20);
    }
    #[test]
    fn entry_states() {
        use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
        let job = |suspend: Option<bool>, complete: bool| Job {
            spec: Some(JobSpec {
                suspend,
                ..JobSpec::default()
            }),
            status: complete.then(|| JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
            ..Job::default()
        };
        let cases = [
            (Some(job(None, false)), false, Some(EntryState::Running)),
            (
                Some(job(Some(false), false)),
                true,
                Some(EntryState::Running),
            ),
            (Some(job(Some(true), false)), false, None),
            (Some(job(None, true)), false, None),
            (None, false, Some(EntryState::Waiting)),
            (None, true, None),
        ];
        for (job, held, want) in cases {
            assert_eq!(entry_state(job.as_ref(), held), want, "{job:?} {held}");
        }
    }
}
