//! The API's JSON bodies from fuzz bytes: decoding and validation must not panic, and a task the
//! API accepts must be a folder the sync accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::api::change::task_entries;
use orchestrator::api::model::{AddContextRequest, PmTaskRequest};
use orchestrator::api::validate::{validate_context, validate_task};
use orchestrator::source::folder::parse_folder;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<PmTaskRequest>(data)
        && let Ok(task) = validate_task(request, None)
    {
        assert!(parse_folder(task_entries(&task)).is_ok());
    }
    if let Ok(request) = serde_json::from_slice::<AddContextRequest>(data)
        && let Ok(context) = validate_context(1, request)
    {
        assert!(!context.content.trim().is_empty());
    }
});
