//! A task folder from fuzz bytes: entries split on NUL as `name=content`, a name ending in `/`
//! is a folder, `@` a symlink. parse_folder must not panic, and every error names a file of the
//! folder (or task.yaml, or the folder itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::source::folder::{EntryKind, RawEntry, TASK_YAML, parse_folder};

fuzz_target!(|data: &[u8]| {
    let mut entries: Vec<RawEntry> = Vec::new();
    for part in data.split(|b| *b == 0) {
        let (name, content) = match part.iter().position(|b| *b == b'=') {
            Some(at) => (&part[..at], &part[at + 1..]),
            None => (part, &[][..]),
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if entries.iter().any(|e| e.name == name) {
            continue;
        }
        let kind = if name.ends_with('/') {
            EntryKind::Dir
        } else if name.starts_with('@') {
            EntryKind::Symlink
        } else {
            EntryKind::File {
                size: content.len() as u64,
                content: Some(content.to_vec()),
            }
        };
        entries.push(RawEntry { name, kind });
    }
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    if let Err(errors) = parse_folder(entries) {
        assert!(!errors.is_empty());
        for e in errors {
            if let Some(file) = e.file {
                assert!(names.contains(&file) || file == TASK_YAML, "{file:?}");
            }
        }
    }
});
