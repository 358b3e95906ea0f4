//! Resources served under two groups from one storage, as the real server does: events are
//! stored as core/v1 Events and shown as events.k8s.io/v1 Events. Object in, the other
//! version's object out. Pure.

use serde_json::{Map, Value, json};

/// (core/v1 field, events.k8s.io/v1 field); fields not listed keep their name.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(
    obj: &Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
    api_version: &str,
) -> Value {
    let pairs: Vec<_> = pairs.collect();
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            let key = pairs
                .iter()
                .find(|(from, _)| from == k)
                .map_or(k.as_str(), |(_, to)| to);
            out.insert(key.to_string(), v.clone());
        }
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// A stored core/v1 Event as an events.k8s.io/v1 Event.
pub fn event_to_events_v1(core: &Value) -> Value {
    rename(core, EVENT_FIELDS.iter().copied(), "events.k8s.io/v1")
}

/// An events.k8s.io/v1 Event as the core/v1 Event it is stored as.
pub fn event_from_events_v1(ev: &Value) -> Value {
    rename(ev, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)), "v1")
}

/// An events.k8s.io/v1 field selector field as the stored core/v1 field.
pub fn events_v1_field_to_core(field: &str) -> String {
    for (core, v1) in EVENT_FIELDS {
        if field == *v1 {
            return core.to_string();
        }
        if let Some(rest) = field.strip_prefix(&format!("{v1}.")) {
            return format!("{core}.{rest}");
        }
    }
    field.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_between_versions() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "TaskRun", "name": "task-1"}, "note": "started", "reason": "Started",
            "type": "Normal", "reportingController": "orchestrator", "reportingInstance": "pod-1",
            "action": "Reconcile", "eventTime": "2026-01-01T00:00:00.000000Z", "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}});
        let core = event_from_events_v1(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "task-1");
        assert_eq!(core["message"], "started");
        assert_eq!(core["reportingComponent"], "orchestrator");
        assert_eq!(core["series"]["count"], 2);
        assert_eq!(event_to_events_v1(&core), v1);
        assert_eq!(
            events_v1_field_to_core("regarding.name"),
            "involvedObject.name"
        );
        assert_eq!(events_v1_field_to_core("reason"), "reason");
    }
}
