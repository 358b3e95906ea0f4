//! A fixture custom resource for the server's tests: a copy of orchestrator's TaskRun types in
//! a group of its own (`example.kube-envtest.dev`), so that the tests exercise a realistic CRD
//! (printer columns, a status subresource, minimums, a nullable enum) without depending on the
//! product, and never collide with the product's CRD on a shared real cluster.

// kube-derive repeats `printcolumn(name = .., type_ = ..)` keys by design.
#![allow(clippy::duplicated_attributes, dead_code)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One task, as orchestrator's TaskRun (the fixture's spec).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "example.kube-envtest.dev",
    version = "v1",
    kind = "TaskRun",
    namespaced,
    status = "TaskRunStatus",
    derive = "PartialEq",
    shortname = "tr",
    category = "envtest",
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
    /// Every `*.md` file of the folder, sorted by file name.
    #[serde(default)]
    pub markdown_files: Vec<MarkdownFile>,
}

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
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
