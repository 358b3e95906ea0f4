//! The content digest: a task folder's files (names and bytes) in, `sha256:<hex>` out.
//!
//! Canonical encoding: a version tag, then every file sorted by name as
//! `u64 name length, name, u64 content length, content` (lengths big-endian). Length prefixes make
//! the encoding unambiguous, so renaming a file or moving bytes from one file to another changes
//! the digest, while the folder's name, the commit, timestamps or file order in the tree do not.

use super::snapshot::ContentDigest;
use sha2::{Digest, Sha256};

/// Bumped if the encoding ever changes, so old and new digests never collide.
const ENCODING_TAG: &[u8] = b"orchestrator-task-digest-v1\0";

/// Digest of a folder given as `(file name, content)` pairs in any order.
pub fn content_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> ContentDigest {
    let mut hasher = Sha256::new();
    encode(files, |bytes| hasher.update(bytes));
    ContentDigest(format!("sha256:{}", hex::encode(hasher.finalize())).into())
}

/// The canonical encoding that [`content_digest`] hashes, as bytes (the digest streams them
/// instead): for tests and fuzzing of its properties.
pub fn canonical_encoding<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(files, |bytes| out.extend_from_slice(bytes));
    out
}

fn encode<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>, mut sink: impl FnMut(&[u8])) {
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    sink(ENCODING_TAG);
    for (name, content) in files {
        sink(&(name.len() as u64).to_be_bytes());
        sink(name.as_bytes());
        sink(&(content.len() as u64).to_be_bytes());
        sink(content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(files: &[(&str, &str)]) -> ContentDigest {
        content_digest(files.iter().map(|(n, c)| (*n, c.as_bytes())))
    }

    const BASE: &[(&str, &str)] = &[
        ("task.yaml", "serviceName: web\nagentName: codex\n"),
        ("a.md", "hello"),
        ("b.md", "world"),
    ];

    #[test]
    fn format_is_sha256_hex() {
        let d = digest(BASE).0;
        assert!(d.starts_with("sha256:"), "{d}");
        assert_eq!(d.len(), "sha256:".len() + 64);
        assert!(
            d[7..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn changes_that_change_the_digest() {
        let base = digest(BASE);
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "rename a file",
                &[
                    ("task.yaml", BASE[0].1),
                    ("c.md", "hello"),
                    ("b.md", "world"),
                ],
            ),
            (
                "move bytes between files",
                &[
                    ("task.yaml", BASE[0].1),
                    ("a.md", "hellow"),
                    ("b.md", "orld"),
                ],
            ),
            (
                "move a whole file's bytes",
                &[
                    ("task.yaml", BASE[0].1),
                    ("a.md", ""),
                    ("b.md", "helloworld"),
                ],
            ),
            (
                "swap contents",
                &[
                    ("task.yaml", BASE[0].1),
                    ("a.md", "world"),
                    ("b.md", "hello"),
                ],
            ),
            (
                "edit a byte",
                &[
                    ("task.yaml", BASE[0].1),
                    ("a.md", "hellO"),
                    ("b.md", "world"),
                ],
            ),
            (
                "edit task.yaml",
                &[
                    ("task.yaml", "serviceName: api\nagentName: codex\n"),
                    ("a.md", "hello"),
                    ("b.md", "world"),
                ],
            ),
            (
                "add a file",
                &[
                    ("task.yaml", BASE[0].1),
                    ("a.md", "hello"),
                    ("b.md", "world"),
                    ("c.md", ""),
                ],
            ),
            (
                "remove a file",
                &[("task.yaml", BASE[0].1), ("a.md", "hello")],
            ),
            (
                "name bytes into content",
                &[
                    ("task.yaml", BASE[0].1),
                    ("a.m", "dhello"),
                    ("b.md", "world"),
                ],
            ),
        ];
        for (what, files) in cases {
            assert_ne!(digest(files), base, "{what} must change the digest");
        }
    }

    #[test]
    fn changes_that_keep_the_digest() {
        let base = digest(BASE);
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("same files", BASE),
            (
                "other order",
                &[
                    ("b.md", "world"),
                    ("task.yaml", BASE[0].1),
                    ("a.md", "hello"),
                ],
            ),
            (
                "reversed",
                &[
                    ("b.md", "world"),
                    ("a.md", "hello"),
                    ("task.yaml", BASE[0].1),
                ],
            ),
        ];
        for (what, files) in cases {
            assert_eq!(digest(files), base, "{what} must keep the digest");
        }
    }

    #[test]
    fn known_value_is_stable_across_releases() {
        // Pinned (computed independently with Python's hashlib): a changed encoding would give
        // every task a new digest and so a new contextVersion.
        assert_eq!(
            digest(&[("a.md", "x")]).0,
            "sha256:edb185022da053217a61d03791fb6c519cadb746ac8bdfa27bb32d4bc80b6984".into()
        );
    }
}
