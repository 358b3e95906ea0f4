//! Property tests (proptest, a bounded number of cases in `cargo test`) of the parsers that take
//! input from outside: task folders and task.yaml, the content digest's canonical encoding, and
//! the API's JSON bodies. The same properties run under cargo-fuzz in fuzz/ for developers with
//! a nightly toolchain. A crash found by either becomes a fixed case at the end of this file.

use orchestrator::api::change::{folder_name, task_entries};
use orchestrator::api::model::{AddContextRequest, MarkdownFileRequest, PmTaskRequest};
use orchestrator::api::validate::{validate_context, validate_task};
use orchestrator::names::is_dns1123_label;
use orchestrator::source::digest::{canonical_encoding, content_digest};
use orchestrator::source::folder::{EntryKind, RawEntry, TASK_YAML, is_hidden, parse_folder};
use orchestrator::source::layout::parse_folder_name;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const CASES: u32 = 1_000;

fn file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(TASK_YAML.to_string()),
        Just("prompt.md".to_string()),
        Just("task.yml".to_string()),
        Just(".hidden.md".to_string()),
        "[a-zA-Z0-9._-]{1,12}\\.md",
        "[a-zA-Z0-9._-]{1,12}",
        "\\PC{1,12}",
    ]
}

/// task.yaml-like text: the two keys, other keys, anchors, aliases, flow collections, tags.
fn yaml_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "(serviceName|agentName): [a-z0-9-]{0,8}",
        "(serviceName|agentName): (\\[|\\{|&a |\\*a|!!binary |\"|'|~|null|0x1f|1e3|yes)[a-z]{0,4}",
        "[a-zA-Z]{1,8}: \\PC{0,8}",
        "- \\PC{0,6}",
        "\\PC{0,12}",
    ];
    prop::collection::vec(line, 0..6).prop_map(|lines| lines.join("\n"))
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        yaml_text().prop_map(String::into_bytes),
        "\\PC{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        8 => content().prop_map(|c| EntryKind::File { size: c.len() as u64, content: Some(c) }),
        1 => any::<u64>().prop_map(|size| EntryKind::File { size, content: None }),
        1 => Just(EntryKind::Dir),
        1 => Just(EntryKind::Symlink),
        1 => Just(EntryKind::Submodule),
    ]
}

/// A folder as git can hold it: each name once.
fn folder() -> impl Strategy<Value = Vec<RawEntry>> {
    prop::collection::btree_map(file_name(), kind(), 0..6).prop_map(|m| {
        m.into_iter()
            .map(|(name, kind)| RawEntry { name, kind })
            .collect()
    })
}

/// Reads the canonical encoding back: (name, content) pairs, or `None` if it is malformed.
fn decode(mut bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    bytes = bytes.strip_prefix(b"orchestrator-task-digest-v1\0".as_slice())?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        bytes = rest;
        Some(head)
    };
    let mut files = Vec::new();
    while let Some(len) = take(8) {
        let len = u64::from_be_bytes(len.try_into().ok()?) as usize;
        let name = String::from_utf8(take(len)?.to_vec()).ok()?;
        let len = u64::from_be_bytes(take(8)?.try_into().ok()?) as usize;
        files.push((name, take(len)?.to_vec()));
    }
    Some(files)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any folder: no panic; every error names a file of the folder (or the folder); a valid
    /// folder's markdown is exactly its visible *.md files, and its digest is that of task.yaml
    /// and those files, whatever the order git lists them in.
    #[test]
    fn task_folders_parse_without_panic_and_errors_name_their_file(entries in folder()) {
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        let mut reversed = entries.clone();
        reversed.reverse();
        match parse_folder(entries.clone()) {
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    if let Some(file) = &e.file {
                        prop_assert!(names.contains(file) || file == TASK_YAML, "{:?} not in {:?}", file, names);
                    }
                    prop_assert!(!e.message.is_empty());
                }
            }
            Ok(folder) => {
                prop_assert!(is_dns1123_label(&folder.service_name));
                prop_assert!(is_dns1123_label(&folder.agent_name));
                let mut md: Vec<&str> = names.iter().map(String::as_str)
                    .filter(|n| n.ends_with(".md") && !is_hidden(n)).collect();
                md.sort();
                let got: Vec<&str> = folder.markdown_files.iter().map(|f| &*f.filename).collect();
                prop_assert_eq!(&got, &md);
                let bytes_of = |name: &str| entries.iter().find(|e| e.name == name).and_then(|e| match &e.kind {
                    EntryKind::File { content: Some(c), .. } => Some(c.clone()),
                    _ => None,
                });
                let files: Vec<(String, Vec<u8>)> = std::iter::once(TASK_YAML).chain(md.iter().copied())
                    .map(|n| (n.to_string(), bytes_of(n).unwrap_or_default())).collect();
                let want = content_digest(files.iter().map(|(n, c)| (n.as_str(), c.as_slice())));
                prop_assert_eq!(&folder.digest, &want);
                prop_assert_eq!(parse_folder(reversed).map(|f| f.digest.clone()).ok(), Some(want));
            }
        }
    }

    /// task.yaml text of any shape beside a good prompt: no panic, and a folder is valid only
    /// with two DNS-1123 labels.
    #[test]
    fn task_yaml_of_any_shape_is_parsed_or_named(text in yaml_text()) {
        let entries = vec![
            RawEntry { name: TASK_YAML.into(), kind: EntryKind::File { size: text.len() as u64, content: Some(text.clone().into_bytes()) } },
            RawEntry { name: "prompt.md".into(), kind: EntryKind::File { size: 2, content: Some(b"hi".to_vec()) } },
        ];
        match parse_folder(entries) {
            Ok(folder) => {
                prop_assert!(is_dns1123_label(&folder.service_name), "{:?}", text);
                prop_assert!(is_dns1123_label(&folder.agent_name), "{:?}", text);
            }
            Err(errors) => prop_assert!(errors.iter().all(|e| e.file.as_deref() == Some(TASK_YAML)), "{:?}: {:?}", text, errors),
        }
    }

    /// The canonical encoding reads back to the files sorted by name (so two different folders
    /// never share it), the digest is the SHA-256 of it, and file order does not matter.
    #[test]
    fn the_digest_encoding_is_unambiguous_and_order_free(
        files in prop::collection::btree_map("\\PC{0,8}", prop::collection::vec(any::<u8>(), 0..24), 0..6)
    ) {
        let pairs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
        let encoding = canonical_encoding(pairs.iter().copied());
        let want: Vec<(String, Vec<u8>)> = files.clone().into_iter().collect();
        prop_assert_eq!(decode(&encoding), Some(want));
        let digest = content_digest(pairs.iter().rev().copied());
        prop_assert_eq!(digest.0.to_string(), format!("sha256:{}", hex::encode(Sha256::digest(&encoding))));
    }

    /// Any bytes as a request body: no panic.
    #[test]
    fn arbitrary_bytes_as_api_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = serde_json::from_slice::<PmTaskRequest>(&bytes);
        let _ = serde_json::from_slice::<AddContextRequest>(&bytes);
    }

    /// Any submitted task: no panic; what the API accepts, the sync accepts (the folder parses,
    /// and its name gives back the id).
    #[test]
    fn what_the_api_accepts_the_sync_accepts(
        id in prop_oneof![0..100i64, any::<i64>()],
        service in "[a-z0-9-]{0,10}|\\PC{0,8}",
        agent in "[a-z0-9-]{0,10}|\\PC{0,8}",
        files in prop::collection::vec(
            (prop_oneof!["[a-zA-Z0-9._-]{1,10}\\.md", "\\PC{0,10}"], "\\PC{0,30}|[\\x00-\\x7f]{0,10}"),
            0..4,
        ),
        known in any::<bool>(),
    ) {
        let request = PmTaskRequest {
            id,
            service_name: service,
            agent_name: agent.clone(),
            markdown_files: files.into_iter().map(|(filename, content)| MarkdownFileRequest { filename, content }).collect(),
        };
        let agents = vec![agent, "claude".to_string()];
        let known_agents = known.then_some(agents.as_slice());
        if let Ok(task) = validate_task(request, known_agents) {
            prop_assert_eq!(parse_folder_name(&folder_name(&task)), Some(task.task_id));
            let parsed = parse_folder(task_entries(&task));
            prop_assert!(parsed.is_ok(), "{:?}: {:?}", task.service_name, parsed.err());
        }
    }

    /// Added context: no panic; accepted context is never blank.
    #[test]
    fn added_context_is_never_blank(text in "\\PC{0,20}|[ \\t\\n]{0,5}", version in proptest::option::of(any::<u32>())) {
        let request = AddContextRequest { additional_context: text, version };
        if let Ok(context) = validate_context(7, request) {
            prop_assert!(!context.content.trim().is_empty());
            prop_assert!(context.version != Some(0));
        }
    }
}
