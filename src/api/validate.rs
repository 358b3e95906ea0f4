//! Request validation, pure: a request body in, a checked change (or the field at fault) out.
//!
//! The rules are the task-folder rules of the source, so that everything the API accepts the
//! sync accepts too.

use super::change::{NewContext, NewTask};
use super::error::ApiError;
use super::model::{AddContextRequest, PmTaskRequest};
use crate::crd::MarkdownFile;
use crate::names::is_dns1123_label;

/// Largest total size of a task's markdown: the files become one ConfigMap, and Kubernetes
/// refuses objects over 1 MiB; the rest is headroom for keys, metadata and JSON escaping.
pub const MAX_TASK_MARKDOWN_BYTES: usize = 512 * 1024;
/// Longest file name (a ConfigMap key may be 253 characters).
pub const MAX_FILENAME_LEN: usize = 253;

/// Checks a submitted task. `known_agents` of `None` accepts every agent name.
pub fn validate_task(
    request: PmTaskRequest,
    known_agents: Option<&[String]>,
) -> Result<NewTask, ApiError> {
    if request.markdown_files.is_empty() {
        return Err(ApiError::invalid(
            "markdownFiles",
            "No markdown files provided",
        ));
    }
    if request.id < 0 {
        return Err(ApiError::invalid(
            "id",
            format!("must be a non-negative integer (got {})", request.id),
        ));
    }
    if !is_dns1123_label(&request.service_name) {
        return Err(ApiError::invalid(
            "serviceName",
            format!(
                "{:?} is not a DNS-1123 label: use 1-63 lowercase letters, digits and '-', \
                 starting and ending with a letter or digit",
                request.service_name
            ),
        ));
    }
    validate_agent(&request.agent_name, known_agents)?;
    let mut total = 0usize;
    let mut files: Vec<MarkdownFile> = Vec::with_capacity(request.markdown_files.len());
    for (i, file) in request.markdown_files.into_iter().enumerate() {
        let field = format!("markdownFiles[{i}]");
        check_filename(&file.filename)
            .map_err(|m| ApiError::invalid(format!("{field}.filename"), m))?;
        if files.iter().any(|f| f.filename == file.filename) {
            return Err(ApiError::invalid(
                format!("{field}.filename"),
                format!(
                    "{:?} appears twice; give every file its own name",
                    file.filename
                ),
            ));
        }
        check_content(&file.content)
            .map_err(|m| ApiError::invalid(format!("{field}.content"), m))?;
        total += file.content.len();
        if total > MAX_TASK_MARKDOWN_BYTES {
            return Err(ApiError::invalid(
                format!("{field}.content"),
                format!(
                    "the task's markdown adds up to more than {MAX_TASK_MARKDOWN_BYTES} bytes \
                     (the limit that keeps its ConfigMap under 1 MiB); split the task or \
                     shorten the files"
                ),
            ));
        }
        files.push(MarkdownFile {
            filename: file.filename,
            content: file.content,
        });
    }
    files.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(NewTask {
        task_id: request.id,
        service_name: request.service_name,
        agent_name: request.agent_name,
        files,
    })
}

/// Checks added context for task `task_id` (the size against the folder is checked at commit
/// time, when the folder's files are known).
pub fn validate_context(task_id: i64, request: AddContextRequest) -> Result<NewContext, ApiError> {
    if request.additional_context.trim().is_empty() {
        return Err(ApiError::invalid(
            "additionalContext",
            "must not be empty: send the markdown to add",
        ));
    }
    check_content(&request.additional_context)
        .map_err(|m| ApiError::invalid("additionalContext", m))?;
    if request.additional_context.len() > MAX_TASK_MARKDOWN_BYTES {
        return Err(ApiError::invalid(
            "additionalContext",
            format!("is larger than the task limit of {MAX_TASK_MARKDOWN_BYTES} bytes"),
        ));
    }
    if request.version == Some(0) {
        return Err(ApiError::invalid(
            "version",
            "must be at least 1 (or left out to take the next number)",
        ));
    }
    Ok(NewContext {
        task_id,
        content: request.additional_context,
        version: request.version,
    })
}

/// Parses the `{id}` of a task path.
pub fn parse_task_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "id",
                format!("{raw:?} is not a task id: use the non-negative number of the task"),
            )
        })
}

fn validate_agent(agent: &str, known_agents: Option<&[String]>) -> Result<(), ApiError> {
    if !is_dns1123_label(agent) {
        return Err(ApiError::invalid(
            "agentName",
            format!("{agent:?} is not a valid agent name: use lowercase letters, digits and '-'"),
        ));
    }
    match known_agents {
        Some(known) if !known.iter().any(|k| k == agent) => Err(ApiError::invalid(
            "agentName",
            format!(
                "unknown agent {agent:?}; known agents: {}",
                if known.is_empty() {
                    "none configured".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )),
        _ => Ok(()),
    }
}

/// A markdown file name must be safe as a file in a git tree and as a ConfigMap key.
fn check_filename(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.contains('/') || name.contains('\\') {
        return Err(format!(
            "{name:?} is not a plain file name: task folders are flat, so use a name without \
             '/' or '\\' such as \"notes.md\""
        ));
    }
    if name.starts_with('.') {
        return Err(format!("{name:?} must not start with '.'"));
    }
    if name.len() > MAX_FILENAME_LEN {
        return Err(format!("is longer than {MAX_FILENAME_LEN} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} contains {bad:?}; use only letters, digits, '.', '_' and '-'"
        ));
    }
    if !name.ends_with(".md") || name.len() == 3 {
        return Err(format!(
            "{name:?} is not a markdown file name: it must end in \".md\""
        ));
    }
    Ok(())
}

fn check_content(content: &str) -> Result<(), String> {
    if content.contains('\0') {
        return Err("contains a NUL byte; markdown must be text".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::MarkdownFileRequest;

    fn request(files: &[(&str, &str)]) -> PmTaskRequest {
        PmTaskRequest {
            id: 42,
            service_name: "web".into(),
            agent_name: "claude".into(),
            markdown_files: files
                .iter()
                .map(|(f, c)| MarkdownFileRequest {
                    filename: f.to_string(),
                    content: c.to_string(),
                })
                .collect(),
        }
    }

    fn field_of(result: Result<NewTask, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_becomes_a_sorted_task() {
        let task = validate_task(request(&[("z.md", "z"), ("a.md", "a")]), None).unwrap();
        let names: Vec<_> = task.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["a.md", "z.md"]);
        assert_eq!(task.task_id, 42);
    }

    #[test]
    fn no_files_is_the_sketch_message() {
        let err = validate_task(request(&[]), None).unwrap_err();
        assert!(
            err.to_string().contains("No markdown files provided"),
            "{err}"
        );
    }

    #[test]
    fn unsafe_file_names_name_the_field() {
        for name in [
            "../x.md",
            "/etc/passwd",
            "a/b.md",
            "a\\b.md",
            ".hidden.md",
            "notes.txt",
            ".md",
            "sp ace.md",
            "",
            "ü.md",
        ] {
            let field = field_of(validate_task(request(&[("ok.md", "x"), (name, "x")]), None));
            assert_eq!(field, "markdownFiles[1].filename", "{name:?}");
        }
        assert_eq!(
            field_of(validate_task(
                request(&[("a.md", "x"), ("a.md", "y")]),
                None
            )),
            "markdownFiles[1].filename"
        );
    }

    #[test]
    fn bad_names_and_agents_name_the_field() {
        let mut r = request(&[("a.md", "x")]);
        r.service_name = "Web_API".into();
        assert_eq!(field_of(validate_task(r, None)), "serviceName");
        let mut r = request(&[("a.md", "x")]);
        r.id = -1;
        assert_eq!(field_of(validate_task(r, None)), "id");
        let known = vec!["codex".to_string()];
        let err = validate_task(request(&[("a.md", "x")]), Some(&known)).unwrap_err();
        assert!(err.to_string().contains("known agents: codex"), "{err}");
        assert!(validate_task(request(&[("a.md", "x")]), Some(&["claude".into()])).is_ok());
    }

    #[test]
    fn oversized_and_binary_content_is_refused() {
        let big = "x".repeat(MAX_TASK_MARKDOWN_BYTES / 2 + 1);
        let field = field_of(validate_task(
            request(&[("a.md", &big), ("b.md", &big)]),
            None,
        ));
        assert_eq!(field, "markdownFiles[1].content");
        let field = field_of(validate_task(request(&[("a.md", "nul\0")]), None));
        assert_eq!(field, "markdownFiles[0].content");
    }

    #[test]
    fn context_rules() {
        let ok = AddContextRequest {
            additional_context: "more".into(),
            version: None,
        };
        assert!(validate_context(1, ok.clone()).is_ok());
        for bad in [
            AddContextRequest {
                additional_context: "  ".into(),
                ..ok.clone()
            },
            AddContextRequest {
                version: Some(0),
                ..ok.clone()
            },
        ] {
            assert!(matches!(
                validate_context(1, bad),
                Err(ApiError::InvalidField { .. })
            ));
        }
    }

    #[test]
    fn task_ids_in_paths() {
        assert_eq!(parse_task_id("42").unwrap(), 42);
        for bad in ["-1", "x", "", "4 2"] {
            assert!(parse_task_id(bad).is_err(), "{bad:?}");
        }
    }
}
