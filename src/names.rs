//! Names, labels, annotations and field managers shared by every stage: task ids in, valid
//! Kubernetes names out.

use sha2::{Digest, Sha256};

pub const GROUP: &str = "orchestrator.io";

/// Field managers, one per writer (server-side apply).
pub const FIELD_MANAGER_SYNC: &str = "orchestrator-sync";
pub const FIELD_MANAGER_CONTROLLER: &str = "orchestrator-controller";
pub const FIELD_MANAGER_API: &str = "orchestrator-api";

pub const FINALIZER: &str = "taskruns.orchestrator.io/finalizer";

/// Labels on TaskRuns, Jobs and ConfigMaps.
pub const LABEL_TASK_ID: &str = "task-id";
pub const LABEL_SERVICE_NAME: &str = "service-name";
pub const LABEL_CONTEXT_VERSION: &str = "context-version";
/// On a Job and its Pods: which attempt of the content version it runs (1, 2 after a retry, …).
pub const LABEL_ATTEMPT: &str = "orchestrator.io/attempt";
/// The ownership mark of one source (repository + path), hashed into a label value.
pub const LABEL_SOURCE: &str = "orchestrator.io/source";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "orchestrator";

/// The revision whose content produced the TaskRun's current contextVersion.
pub const ANNOTATION_REVISION: &str = "orchestrator.io/revision";
/// The commit time (RFC 3339, UTC) of that revision: the queue's order (older first).
pub const ANNOTATION_REVISION_TIME: &str = "orchestrator.io/revision-time";
pub const ANNOTATION_CONTENT_DIGEST: &str = "orchestrator.io/content-digest";
pub const ANNOTATION_SOURCE_PATH: &str = "orchestrator.io/source-path";
pub const ANNOTATION_SOURCE_URL: &str = "orchestrator.io/source-url";
/// The owning source as a person reads it (repository and path, or `--source-name`).
pub const ANNOTATION_SOURCE: &str = "orchestrator.io/source-name";
/// `orchestrator.io/prune: disabled` keeps a TaskRun when its folder leaves Git (like Flux's).
pub const ANNOTATION_PRUNE: &str = "orchestrator.io/prune";
pub const PRUNE_DISABLED: &str = "disabled";
/// The annotation on a Job that names the local runner's log file of its output.
pub use kube_envtest::runner::ANNOTATION_LOG_PATH;

/// Kubernetes' limits on names.
pub const MAX_LABEL_LEN: usize = 63;
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// `task-<taskId>`.
pub fn task_run_name(task_id: i64) -> String {
    TaskRunName(task_id).to_string()
}

/// [`task_run_name`] as `Display`, to write into a buffer that is reused.
pub struct TaskRunName(pub i64);

impl std::fmt::Display for TaskRunName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// `<service>-<taskId>-v<version>`, at most 63 characters (a Job's name becomes a pod label).
pub fn job_name(service: &str, task_id: i64, version: i64) -> String {
    fit_label(&format!("{service}-{task_id}-v{version}"))
}

/// The Job of attempt `attempt` of one content version: the first is [`job_name`], a retry
/// appends `-r<attempt>` (`web-42-v3-r2`). A long name is cut to 63 characters with a hash of
/// the whole, so every attempt keeps a distinct, valid name.
pub fn attempt_job_name(service: &str, task_id: i64, version: i64, attempt: u32) -> String {
    if attempt <= 1 {
        job_name(service, task_id, version)
    } else {
        fit_label(&format!("{service}-{task_id}-v{version}-r{attempt}"))
    }
}

/// `<service>-<taskId>-v<version>-files`, at most 63 characters like the Job's.
pub fn config_map_name(service: &str, task_id: i64, version: i64) -> String {
    fit_label(&format!("{service}-{task_id}-v{version}-files"))
}

/// Truncates a name to a DNS-1123 label, replacing the tail with a stable hash suffix so that
/// two long names that share a prefix stay distinct.
pub fn fit_label(name: &str) -> String {
    if name.len() <= MAX_LABEL_LEN {
        return name.to_string();
    }
    let hash = short_hash(name, 8);
    let keep = MAX_LABEL_LEN - hash.len() - 1;
    let head = name[..keep].trim_end_matches('-');
    format!("{head}-{hash}")
}

/// The first `len` hex characters of sha256(`input`).
pub fn short_hash(input: &str, len: usize) -> String {
    let digest = Sha256::digest(input.as_bytes());
    hex::encode(digest)[..len].to_string()
}

/// The label value that marks TaskRuns created from one repository and path.
pub fn source_label_value(repo_url: &str, path: &str) -> String {
    format!(
        "src-{}",
        short_hash(&format!("{repo_url}\n{}", path.trim_matches('/')), 16)
    )
}

/// Whether `s` is a DNS-1123 label: lowercase alphanumerics and '-', alphanumeric at both ends,
/// at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_sketch() {
        assert_eq!(task_run_name(42), "task-42");
        assert_eq!(job_name("web", 42, 3), "web-42-v3");
        assert_eq!(config_map_name("web", 42, 3), "web-42-v3-files");
    }

    #[test]
    fn attempt_job_names_stay_valid_and_distinct() {
        let long = "a".repeat(60);
        // (service, attempt, expected or None for "cut to 63 with a hash")
        let cases: &[(&str, u32, Option<&str>)] = &[
            ("web", 0, Some("web-42-v3")),
            ("web", 1, Some("web-42-v3")),
            ("web", 2, Some("web-42-v3-r2")),
            ("web", 123, Some("web-42-v3-r123")),
            (&long, 2, None),
            (&long, 3, None),
        ];
        let mut seen = std::collections::HashSet::new();
        for (service, attempt, want) in cases {
            let name = attempt_job_name(service, 42, 3, *attempt);
            assert!(is_dns1123_label(&name), "{name}");
            match want {
                Some(w) => assert_eq!(&name, w),
                None => assert_eq!(name.len(), MAX_LABEL_LEN, "{name}"),
            }
            if *attempt != 0 {
                assert!(seen.insert(name.clone()), "duplicate {name}");
            }
        }
    }

    #[test]
    fn long_names_are_cut_to_a_valid_label_with_a_hash() {
        let service = "a".repeat(60);
        let job = job_name(&service, 7, 1);
        let other = job_name(&service, 8, 1);
        assert_eq!(job.len(), MAX_LABEL_LEN);
        assert!(is_dns1123_label(&job), "{job}");
        assert_ne!(job, other, "distinct inputs keep distinct names");
        assert_eq!(job, job_name(&service, 7, 1), "stable");
    }

    #[test]
    fn dns1123_labels() {
        for (input, valid) in [
            ("web", true),
            ("web-api", true),
            ("a1", true),
            ("Web", false),
            ("-web", false),
            ("web-", false),
            ("web_api", false),
            ("", false),
        ] {
            assert_eq!(is_dns1123_label(input), valid, "{input:?}");
        }
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }

    #[test]
    fn source_label_is_a_valid_label_value() {
        let v = source_label_value("https://example.com/tasks.git", "/tasks/");
        assert_eq!(
            v,
            source_label_value("https://example.com/tasks.git", "tasks")
        );
        assert!(v.len() <= MAX_LABEL_LEN && is_dns1123_label(&v));
    }
}
