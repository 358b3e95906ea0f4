//! API errors as the real server shapes them: a failure in, a `metav1.Status` body and HTTP code out.

use serde_json::{Value, json};

/// One failed field of an Invalid (422) answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueTooLong`...
    pub reason: &'static str,
    pub message: String,
    /// Dotted path from the object root, e.g. `spec.taskId`.
    pub field: String,
}

impl Cause {
    pub fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause {
            reason,
            message: message.into(),
            field: field.into(),
        }
    }

    /// `field: message`, as the Invalid message lists each cause.
    fn render(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// A request the server refuses, answered with a `Status` of `code` and `reason`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = json!({ "name": name, "kind": kind });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// `configmaps` for the core group, `jobs.batch` otherwise, as messages name resources.
pub fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            details: Some(details(name, group, plural)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", group_resource(group, plural)),
            )
        }
    }

    /// A path that names no resource the server serves.
    pub fn no_such_path() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            details: Some(details(name, group, plural)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!(
                    "{} \"{name}\" already exists",
                    group_resource(group, plural)
                ),
            )
        }
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(details(name, group, plural)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    group_resource(group, plural)
                ),
            )
        }
    }

    /// The stale-resourceVersion conflict of an update.
    pub fn modified(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per failed field; `kind` is the object's Kind (`ConfigMap`).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let listed = if causes.len() == 1 {
            causes[0].render()
        } else {
            format!(
                "[{}]",
                causes
                    .iter()
                    .map(Cause::render)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut d = details(name, group, kind);
        d["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                .collect(),
        );
        ApiError {
            details: Some(d),
            ..Self::new(
                422,
                "Invalid",
                format!("{qualified} \"{name}\" is invalid: {listed}"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// A 415 whose message says what to send instead.
    pub fn unsupported_media_type_message(message: String) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 410 Expired: a watch or continue token older than the server remembers.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_group_resource_and_details() {
        let e = ApiError::not_found("batch", "jobs", "j1");
        assert_eq!(e.code, 404);
        let s = e.to_status();
        assert_eq!(s["message"], "jobs.batch \"j1\" not found");
        assert_eq!(
            s["details"],
            json!({"name": "j1", "group": "batch", "kind": "jobs"})
        );
        let core = ApiError::not_found("", "configmaps", "c").to_status();
        assert_eq!(core["details"], json!({"name": "c", "kind": "configmaps"}));
    }

    #[test]
    fn invalid_lists_causes_with_field_paths() {
        let one = ApiError::invalid(
            "",
            "ConfigMap",
            "big",
            vec![Cause::new(
                "FieldValueTooLong",
                "data",
                "Too long: must have at most 1048576 bytes",
            )],
        );
        assert_eq!(
            one.message,
            "ConfigMap \"big\" is invalid: data: Too long: must have at most 1048576 bytes"
        );
        let two = ApiError::invalid(
            "orchestrator.io",
            "TaskRun",
            "t",
            vec![
                Cause::new("FieldValueRequired", "spec.agentName", "Required value"),
                Cause::new("FieldValueInvalid", "spec.taskId", "Invalid value"),
            ],
        );
        assert_eq!(
            two.message,
            "TaskRun.orchestrator.io \"t\" is invalid: [spec.agentName: Required value, spec.taskId: Invalid value]"
        );
        assert_eq!(
            two.to_status()["details"]["causes"][1]["field"],
            "spec.taskId"
        );
    }
}
