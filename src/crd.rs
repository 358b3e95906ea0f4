//! The `TaskRun` custom resource (orchestrator.io/v1): Rust types in, CRD YAML out.
//!
//! `crds/taskrun.yaml` is generated from these types (`orchestrator crd`), never edited by hand.

// kube-derive repeats `printcolumn(name = .., type_ = ..)` keys by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One task folder, as the sync wants it to exist in the cluster.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "orchestrator.io",
    version = "v1",
    kind = "TaskRun",
    namespaced,
    status = "TaskRunStatus",
    derive = "PartialEq",
    shortname = "tr",
    category = "orchestrator",
    doc = "One AI-agent task: the markdown of one task folder at one content version, run as a Job.",
    printcolumn(name = "Task", type_ = "integer", json_path = ".spec.taskId"),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.serviceName"),
    printcolumn(name = "Agent", type_ = "string", json_path = ".spec.agentName"),
    printcolumn(
        name = "Version",
        type_ = "integer",
        json_path = ".spec.contextVersion"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".spec.contentDigest",
        priority = "1"
    ),
    printcolumn(
        name = "Job",
        type_ = "string",
        json_path = ".status.jobName",
        priority = "1"
    ),
    printcolumn(
        name = "Result",
        type_ = "string",
        json_path = ".status.result",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TaskRunSpec {
    /// The numeric prefix of the task folder (`42-login-page` → 42).
    #[schemars(range(min = 0))]
    pub task_id: i64,
    /// The service the task belongs to; a DNS-1123 label.
    pub service_name: String,
    /// The agent profile that runs the task.
    pub agent_name: String,
    /// Identifies one state of the task's content; strictly larger after every change.
    #[schemars(range(min = 1))]
    pub context_version: i64,
    /// `sha256:<hex>` over the canonical encoding of the task folder.
    #[serde(default)]
    pub content_digest: String,
    /// The task folder's path inside the source repository.
    #[serde(default)]
    pub source_path: String,
    /// Every `*.md` file of the folder, in reading order: `prompt.md` first, then natural order
    /// (`context-v2.md` before `context-v10.md`).
    #[serde(default)]
    pub markdown_files: Vec<MarkdownFile>,
    /// `suspend: true` in task.yaml: the TaskRun stays, no Job runs (a running one is suspended).
    /// A scheduling decision: it does not change contextVersion.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
    /// `priority` in task.yaml: when an agent's Jobs are limited, higher starts first. Does not
    /// change contextVersion.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// The largest `status.result` the kubelet keeps of a termination message.
pub const MAX_RESULT_BYTES: usize = 4096;

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkdownFile {
    pub filename: String,
    pub content: String,
}

/// Where a TaskRun's Job is in its life.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum TaskPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl TaskPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskPhase::Succeeded | TaskPhase::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskPhase::Pending => "Pending",
            TaskPhase::Running => "Running",
            TaskPhase::Succeeded => "Succeeded",
            TaskPhase::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for TaskPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskRunStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TaskPhase>,
    /// Why the task is in its phase, one word: Pending (Queued, Suspended, JobCreated,
    /// FailedCreate, Unschedulable, ImagePullBackOff, ErrImagePull, CreateContainerConfigError),
    /// Running, Succeeded, Failed (BackoffLimitExceeded, DeadlineExceeded, Cancelled,
    /// Superseded, Failed). See docs/task-lifecycle.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The Pod of the latest attempt: what `orchestrator logs` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The agent's result: the termination message of its container (at most 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub result: Option<String>,
    /// Retries asked for with `orchestrator.io/retry` and carried out, for this content version.
    #[serde(default)]
    pub retries: i32,
    /// The `orchestrator.io/retry` token the latest retry carried out; another token asks again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// Pods the Job has started for this content version (succeeded + failed + active).
    #[serde(default)]
    pub attempts: i32,
    /// RFC 3339 time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time the current Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// RFC 3339 time the current Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// The contextVersion this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TaskRunCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRunCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// RFC 3339; kept while the condition's status holds.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The CRD generated from the Rust types.
/// `tr` with the controller's finalizer added: what the sync applies when a controller runs.
pub fn with_finalizer(tr: &TaskRun) -> TaskRun {
    let mut tr = tr.clone();
    add_finalizer(&mut tr);
    tr
}

/// Adds the controller's finalizer to `tr` in place (the sync's apply body, not copied).
pub fn add_finalizer(tr: &mut TaskRun) {
    let finalizers = tr.metadata.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == crate::names::FINALIZER) {
        finalizers.push(crate::names::FINALIZER.to_string());
    }
}

pub fn task_run_crd() -> CustomResourceDefinition {
    TaskRun::crd()
}

/// The CRD as YAML, byte for byte what `crds/taskrun.yaml` holds.
pub fn task_run_crd_yaml() -> String {
    let body = serde_norway::to_string(&task_run_crd()).expect("a CRD always serializes");
    format!("# Generated by `orchestrator crd` from src/crd.rs; do not edit by hand.\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_crd_matches_the_rust_types() {
        let on_disk =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/taskrun.yaml"))
                .expect("crds/taskrun.yaml exists");
        assert_eq!(
            on_disk,
            task_run_crd_yaml(),
            "crds/taskrun.yaml is stale: run `cargo run -- crd > crds/taskrun.yaml`"
        );
    }

    #[test]
    fn crd_has_status_subresource_short_name_and_columns() {
        let crd = task_run_crd();
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["tr".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        for wanted in ["Task", "Service", "Agent", "Version", "Phase", "Age"] {
            assert!(
                columns.contains(&wanted),
                "missing column {wanted}: {columns:?}"
            );
        }
    }

    #[test]
    fn attempts_defaults_to_zero_in_the_schema() {
        let yaml = task_run_crd_yaml();
        let value: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        let attempts = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["attempts"];
        assert_eq!(attempts["default"], serde_json::json!(0), "{attempts}");
    }
}
