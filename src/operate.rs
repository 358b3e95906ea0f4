//! Operations on a task's run, shared by the CLI and the HTTP API: a TaskRun name and who asks
//! in, the `orchestrator.io/retry` or `orchestrator.io/cancel` annotation written out.
//!
//! A JSON merge patch of the one annotation, under the caller's field manager: the sync's
//! server-side apply never holds these keys, so it never removes them, and `spec` (with
//! `contextVersion`) is not touched. The controller carries them out (see
//! [`crate::controller::operations`]).

use crate::controller::operations::{
    ANNOTATION_CANCEL, ANNOTATION_RETRY, OperationRefused, cancel_value, check_cancel, check_retry,
    retry_token,
};
use crate::crd::TaskRun;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};

/// The field manager of operations from the CLI (the API uses [`crate::names::FIELD_MANAGER_API`]).
pub const FIELD_MANAGER_CLI: &str = "orchestrator-cli";

#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error("no TaskRun {name} in namespace {namespace}: check the task id and --namespace")]
    NotFound { name: String, namespace: String },
    #[error("reading TaskRun {name}: {source}")]
    Get {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Refused(#[from] OperationRefused),
    #[error("annotating TaskRun {name}: {source}")]
    Annotate {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotated {
    pub name: String,
    pub annotation: &'static str,
    pub value: String,
    /// The contextVersion the operation applies to (unchanged by it).
    pub context_version: i64,
}

/// The TaskRun name a user means: `42` → `task-42`; a name is taken as it is.
pub fn task_run_name_of(task: &str) -> String {
    match task.trim().parse::<i64>() {
        Ok(id) => crate::names::task_run_name(id),
        Err(_) => task.trim().to_string(),
    }
}

async fn get(api: &Api<TaskRun>, name: &str, namespace: &str) -> Result<TaskRun, OperateError> {
    api.get_opt(name)
        .await
        .map_err(|source| OperateError::Get {
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| OperateError::NotFound {
            name: name.to_string(),
            namespace: namespace.to_string(),
        })
}

async fn annotate(
    api: &Api<TaskRun>,
    tr: &TaskRun,
    annotation: &'static str,
    value: String,
    field_manager: &str,
) -> Result<Annotated, OperateError> {
    let name = tr.metadata.name.clone().unwrap_or_default();
    let patch = serde_json::json!({"metadata": {"annotations": {annotation: value}}});
    let params = PatchParams {
        field_manager: Some(field_manager.to_string()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|source| OperateError::Annotate {
            name: name.clone(),
            source,
        })?;
    Ok(Annotated {
        name,
        annotation,
        value,
        context_version: tr.spec.context_version,
    })
}

/// Asks for one more attempt of a finished TaskRun (a Succeeded one only with `force`).
pub async fn request_retry(
    api: &Api<TaskRun>,
    namespace: &str,
    name: &str,
    force: bool,
    field_manager: &str,
    now: Timestamp,
) -> Result<Annotated, OperateError> {
    let tr = get(api, name, namespace).await?;
    check_retry(name, tr.status.as_ref().and_then(|s| s.phase), force)?;
    annotate(api, &tr, ANNOTATION_RETRY, retry_token(now), field_manager).await
}

/// Asks to stop the running attempt of a TaskRun; `who` is recorded with the time.
pub async fn request_cancel(
    api: &Api<TaskRun>,
    namespace: &str,
    name: &str,
    who: &str,
    field_manager: &str,
    now: Timestamp,
) -> Result<Annotated, OperateError> {
    let tr = get(api, name, namespace).await?;
    check_cancel(name, tr.status.as_ref().and_then(|s| s.phase))?;
    annotate(
        api,
        &tr,
        ANNOTATION_CANCEL,
        cancel_value(who, now),
        field_manager,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_arguments_name_a_task_run() {
        for (arg, want) in [
            ("42", "task-42"),
            (" 7 ", "task-7"),
            ("task-42", "task-42"),
            ("my-run", "my-run"),
        ] {
            assert_eq!(task_run_name_of(arg), want, "{arg}");
        }
    }
}
