//! The digest's canonical encoding from fuzz bytes (files split on NUL as `name=content`): it
//! must start with the version tag, read back to the files sorted by name, and not depend on
//! their order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::source::digest::{canonical_encoding, content_digest};
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for part in data.split(|b| *b == 0) {
        let at = part.iter().position(|b| *b == b'=').unwrap_or(part.len());
        let name = String::from_utf8_lossy(&part[..at]).into_owned();
        files.insert(name, part.get(at + 1..).unwrap_or_default().to_vec());
    }
    let pairs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    let encoding = canonical_encoding(pairs.iter().copied());
    let mut rest = encoding
        .strip_prefix(b"orchestrator-task-digest-v1\0".as_slice())
        .expect("the version tag comes first");
    let mut read = Vec::new();
    while !rest.is_empty() {
        let len = u64::from_be_bytes(rest[..8].try_into().unwrap()) as usize;
        let name = String::from_utf8(rest[8..8 + len].to_vec()).unwrap();
        rest = &rest[8 + len..];
        let len = u64::from_be_bytes(rest[..8].try_into().unwrap()) as usize;
        read.push((name, rest[8..8 + len].to_vec()));
        rest = &rest[8 + len..];
    }
    assert_eq!(read, files.into_iter().collect::<Vec<_>>());
    assert_eq!(
        content_digest(pairs.iter().copied()),
        content_digest(pairs.iter().rev().copied())
    );
});
