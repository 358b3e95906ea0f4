//! A task's markdown files as a snapshot holds them: each file's name and content hash, and its
//! text either held in memory (a plain folder, a one-off command) or left in the git repository
//! as a blob id and read again only when a TaskRun is written. A sync of 100,000 tasks then holds
//! no markdown between writes: the repository's object database already keeps it, on disk.

use super::error::SourceError;
use crate::crd::MarkdownFile;
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The first 128 bits of the sha256 of a markdown file's content: enough to tell whether a live
/// file is the desired one without its text.
pub type ContentHash = [u8; 16];

/// [`ContentHash`] of `content`.
pub fn content_hash(content: &str) -> ContentHash {
    let full: [u8; 32] = Sha256::digest(content.as_bytes()).into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// One markdown file of a task folder. Two files are equal when their names and content hashes
/// are, wherever their text is kept.
#[derive(Clone)]
pub struct TaskFile {
    /// Shared by every folder with a file of that name (the reader interns them).
    pub filename: Arc<str>,
    pub hash: ContentHash,
    text: FileText,
}

#[derive(Clone)]
enum FileText {
    Held(Arc<str>),
    /// A blob of the repository `reader` opens. Blob ids name their content, so the text read
    /// later is the text that was hashed.
    InRepository {
        blob: Oid,
        reader: Arc<BlobReader>,
    },
}

impl TaskFile {
    /// A file whose text is held in memory.
    pub fn held(filename: impl Into<Arc<str>>, content: impl Into<Arc<str>>) -> Self {
        let content = content.into();
        TaskFile {
            filename: filename.into(),
            hash: content_hash(&content),
            text: FileText::Held(content),
        }
    }

    /// The same file with its text left in the repository `reader` opens, as blob `blob`.
    pub fn in_repository(self, blob: Oid, reader: &Arc<BlobReader>) -> Self {
        TaskFile {
            text: FileText::InRepository {
                blob,
                reader: reader.clone(),
            },
            ..self
        }
    }

    /// Whether the text is held in memory (rather than read from the repository on demand).
    #[cfg(test)]
    fn is_held(&self) -> bool {
        matches!(self.text, FileText::Held(_))
    }

    /// The file's text: borrowed when held, read from the repository otherwise.
    pub fn text(&self) -> Result<Cow<'_, str>, SourceError> {
        match &self.text {
            FileText::Held(text) => Ok(Cow::Borrowed(text)),
            FileText::InRepository { blob, reader } => {
                reader
                    .read(*blob)
                    .map(Cow::Owned)
                    .map_err(|source| SourceError::ReadObject {
                        what: format!(
                            "markdown file {} (blob {blob}) in {}",
                            self.filename,
                            reader.git_dir.display()
                        ),
                        source,
                    })
            }
        }
    }

    /// The file as a TaskRun's spec holds it.
    pub fn to_markdown_file(&self) -> Result<MarkdownFile, SourceError> {
        Ok(MarkdownFile {
            filename: self.filename.to_string(),
            content: self.text()?.into_owned(),
        })
    }
}

impl PartialEq for TaskFile {
    fn eq(&self, other: &Self) -> bool {
        self.filename == other.filename && self.hash == other.hash
    }
}

impl Eq for TaskFile {}

impl fmt::Debug for TaskFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = match &self.text {
            FileText::Held(text) => format!("held, {} bytes", text.len()),
            FileText::InRepository { blob, .. } => format!("blob {blob}"),
        };
        write!(f, "{} ({}, {kept})", self.filename, hex::encode(self.hash))
    }
}

/// Reads blobs of one repository from any thread. git2 handles are not shareable between
/// threads, so it keeps the handles of finished reads for the next ones.
pub struct BlobReader {
    git_dir: PathBuf,
    idle: Mutex<Vec<Repository>>,
}

/// Handles kept for later reads: one per write in flight is plenty.
const MAX_IDLE_HANDLES: usize = 8;

impl BlobReader {
    pub fn new(git_dir: &Path) -> Arc<Self> {
        Arc::new(BlobReader {
            git_dir: git_dir.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The repository's directory.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Blob `blob` as text (lossy: the reader checked it was UTF-8 when it hashed it). A handle
    /// that fails is dropped and the read tried once more on a fresh one: the mirror may have
    /// been cloned again (new pack files) since the handle was opened.
    fn read(&self, blob: Oid) -> Result<String, git2::Error> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(repo) = idle
            && let Ok(text) = read_text(&repo, blob)
        {
            self.give_back(repo);
            return Ok(text);
        }
        let repo = Repository::open(&self.git_dir)?;
        let text = read_text(&repo, blob)?;
        self.give_back(repo);
        Ok(text)
    }

    fn give_back(&self, repo: Repository) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_HANDLES {
            idle.push(repo);
        }
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobReader({})", self.git_dir.display())
    }
}

fn read_text(repo: &Repository, blob: Oid) -> Result<String, git2::Error> {
    let blob = repo.find_blob(blob)?;
    Ok(String::from_utf8_lossy(blob.content()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_the_repository_reads_back_its_text_and_equals_the_held_one() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let blob = repo.blob("# Login page\n".as_bytes()).unwrap();
        let reader = BlobReader::new(repo.path());
        let held = TaskFile::held("prompt.md", "# Login page\n");
        let stored = held.clone().in_repository(blob, &reader);
        assert!(held.is_held() && !stored.is_held());
        assert_eq!(stored, held);
        // Twice: the second read takes the handle the first gave back.
        for _ in 0..2 {
            assert_eq!(stored.text().unwrap(), "# Login page\n");
        }
        assert_eq!(
            stored.to_markdown_file().unwrap(),
            MarkdownFile {
                filename: "prompt.md".into(),
                content: "# Login page\n".into(),
            }
        );
        assert_ne!(held, TaskFile::held("prompt.md", "# Login page!\n"));
        assert_ne!(held, TaskFile::held("context.md", "# Login page\n"));
    }

    #[test]
    fn a_blob_that_is_gone_is_an_error_naming_the_file_and_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let reader = BlobReader::new(repo.path());
        let missing = Oid::from_str("0123456789012345678901234567890123456789").unwrap();
        let file = TaskFile::held("prompt.md", "x").in_repository(missing, &reader);
        let message = file.text().unwrap_err().to_string();
        assert!(message.contains("markdown file prompt.md"), "{message}");
        assert!(
            message.contains(&repo.path().display().to_string()),
            "{message}"
        );
    }
}
