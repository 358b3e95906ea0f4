//! What the sync keeps of a live TaskRun ([`LiveTaskRun`], a few hundred bytes): enough to
//! decide create, update, unchanged or prune, and no markdown.

use crate::crd::{MarkdownFile, TaskRun};
use crate::names;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::HashMap;
use std::sync::Arc;

/// What the sync keeps of the live TaskRuns of one namespace, by name (the desired TaskRun's
/// own name for those the sync wrote). Boxed: a table has a quarter of its slots empty, and a
/// slot is then 24 bytes, not 224.
pub type KnownTaskRuns = HashMap<Arc<str>, Box<LiveTaskRun>>;

/// What the sync needs of one live TaskRun to decide create, update, unchanged or prune, in
/// about 250 bytes (its metadata alone takes 2 KiB as `ObjectMeta`): uid, resourceVersion,
/// generation and deletion mark; the values of the labels and annotations the sync decides by
/// ([`LiveMarks`], shared by every TaskRun that carries the same ones); a hash of those it only
/// compares; and the owned spec fields, each markdown file reduced to a fingerprint. Neither
/// the markdown nor the status is kept: the snapshot holds it at most once (read from git, not
/// at all: [`crate::source::TaskFile`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LiveTaskRun {
    pub uid: Option<Token>,
    pub resource_version: Option<Token>,
    pub generation: Option<i64>,
    /// A deletionTimestamp is set.
    pub deleting: bool,
    pub marks: Arc<LiveMarks>,
    /// [`task_labels_hash`] of the live labels.
    pub task_labels: u64,
    /// [`task_annotations_hash`] of the live annotations.
    pub task_annotations: u64,
    /// [`read_fingerprint`] of the live metadata, to tell a watch event that changed nothing
    /// the sync reads from one that did.
    pub read: u64,
    pub spec: LiveSpec,
}

/// The owned spec fields of a live TaskRun: numbers as they are, the content digest parsed,
/// the strings the sync only compares as hashes ([`TextHash`]), the markdown as fingerprints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSpec {
    pub task_id: i64,
    pub context_version: i64,
    pub priority: i32,
    pub suspend: bool,
    pub content_digest: LiveDigest,
    pub service_name: TextHash,
    pub agent_name: TextHash,
    pub source_path: TextHash,
    /// In the live order.
    pub markdown_files: Box<[FileFingerprint]>,
}

/// The values of the labels and annotations the sync decides by (whose they are, which revision
/// produced them, whether pruning is off): the same for every TaskRun one revision of one source
/// wrote, so one allocation serves them all (see [`LiveInterner`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LiveMarks {
    /// [`names::LABEL_SOURCE`].
    pub source: Option<Box<str>>,
    /// [`names::LABEL_MANAGED_BY`].
    pub managed_by: Option<Box<str>>,
    /// [`names::ANNOTATION_REVISION`].
    pub revision: Option<Box<str>>,
    /// [`names::ANNOTATION_REVISION_TIME`].
    pub revision_time: Option<Box<str>>,
    /// [`names::ANNOTATION_SOURCE_URL`].
    pub source_url: Option<Box<str>>,
    /// [`names::ANNOTATION_SOURCE`].
    pub source_display: Option<Box<str>>,
    /// [`names::ANNOTATION_PRUNE`].
    pub prune: Option<Box<str>>,
}

impl LiveMarks {
    pub fn of(meta: &ObjectMeta) -> Self {
        let label = |key: &str| label_of(meta, key).map(Box::from);
        let annotation = |key: &str| annotation_of(meta, key).map(Box::from);
        Self {
            source: label(names::LABEL_SOURCE),
            managed_by: label(names::LABEL_MANAGED_BY),
            revision: annotation(names::ANNOTATION_REVISION),
            revision_time: annotation(names::ANNOTATION_REVISION_TIME),
            source_url: annotation(names::ANNOTATION_SOURCE_URL),
            source_display: annotation(names::ANNOTATION_SOURCE),
            prune: annotation(names::ANNOTATION_PRUNE),
        }
    }
}

fn label_of<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation_of<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A uid or resourceVersion as the API server wrote it, kept without an allocation in the
/// forms servers write (a decimal number, a lowercase UUID); anything else as text. Written
/// back out exactly as read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    Number(u64),
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl Token {
    pub fn parse(text: &str) -> Self {
        let canonical_number = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if canonical_number && let Ok(n) = text.parse() {
            return Token::Number(n);
        }
        if let Some(uuid) = parse_uuid(text) {
            return Token::Uuid(uuid);
        }
        Token::Text(text.into())
    }

    /// The number, for a resourceVersion a server wrote as one.
    pub fn number(&self) -> Option<u64> {
        match self {
            Token::Number(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<&str> for Token {
    fn from(text: &str) -> Self {
        Token::parse(text)
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Number(n) => write!(f, "{n}"),
            Token::Uuid(b) => write!(f, "{}", uuid::Uuid::from_bytes(*b).hyphenated()),
            Token::Text(t) => f.write_str(t),
        }
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex (the form written back), nothing
/// else `uuid` would also take.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    uuid::Uuid::try_parse(text).ok().map(|u| u.into_bytes())
}

/// `sha256:<64 lowercase hex>` as 32 bytes.
fn sha256_bytes(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// A live `spec.contentDigest`: `sha256:<64 lowercase hex>` as 32 bytes, anything else as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveDigest {
    Sha256([u8; 32]),
    Text(Box<str>),
}

impl LiveDigest {
    pub fn parse(text: &str) -> Self {
        match sha256_bytes(text) {
            Some(bytes) => LiveDigest::Sha256(bytes),
            None => LiveDigest::Text(text.into()),
        }
    }

    /// Whether this is the digest written as `text` (no allocation).
    pub fn is(&self, text: &str) -> bool {
        match self {
            LiveDigest::Text(t) => **t == *text,
            // `sha256_bytes(text) == Some(*bytes)` without decoding: the sync asks this of
            // every task on every sync.
            LiveDigest::Sha256(bytes) => text.strip_prefix("sha256:").is_some_and(|hex| {
                hex.len() == 64
                    && hex
                        .as_bytes()
                        .chunks_exact(2)
                        .zip(bytes)
                        .all(|(pair, byte)| {
                            lower_hex_digit(pair[0]) == Some(byte >> 4)
                                && lower_hex_digit(pair[1]) == Some(byte & 0x0f)
                        })
            }),
        }
    }
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A hash of a string the sync only compares (a service or agent name, a path): equal for
/// equal strings within one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextHash(pub u64);

impl TextHash {
    pub fn of(text: &str) -> Self {
        Self(stable_hash(&text))
    }

    pub fn is(self, text: &str) -> bool {
        self == Self::of(text)
    }
}

fn stable_hash(value: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The hash of the task-id, service-name and context-version label values (each as present or
/// absent): the labels that differ from task to task, compared by [`LiveTaskRun::task_labels`].
pub fn task_labels_hash(
    task_id: Option<&str>,
    service: Option<&str>,
    version: Option<&str>,
) -> u64 {
    stable_hash(&(task_id, service, version))
}

/// The hash of the content-digest and source-path annotation values, as
/// [`LiveTaskRun::task_annotations`] keeps them.
pub fn task_annotations_hash(digest: Option<&str>, path: Option<&str>) -> u64 {
    stable_hash(&(digest, path))
}

/// A markdown file's name (shared by every TaskRun with a file of that name, see
/// [`LiveInterner`]) and the first 128 bits of the sha256 of its content: enough to tell
/// whether the live file is the desired one, and which files an update adds, removes or
/// modifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFingerprint {
    pub filename: Arc<str>,
    pub content: ContentHash,
}

pub use crate::source::markdown::{ContentHash, content_hash};

impl FileFingerprint {
    pub fn of(file: &MarkdownFile) -> Self {
        Self {
            filename: file.filename.as_str().into(),
            content: content_hash(&file.content),
        }
    }
}

/// The labels the sync reads on a live TaskRun: those it sets.
const READ_LABELS: [&str; 5] = [
    names::LABEL_TASK_ID,
    names::LABEL_SERVICE_NAME,
    names::LABEL_CONTEXT_VERSION,
    names::LABEL_MANAGED_BY,
    names::LABEL_SOURCE,
];

/// The annotations the sync reads on a live TaskRun: those it sets (the source ones also name
/// the owner in a conflict and recognise an earlier mark), and the prune opt-out.
const READ_ANNOTATIONS: [&str; 7] = [
    names::ANNOTATION_REVISION,
    names::ANNOTATION_REVISION_TIME,
    names::ANNOTATION_CONTENT_DIGEST,
    names::ANNOTATION_SOURCE_PATH,
    names::ANNOTATION_SOURCE_URL,
    names::ANNOTATION_SOURCE,
    names::ANNOTATION_PRUNE,
];

/// A fingerprint of the labels and annotations the sync reads ([`READ_LABELS`],
/// [`READ_ANNOTATIONS`]) and whether a deletion is under way: equal for two versions of a
/// TaskRun that differ only in what the sync does not read (status, other writers' keys,
/// finalizers). Stable within one process.
pub fn read_fingerprint(meta: &ObjectMeta) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for key in READ_LABELS {
        label_of(meta, key).hash(&mut hasher);
    }
    for key in READ_ANNOTATIONS {
        annotation_of(meta, key).hash(&mut hasher);
    }
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    hasher.finish()
}

impl From<TaskRun> for Box<LiveTaskRun> {
    fn from(task_run: TaskRun) -> Self {
        Box::new(LiveTaskRun::of(&task_run))
    }
}

impl From<TaskRun> for LiveTaskRun {
    /// Keeps what the sync compares (see [`LiveTaskRun`]).
    fn from(task_run: TaskRun) -> Self {
        Self::of(&task_run)
    }
}

impl LiveTaskRun {
    pub fn of(task_run: &TaskRun) -> Self {
        let meta = &task_run.metadata;
        let spec = &task_run.spec;
        Self {
            uid: meta.uid.as_deref().map(Token::parse),
            resource_version: meta.resource_version.as_deref().map(Token::parse),
            generation: meta.generation,
            deleting: meta.deletion_timestamp.is_some(),
            marks: Arc::new(LiveMarks::of(meta)),
            task_labels: task_labels_hash(
                label_of(meta, names::LABEL_TASK_ID),
                label_of(meta, names::LABEL_SERVICE_NAME),
                label_of(meta, names::LABEL_CONTEXT_VERSION),
            ),
            task_annotations: task_annotations_hash(
                annotation_of(meta, names::ANNOTATION_CONTENT_DIGEST),
                annotation_of(meta, names::ANNOTATION_SOURCE_PATH),
            ),
            read: read_fingerprint(meta),
            spec: LiveSpec {
                task_id: spec.task_id,
                context_version: spec.context_version,
                priority: spec.priority,
                suspend: spec.suspend,
                content_digest: LiveDigest::parse(&spec.content_digest),
                service_name: TextHash::of(&spec.service_name),
                agent_name: TextHash::of(&spec.agent_name),
                source_path: TextHash::of(&spec.source_path),
                markdown_files: spec
                    .markdown_files
                    .iter()
                    .map(FileFingerprint::of)
                    .collect(),
            },
        }
    }
}

/// One allocation for each distinct [`LiveMarks`] and markdown file name, shared by every
/// [`LiveTaskRun`] the interner has seen: 100,000 TaskRuns written by one revision share one.
#[derive(Clone, Debug, Default)]
pub struct LiveInterner {
    marks: std::collections::HashSet<Arc<LiveMarks>>,
    filenames: std::collections::HashSet<Arc<str>>,
}

impl LiveInterner {
    /// `live` with its marks and file names replaced by the shared ones.
    pub fn shared(&mut self, mut live: LiveTaskRun) -> Box<LiveTaskRun> {
        self.share(&mut live);
        Box::new(live)
    }

    /// Replaces the marks and file names of `live` by the shared ones.
    pub fn share(&mut self, live: &mut LiveTaskRun) {
        match self.marks.get(&live.marks) {
            Some(shared) => live.marks = shared.clone(),
            None => {
                self.marks.insert(live.marks.clone());
            }
        }
        for file in live.spec.markdown_files.iter_mut() {
            match self.filenames.get(&file.filename) {
                Some(shared) => file.filename = shared.clone(),
                None => {
                    self.filenames.insert(file.filename.clone());
                }
            }
        }
    }

    /// Drops the values no [`LiveTaskRun`] uses any more.
    pub fn forget_unused(&mut self) {
        self.marks.retain(|m| Arc::strong_count(m) > 1);
        self.filenames.retain(|f| Arc::strong_count(f) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::tests::*;
    use crate::desired::*;

    #[test]
    fn a_live_digest_is_the_text_it_was_parsed_from_and_no_other() {
        let hex = "0123456789abcdef".repeat(4);
        let digest = format!("sha256:{hex}");
        let upper = format!("sha256:{}", hex.to_uppercase());
        let other = format!("sha256:{}1", &hex[..63]);
        let short = format!("sha256:{}", &hex[..62]);
        let long = format!("{digest}00");
        let bad = format!("sha256:{}g", &hex[..63]);
        let texts = [
            digest.as_str(),
            &upper,
            &other,
            &short,
            &long,
            &bad,
            &hex,
            "sha256:",
            "",
            "md5:abc",
        ];
        for parsed_from in texts {
            let live = LiveDigest::parse(parsed_from);
            for text in texts {
                assert_eq!(
                    live.is(text),
                    LiveDigest::parse(text) == live,
                    "{parsed_from:?} is {text:?}"
                );
            }
            assert!(live.is(parsed_from), "{parsed_from:?}");
        }
        assert!(matches!(LiveDigest::parse(&digest), LiveDigest::Sha256(_)));
        assert!(matches!(LiveDigest::parse(&upper), LiveDigest::Text(_)));
    }

    #[test]
    fn a_live_task_run_keeps_fingerprints_of_its_markdown_not_the_markdown() {
        let snap = snapshot('1', vec![folder(1, "the markdown")]);
        let desired = desired_task_runs(&snap, &source(), "default", &KnownTaskRuns::new());
        let mut body = desired[0].apply_body().unwrap();
        body.metadata.managed_fields = Some(vec![Default::default()]);
        body.status = Some(Default::default());
        let live = LiveTaskRun::from(body);
        assert!(desired[0].has_files_of(&live.spec));
        assert_eq!(&*live.spec.markdown_files[0].filename, "prompt.md");
        let sha256: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"the markdown").into();
        assert_eq!(live.spec.markdown_files[0].content, sha256[..16]);
        assert!(
            std::mem::size_of::<LiveTaskRun>() <= 256,
            "{} bytes",
            std::mem::size_of::<LiveTaskRun>()
        );
    }

    #[test]
    fn tokens_are_written_back_as_they_were_read() {
        for (text, compact) in [
            ("12345", true),
            ("0", true),
            ("0123", false),
            ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", true),
            ("3F2504E0-4F89-11D3-9A0C-0305E82C3301", false),
            ("uid-1", false),
            ("", false),
            ("99999999999999999999999", false),
        ] {
            let token = Token::parse(text);
            assert_eq!(token.to_string(), text);
            assert_eq!(!matches!(token, Token::Text(_)), compact, "{text}");
        }
        let digest = format!("sha256:{}", "ab".repeat(32));
        for (text, parsed) in [(digest.as_str(), true), ("sha256:ab", false), ("x", false)] {
            let live = LiveDigest::parse(text);
            assert_eq!(matches!(live, LiveDigest::Sha256(_)), parsed, "{text}");
            assert!(live.is(text), "{text}");
            assert!(!live.is("sha256:cd"), "{text}");
        }
        assert!(!LiveDigest::parse(&digest).is(&format!("sha256:{}", "ab".repeat(31) + "ac")));
    }

    #[test]
    fn the_interner_shares_what_task_runs_have_in_common() {
        let snap = snapshot('1', vec![folder(1, "a"), folder(2, "b")]);
        let runs = task_runs_after(&snap, &KnownTaskRuns::new());
        let mut interner = LiveInterner::default();
        let one = interner.shared(runs["task-1"].clone().into());
        let two = interner.shared(runs["task-2"].clone().into());
        assert!(Arc::ptr_eq(&one.marks, &two.marks));
        assert!(Arc::ptr_eq(
            &one.spec.markdown_files[0].filename,
            &two.spec.markdown_files[0].filename
        ));
        drop(one);
        interner.forget_unused();
        assert_eq!(interner.marks.len(), 1, "task-2 still uses them");
        drop(two);
        interner.forget_unused();
        assert_eq!((interner.marks.len(), interner.filenames.len()), (0, 0));
    }
}
