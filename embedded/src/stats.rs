//! Request counters by verb and resource, so tests can assert "zero writes" or "N writes per
//! TaskRun": requests in, a [`RequestStats`] snapshot out.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Verbs that change state.
pub const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
/// Verbs that only read.
pub const READ_VERBS: &[&str] = &["get", "list", "watch"];

/// A snapshot of the requests the server answered (any status code) since it started.
///
/// Resources are named `plural[.group][/subresource]`, e.g. `configmaps`,
/// `taskruns.orchestrator.io/status`. Discovery and OpenAPI requests count under `discovery`
/// and are neither reads nor writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// verb → count (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `discovery`).
    pub by_verb: BTreeMap<String, u64>,
    /// resource → verb → count.
    pub by_resource: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RequestStats {
    fn sum(&self, verbs: &[&str]) -> u64 {
        verbs.iter().filter_map(|v| self.by_verb.get(*v)).sum()
    }

    /// create + update + patch + delete + deletecollection.
    pub fn writes(&self) -> u64 {
        self.sum(WRITE_VERBS)
    }

    /// get + list + watch.
    pub fn reads(&self) -> u64 {
        self.sum(READ_VERBS)
    }

    pub fn total(&self) -> u64 {
        self.by_verb.values().sum()
    }

    /// Writes to one resource (`taskruns.orchestrator.io`, or with `/status`).
    pub fn writes_to(&self, resource: &str) -> u64 {
        self.by_resource
            .get(resource)
            .map(|m| WRITE_VERBS.iter().filter_map(|v| m.get(*v)).sum())
            .unwrap_or(0)
    }

    /// Requests with one verb on one resource.
    pub fn count(&self, resource: &str, verb: &str) -> u64 {
        self.by_resource
            .get(resource)
            .and_then(|m| m.get(verb))
            .copied()
            .unwrap_or(0)
    }

    /// What happened between `earlier` and `self` (both snapshots of the same server).
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        let by_verb = self
            .by_verb
            .iter()
            .map(|(v, n)| (v.clone(), n - earlier.by_verb.get(v).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let by_resource = self
            .by_resource
            .iter()
            .map(|(r, verbs)| {
                let before = earlier.by_resource.get(r);
                let diff: BTreeMap<String, u64> = verbs
                    .iter()
                    .map(|(v, n)| {
                        (
                            v.clone(),
                            n - before.and_then(|b| b.get(v)).copied().unwrap_or(0),
                        )
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect();
                (r.clone(), diff)
            })
            .filter(|(_, d)| !d.is_empty())
            .collect();
        RequestStats {
            by_verb,
            by_resource,
        }
    }
}

/// The live counters behind [`RequestStats`].
#[derive(Default)]
pub struct StatsRecorder(Mutex<RequestStats>);

impl StatsRecorder {
    pub fn record(&self, verb: &str, resource: Option<&str>) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *s.by_verb.entry(verb.to_string()).or_default() += 1;
        if let Some(r) = resource {
            *s.by_resource
                .entry(r.to_string())
                .or_default()
                .entry(verb.to_string())
                .or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> RequestStats {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_deltas() {
        let r = StatsRecorder::default();
        r.record("list", Some("configmaps"));
        let before = r.snapshot();
        r.record("create", Some("configmaps"));
        r.record("patch", Some("taskruns.orchestrator.io/status"));
        r.record("watch", Some("configmaps"));
        r.record("discovery", None);
        let now = r.snapshot();
        assert_eq!((now.reads(), now.writes(), now.total()), (2, 2, 5));
        let d = now.since(&before);
        assert_eq!((d.reads(), d.writes()), (1, 2));
        assert_eq!(d.writes_to("configmaps"), 1);
        assert_eq!(d.count("taskruns.orchestrator.io/status", "patch"), 1);
        assert_eq!(d.count("configmaps", "list"), 0);
    }
}
