//! The fixed vocabulary of the controller: condition types, condition reasons and event reasons.
//!
//! Metric labels and event reasons come from here, never from error text.

/// kstatus: True once the task Succeeded (`kubectl wait --for=condition=Ready`).
pub const CONDITION_READY: &str = "Ready";
/// kstatus: True while the controller is still working towards a terminal phase.
pub const CONDITION_RECONCILING: &str = "Reconciling";
/// kstatus: True when the task cannot make progress without a change (it Failed).
pub const CONDITION_STALLED: &str = "Stalled";
/// Tekton-like: True (Succeeded), False (Failed) or Unknown (still running).
pub const CONDITION_SUCCEEDED: &str = "Succeeded";

pub const STATUS_TRUE: &str = "True";
pub const STATUS_FALSE: &str = "False";
pub const STATUS_UNKNOWN: &str = "Unknown";

/// Condition reasons (the `Succeeded` condition's and, mirrored, the kstatus ones').
pub const REASON_PENDING: &str = "Pending";
pub const REASON_RUNNING: &str = "Running";
pub const REASON_SUCCEEDED: &str = "Succeeded";
pub const REASON_FAILED: &str = "Failed";
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const REASON_SUPERSEDED: &str = "Superseded";
pub const REASON_AGENT_NOT_FOUND: &str = "AgentNotFound";

/// Pending reasons of the task lifecycle (docs/task-lifecycle.md).
/// Over a limit (`maxConcurrent`, `--max-running`): no Job yet, a place in the queue.
pub const REASON_QUEUED: &str = "Queued";
/// task.yaml says `suspend: true`.
pub const REASON_SUSPENDED: &str = "Suspended";
/// The Job exists; its Pod is not running yet and nothing is known to block it.
pub const REASON_JOB_CREATED: &str = "JobCreated";
/// The Job controller cannot create the Pod (a Job event), e.g. a missing ServiceAccount.
pub const REASON_FAILED_CREATE: &str = "FailedCreate";
/// The scheduler finds no node for the Pod.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
pub const REASON_IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
pub const REASON_ERR_IMAGE_PULL: &str = "ErrImagePull";
/// A missing Secret, ConfigMap or key the container's env or volumes refer to.
pub const REASON_CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
/// Failed reason: `orchestrator cancel` (annotation `orchestrator.io/cancel`).
pub const REASON_CANCELLED: &str = "Cancelled";

/// Why the controller published an event on a TaskRun.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    ConfigMapCreated,
    JobCreated,
    /// A Job of an older context version was stopped (it was still running).
    JobSuperseded,
    /// Jobs or ConfigMaps of older context versions were deleted.
    OldVersionDeleted,
    /// A Job of this version exists but was built from a different agent profile.
    JobOutdated,
    Succeeded,
    Failed,
    AgentNotFound,
    /// Blocked (Pending for a reason someone must fix) for longer than the profile's stallAfter.
    Stalled,
    CleanupDone,
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::ConfigMapCreated => "ConfigMapCreated",
            EventReason::JobCreated => "JobCreated",
            EventReason::JobSuperseded => "JobSuperseded",
            EventReason::OldVersionDeleted => "OldVersionDeleted",
            EventReason::JobOutdated => "JobOutdated",
            EventReason::Succeeded => "Succeeded",
            EventReason::Failed => "Failed",
            EventReason::AgentNotFound => "AgentNotFound",
            EventReason::Stalled => "Stalled",
            EventReason::CleanupDone => "CleanupDone",
        }
    }

    /// Warnings for what a user must look at, Normal for the rest.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            EventReason::Failed
                | EventReason::AgentNotFound
                | EventReason::JobOutdated
                | EventReason::Stalled
        )
    }

    /// The `action` field of the event: what the controller did.
    pub fn action(self) -> &'static str {
        match self {
            EventReason::ConfigMapCreated | EventReason::JobCreated => "Create",
            EventReason::JobSuperseded | EventReason::OldVersionDeleted => "Supersede",
            EventReason::JobOutdated => "Compare",
            EventReason::Succeeded
            | EventReason::Failed
            | EventReason::AgentNotFound
            | EventReason::Stalled => "Reconcile",
            EventReason::CleanupDone => "Cleanup",
        }
    }
}
