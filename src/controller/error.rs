//! The controller's errors: one variant per failed step, each with a fixed `kind()` for metrics.

use super::children::MissingUid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    MissingUid(#[from] MissingUid),
    #[error("TaskRun {0:?} has no namespace; the controller only handles namespaced TaskRuns")]
    MissingNamespace(String),
    #[error("cannot read {kind} {name}: {source}")]
    GetChild {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot create {kind} {name}: {source}")]
    CreateChild {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot apply {kind} {name}: {source}")]
    ApplyChild {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot list the {kind}s of task {task_id}: {source}")]
    ListChildren {
        kind: &'static str,
        task_id: i64,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete {kind} {name}: {source}")]
    DeleteChild {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{kind} {name} exists but is not controlled by TaskRun {task_run}; delete or rename that {kind} so the controller can create its own"
    )]
    ForeignChild {
        kind: &'static str,
        name: String,
        task_run: String,
    },
    #[error("cannot write the status of TaskRun {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot remove the done-with annotation {annotation} from TaskRun {name}: {source}")]
    WriteAnnotation {
        name: String,
        annotation: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer {}: {source}", crate::names::FINALIZER)]
    Finalizer {
        #[source]
        source: Box<kube::runtime::finalizer::Error<Error>>,
    },
}

impl Error {
    /// A fixed label for `controller_reconcile_errors_total{kind}`; never the error text.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::MissingUid(_) | Error::MissingNamespace(_) => "invalid_object",
            Error::GetChild { .. } => "get_child",
            Error::CreateChild { .. } => "create_child",
            Error::ApplyChild { .. } => "apply_child",
            Error::ListChildren { .. } => "list_children",
            Error::DeleteChild { .. } => "delete_child",
            Error::ForeignChild { .. } => "foreign_child",
            Error::WriteStatus { .. } => "write_status",
            Error::WriteAnnotation { .. } => "write_annotation",
            Error::Finalizer { source } => match source.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.kind(),
                kube::runtime::finalizer::Error::AddFinalizer(_)
                | kube::runtime::finalizer::Error::RemoveFinalizer(_) => "finalizer",
                _ => "invalid_object",
            },
        }
    }
}

impl Error {
    /// The client error underneath, if a request failed.
    pub fn client_error(&self) -> Option<&kube::Error> {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::GetChild { source, .. }
            | Error::CreateChild { source, .. }
            | Error::ApplyChild { source, .. }
            | Error::ListChildren { source, .. }
            | Error::DeleteChild { source, .. }
            | Error::WriteStatus { source, .. }
            | Error::WriteAnnotation { source, .. } => Some(source),
            Error::Finalizer { source } => match source.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.client_error(),
                F::AddFinalizer(e) | F::RemoveFinalizer(e) => Some(e),
                _ => None,
            },
            Error::MissingUid(_) | Error::MissingNamespace(_) | Error::ForeignChild { .. } => None,
        }
    }

    /// The API server could not be reached (rather than refusing the request).
    pub fn is_connection(&self) -> bool {
        self.client_error()
            .is_some_and(crate::outage_log::is_connection_error)
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        Error::Finalizer {
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as FinalizerError;

    #[test]
    fn kinds_are_fixed_labels_and_unwrap_the_finalizer() {
        let foreign = || Error::ForeignChild {
            kind: "Job",
            name: "web-1-v1".into(),
            task_run: "task-1".into(),
        };
        let cases = [
            (foreign(), "foreign_child"),
            (
                Error::from(FinalizerError::ApplyFailed(foreign())),
                "foreign_child",
            ),
            (
                Error::from(FinalizerError::CleanupFailed(Error::MissingNamespace(
                    "t".into(),
                ))),
                "invalid_object",
            ),
            (
                Error::from(FinalizerError::<Error>::UnnamedObject),
                "invalid_object",
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
        assert_eq!(
            foreign().to_string(),
            "Job web-1-v1 exists but is not controlled by TaskRun task-1; delete or rename that Job so the controller can create its own"
        );
    }
}
