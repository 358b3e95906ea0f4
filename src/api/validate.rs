//! Request validation, pure: a request body in, a checked change (or the field at fault) out.
//!
//! The folder rules are the source's own ([`parse_folder`], [`is_config_map_key`],
//! [`wants_content`], [`parse_folder_name`]), so everything the API accepts the sync accepts.
//! Only what a request can say and a folder cannot (a file name with '/', a duplicate name, an
//! agent this cluster has no profile for) is checked here.

use super::change::{NewContext, NewTask, folder_name, task_entries};
use super::error::ApiError;
use super::model::{AddContextRequest, PmTaskRequest};
use crate::crd::MarkdownFile;
use crate::names::is_dns1123_label;
use crate::source::folder::{
    ContentError, TASK_YAML, is_config_map_key, is_hidden, parse_folder, wants_content,
};
use crate::source::layout::parse_folder_name;

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
    // Checked before task.yaml is parsed, so the error names the request's field.
    for (field, value) in [
        ("serviceName", &request.service_name),
        ("agentName", &request.agent_name),
    ] {
        if !is_dns1123_label(value) {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{value:?} is not a DNS-1123 label: use 1-63 lowercase letters, digits and \
                     '-', starting and ending with a letter or digit"
                ),
            ));
        }
    }
    let mut files: Vec<MarkdownFile> = Vec::with_capacity(request.markdown_files.len());
    for (i, file) in request.markdown_files.into_iter().enumerate() {
        let field = format!("markdownFiles[{i}].filename");
        check_filename(&file.filename).map_err(|m| ApiError::invalid(&field, m))?;
        if files.iter().any(|f| f.filename == file.filename) {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{:?} appears twice; give every file its own name",
                    file.filename
                ),
            ));
        }
        files.push(MarkdownFile {
            filename: file.filename,
            content: file.content,
        });
    }
    let task = NewTask {
        task_id: request.id,
        service_name: request.service_name,
        agent_name: request.agent_name,
        files,
    };
    if task.task_id < 0 || parse_folder_name(&folder_name(&task)) != Some(task.task_id) {
        return Err(ApiError::invalid(
            "id",
            format!(
                "must be a non-negative integer of at most 18 digits (got {})",
                task.task_id
            ),
        ));
    }
    if let Err(errors) = parse_folder(task_entries(&task)) {
        return Err(field_error(&task, &errors));
    }
    check_agent(&task.agent_name, known_agents)?;
    let mut task = task;
    task.files.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(task)
}

/// Checks added context for task `task_id`; the folder rules are applied at commit time, with
/// the folder's files at the branch tip.
pub fn validate_context(task_id: i64, request: AddContextRequest) -> Result<NewContext, ApiError> {
    if request.additional_context.trim().is_empty() {
        return Err(ApiError::invalid(
            "additionalContext",
            "must not be empty: send the markdown to add",
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
    // Digits only: Rust would also take "+5", which the documented integer does not allow.
    Some(raw)
        .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|r| r.parse::<i64>().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "id",
                format!("{raw:?} is not a task id: use the non-negative number of the task"),
            )
        })
}

fn check_agent(agent: &str, known_agents: Option<&[String]>) -> Result<(), ApiError> {
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

/// A request's file name must name one file of the folder: no path, not hidden (the source
/// ignores hidden files), markdown, and a valid ConfigMap key.
fn check_filename(name: &str) -> Result<(), String> {
    if name.contains('/') || name.contains('\\') {
        return Err(format!(
            "{name:?} is not a plain file name: task folders are flat, so use a name without \
             '/' or '\\' such as \"notes.md\""
        ));
    }
    if name.is_empty() || is_hidden(name) {
        return Err(format!(
            "{name:?} must not be empty or start with '.' (hidden files are ignored)"
        ));
    }
    if name == TASK_YAML || !wants_content(name, 0) {
        return Err(format!(
            "{name:?} is not a markdown file name: it must end in \".md\""
        ));
    }
    if !is_config_map_key(name) {
        return Err(format!(
            "{name:?} is not a valid ConfigMap key: use only letters, digits, '.', '_' and '-', \
             at most 253 characters"
        ));
    }
    Ok(())
}

/// The request field behind the source's first complaint about the would-be folder.
fn field_error(task: &NewTask, errors: &[ContentError]) -> ApiError {
    let first = &errors[0];
    let field = match first.file.as_deref() {
        Some(TASK_YAML) if first.message.starts_with("agentName") => "agentName".to_string(),
        Some(TASK_YAML) => "serviceName".to_string(),
        Some(file) => task
            .files
            .iter()
            .position(|f| f.filename == file)
            .map_or("markdownFiles".to_string(), |i| {
                format!("markdownFiles[{i}].content")
            }),
        None => "markdownFiles".to_string(),
    };
    let message = errors
        .iter()
        .map(|e| match &e.file {
            Some(file) => format!("{file} {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::invalid(field, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::MarkdownFileRequest;
    use crate::source::folder::MAX_TASK_BYTES;

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
            "task.yaml",
            "README.MD",
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
        r.agent_name = "Claude Code".into();
        assert_eq!(field_of(validate_task(r, None)), "agentName");
        for id in [-1, 1_000_000_000_000_000_000] {
            let mut r = request(&[("a.md", "x")]);
            r.id = id;
            assert_eq!(field_of(validate_task(r, None)), "id", "{id}");
        }
        let known = vec!["codex".to_string()];
        let err = validate_task(request(&[("a.md", "x")]), Some(&known)).unwrap_err();
        assert!(err.to_string().contains("known agents: codex"), "{err}");
        assert!(validate_task(request(&[("a.md", "x")]), Some(&["claude".into()])).is_ok());
    }

    #[test]
    fn the_source_rules_decide_size_and_text() {
        let big = "x".repeat(MAX_TASK_BYTES as usize / 2);
        let field = field_of(validate_task(
            request(&[("a.md", "small"), ("b.md", &big), ("c.md", &big)]),
            None,
        ));
        assert!(field.ends_with(".content"), "{field}");
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
        assert_eq!(parse_task_id(&i64::MAX.to_string()).unwrap(), i64::MAX);
        for bad in ["-1", "x", "", "4 2", "+5", "9223372036854775808", "1e3"] {
            assert!(parse_task_id(bad).is_err(), "{bad:?}");
        }
    }
}
