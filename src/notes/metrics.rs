//! The notes writer's Prometheus counters: a registry in, counters the writer and pusher bump out.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters of the notes writer; clones share the same values.
#[derive(Clone, Debug, Default)]
pub struct NotesMetrics {
    /// Notes written (one per annotated commit per change), exposed as `notes_written_total`.
    pub written: Counter,
    /// Pushes of the notes ref the remote accepted: `notes_pushes_total`.
    pub pushes: Counter,
    /// Times the remote had notes we lacked (a merge) or refused a push as non-fast-forward:
    /// `notes_push_conflicts_total`.
    pub push_conflicts: Counter,
    /// Push rounds that failed (unreachable remote, refused credentials, repeated rejection):
    /// `notes_push_failures_total`.
    pub push_failures: Counter,
}

impl NotesMetrics {
    /// Registers the counters into `registry` (prometheus-client appends `_total`).
    pub fn register(registry: &mut Registry) -> NotesMetrics {
        let metrics = NotesMetrics::default();
        registry.register(
            "notes_written",
            "Git notes written on synced commits",
            metrics.written.clone(),
        );
        registry.register(
            "notes_pushes",
            "Pushes of the notes ref accepted by the remote",
            metrics.pushes.clone(),
        );
        registry.register(
            "notes_push_conflicts",
            "Notes pushes that met notes written by another writer (merged or rejected non-fast-forward)",
            metrics.push_conflicts.clone(),
        );
        registry.register(
            "notes_push_failures",
            "Notes push rounds that failed and will be retried",
            metrics.push_failures.clone(),
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exposes_the_four_counters_with_total_suffix() {
        let mut registry = Registry::default();
        let metrics = NotesMetrics::register(&mut registry);
        metrics.written.inc_by(3);
        metrics.push_failures.inc();
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        for line in [
            "notes_written_total 3",
            "notes_pushes_total 0",
            "notes_push_conflicts_total 0",
            "notes_push_failures_total 1",
        ] {
            assert!(out.contains(line), "{line} missing in\n{out}");
        }
    }
}
