//! Server-side Table output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), as
//! `kubectl get` asks for it: objects and printer columns in, a meta.k8s.io/v1 Table out. Pure;
//! the current time is passed in.

use super::resources::ResourceInfo;
use serde_json::{Value, json};

/// Whether the client asked for metadata only (`as=PartialObjectMetadataList`), as kube's
/// `Api::list_metadata` and client-go's metadata informers do.
pub fn wants_partial_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=PartialObjectMetadata"))
}

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        return if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        return if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        };
    }
    let d = h / 24;
    if d < 365 * 2 {
        return format!("{d}d");
    }
    if d < 365 * 8 {
        return format!("{}y{}d", d / 365, d % 365);
    }
    format!("{}y", d / 365)
}

fn lookup<'a>(obj: &'a Value, json_path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in json_path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// The computed Job columns, as kube-apiserver prints them: `succeeded/completions` and the
/// time from `startTime` to `completionTime` (or to now while it runs).
pub const JOB_COMPLETIONS: &str = "#job-completions";
pub const JOB_DURATION: &str = "#job-duration";

fn job_completions(obj: &Value) -> Value {
    let succeeded = obj
        .pointer("/status/succeeded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => json!(format!("{succeeded}/{c}")),
        // No completions: any one success completes the Job (parallelism-driven).
        None => {
            let parallelism = obj
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if parallelism > 1 {
                json!(format!("{succeeded}/1 of {parallelism}"))
            } else {
                json!(format!("{succeeded}/1"))
            }
        }
    }
}

fn job_duration(obj: &Value, now_secs: i64) -> Value {
    let time = |p: &str| obj.pointer(p).and_then(Value::as_str).and_then(parse_time);
    match (time("/status/startTime"), time("/status/completionTime")) {
        (Some(start), Some(end)) => json!(human_duration(end - start)),
        (Some(start), None) => json!(human_duration(now_secs - start)),
        _ => json!(""),
    }
}

fn cell(obj: &Value, col: &super::resources::PrinterColumn, now_secs: i64) -> Value {
    match col.json_path.as_str() {
        JOB_COMPLETIONS => return job_completions(obj),
        JOB_DURATION => return job_duration(obj, now_secs),
        _ => {}
    }
    if col.name == "Secrets" {
        return json!(
            obj.get("secrets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        );
    }
    // Built-in "Data" columns count keys, as the real server prints them.
    if col.name == "Data" {
        let n: usize = ["data", "binaryData"]
            .iter()
            .filter_map(|f| obj.get(*f).and_then(Value::as_object))
            .map(|m| m.len())
            .sum();
        return json!(n);
    }
    match lookup(obj, &col.json_path) {
        None | Some(Value::Null) => Value::Null,
        Some(v) if col.type_ == "date" => match v.as_str().and_then(parse_time) {
            Some(t) => json!(human_duration(now_secs - t)),
            None => v.clone(),
        },
        Some(v) => v.clone(),
    }
}

/// One object reduced to its metadata, as in Tables and metadata-only lists.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
    })
}

/// The Table for `objects`; `include_object` is the request's `includeObject` (`None`,
/// `Object` or the default `Metadata`).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include_object: &str,
    now_secs: i64,
) -> Value {
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0,
    })];
    for c in &info.printer_columns {
        columns.push(json!({
            "name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
            "format": if c.type_ == "date" { "date" } else { "" },
            "description": c.description, "priority": c.priority,
        }));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(info.printer_columns.iter().map(|c| cell(o, c, now_secs)));
            let mut row = json!({"cells": cells});
            match include_object {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = partial_metadata(o),
            }
            row
        })
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
            (400 * 86400, "400d"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn task_run_table_has_printer_columns() {
        let crd = crate::testdata::example_crd();
        let info = &super::super::resources::crd_resources(&crd)[0];
        let obj = json!({"metadata": {"name": "task-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"taskId": 1, "serviceName": "svc"}, "status": {"phase": "Running"}});
        let now = parse_time("2026-01-01T00:05:00Z").unwrap();
        let t = table(info, &[obj], "9", None, "Metadata", now);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(&names[..4], &["Name", "Task", "Service", "Agent"]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "task-1");
        assert_eq!(cells[1], 1);
        assert_eq!(cells[5], "Running");
        assert_eq!(cells[6], "5m");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
