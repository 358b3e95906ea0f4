//! Rules of built-in kinds that kube-apiserver applies beyond the schema, pure: an object (and
//! the stored one, on update) in, the defaults it gets or the causes it is refused for out.
//!
//! - a Job gets the selector and Pod template labels the Job strategy generates
//!   (`batch.kubernetes.io/controller-uid`, `controller-uid`, `batch.kubernetes.io/job-name`,
//!   `job-name`) and the defaults `completions`, `parallelism`, `backoffLimit`, `suspend`;
//! - a Job's `spec.template` and `spec.selector` are immutable;
//! - an Event written through events.k8s.io/v1 keeps its note, reason, regarding object and
//!   source (reported with the core/v1 field names, as the real server reports them);
//! - a Pod must name a ServiceAccount that exists (the ServiceAccount admission plugin); the
//!   `default` one always exists.

use super::meta::str_at;
use super::status::{ApiError, Cause};
use serde_json::{Value, json};

pub const JOBS_KEY: &str = "jobs.batch";
pub const LABEL_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_LABEL_CONTROLLER_UID: &str = "controller-uid";
pub const LEGACY_LABEL_JOB_NAME: &str = "job-name";

/// Defaults a new object gets (after its uid and name are set).
pub fn default_on_create(key: &str, obj: &mut Value) {
    if key == JOBS_KEY {
        default_job(obj);
    }
}

fn default_job(job: &mut Value) {
    let uid = str_at(job, "/metadata/uid").unwrap_or("").to_string();
    let name = str_at(job, "/metadata/name").unwrap_or("").to_string();
    if !job["spec"].is_object() {
        return;
    }
    let spec = &mut job["spec"];
    if spec["manualSelector"].as_bool() != Some(true) {
        spec["selector"] = json!({"matchLabels": {LABEL_CONTROLLER_UID: uid}});
        if !spec["template"]["metadata"].is_object() {
            spec["template"]["metadata"] = json!({});
        }
        let labels = &mut spec["template"]["metadata"]["labels"];
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in [
            (LABEL_CONTROLLER_UID, &uid),
            (LEGACY_LABEL_CONTROLLER_UID, &uid),
            (LABEL_JOB_NAME, &name),
            (LEGACY_LABEL_JOB_NAME, &name),
        ] {
            labels[k] = json!(v);
        }
    }
    for (field, value) in [
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("suspend", json!(false)),
        ("completionMode", json!("NonIndexed")),
    ] {
        if spec.get(field).is_none_or(Value::is_null) {
            spec[field] = value;
        }
    }
}

fn immutable(field: &str, new: Option<&Value>) -> Cause {
    let shown = new.map_or_else(|| "null".to_string(), Value::to_string);
    Cause::new(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {shown}: field is immutable"),
    )
}

/// Causes an update of a stored object (not its status) is refused for.
pub fn check_update(key: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if key == JOBS_KEY {
        for field in ["template", "selector"] {
            let (o, n) = (old["spec"].get(field), new["spec"].get(field));
            if o != n {
                causes.push(immutable(&format!("spec.{field}"), n));
            }
        }
    }
    causes
}

/// The fields of a core/v1 Event that an update through events.k8s.io/v1 may not change
/// (`note` is stored as `message`, `regarding` as `involvedObject`).
const EVENTS_V1_IMMUTABLE: &[&str] = &[
    "involvedObject",
    "reason",
    "message",
    "source",
    "type",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
];

/// Causes an update through events.k8s.io/v1 is refused for (both objects as stored).
pub fn check_events_v1_update(old: &Value, new: &Value) -> Vec<Cause> {
    EVENTS_V1_IMMUTABLE
        .iter()
        .filter(|f| old.get(**f) != new.get(**f))
        .map(|f| immutable(f, new.get(*f)))
        .collect()
}

/// The ServiceAccount a new Pod runs as, when it must be looked up (not `default`).
pub fn pod_service_account(pod: &Value) -> Option<&str> {
    let sa = str_at(pod, "/spec/serviceAccountName")
        .or_else(|| str_at(pod, "/spec/serviceAccount"))
        .filter(|s| !s.is_empty())?;
    (sa != "default").then_some(sa)
}

/// The ServiceAccount admission plugin's refusal of a Pod whose ServiceAccount is missing.
pub fn missing_service_account(
    namespace: &str,
    sa: &str,
    generate_name: &str,
    name: &str,
) -> ApiError {
    let shown = if name.is_empty() { generate_name } else { name };
    ApiError::forbidden(format!(
        "pods \"{shown}\" is forbidden: error looking up service account {namespace}/{sa}: serviceaccount \"{sa}\" not found"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_job_gets_its_selector_labels_and_defaults() {
        let mut job = json!({"metadata": {"name": "j", "uid": "u1"},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"app": "a"}}, "spec": {}}}});
        default_on_create(JOBS_KEY, &mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {LABEL_CONTROLLER_UID: "u1"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "a", LABEL_CONTROLLER_UID: "u1", "controller-uid": "u1",
                   LABEL_JOB_NAME: "j", "job-name": "j"})
        );
        assert_eq!(job["spec"]["backoffLimit"], 0, "a set value is kept");
        assert_eq!(job["spec"]["completions"], 1);

        let mut manual = json!({"metadata": {"name": "m", "uid": "u2"},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"x": "y"}}, "template": {}}});
        default_on_create(JOBS_KEY, &mut manual);
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"x": "y"}})
        );
    }

    #[test]
    fn job_templates_and_event_notes_are_immutable() {
        let old = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}, "parallelism": 1}});
        let mut scaled = old.clone();
        scaled["spec"]["parallelism"] = json!(2);
        assert!(check_update(JOBS_KEY, &old, &scaled).is_empty());
        let mut changed = old.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["name"] = json!("b");
        let causes = check_update(JOBS_KEY, &old, &changed);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template");
        assert!(
            causes[0].message.ends_with("field is immutable"),
            "{causes:?}"
        );

        let ev = json!({"message": "a", "count": 1});
        let mut more = ev.clone();
        more["count"] = json!(2);
        assert!(check_events_v1_update(&ev, &more).is_empty());
        more["message"] = json!("b");
        assert_eq!(check_events_v1_update(&ev, &more)[0].field, "message");
    }

    #[test]
    fn only_named_service_accounts_other_than_default_are_looked_up() {
        assert_eq!(pod_service_account(&json!({"spec": {}})), None);
        assert_eq!(
            pod_service_account(&json!({"spec": {"serviceAccountName": "default"}})),
            None
        );
        assert_eq!(
            pod_service_account(&json!({"spec": {"serviceAccountName": "agent"}})),
            Some("agent")
        );
    }
}
