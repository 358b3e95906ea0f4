//! The notes layer's error: one variant per failed step, each naming what to fix.

/// A failed step of writing, pushing or reading notes.
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    #[error("reading notes ref {notes_ref}: {source}")]
    ReadRef {
        notes_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error("reading the notes tree of {notes_ref}: {source}")]
    ReadTree {
        notes_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error("writing a notes commit on {notes_ref}: {source}")]
    WriteCommit {
        notes_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "{notes_ref} moved while orchestrator was updating it (another writer in the same repository); retried and gave up"
    )]
    RefRaced { notes_ref: String },
    #[error("opening the repository {path} for notes: {source}")]
    OpenRepository {
        path: String,
        #[source]
        source: git2::Error,
    },
    #[error("{commit:?} is not a commit id (40 hex digits) a note can be written on")]
    BadCommitId { commit: String },
    #[error(
        "the notes signature {name} <{email}> is not valid: {source}; set another name or email"
    )]
    Signature {
        name: String,
        email: String,
        #[source]
        source: git2::Error,
    },
    #[error("fetching {notes_ref} from {url}: {source}; check the URL, network and credentials")]
    FetchNotes {
        url: String,
        notes_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error("pushing {notes_ref} to {url}: {source}; check the URL, network and push credentials")]
    PushNotes {
        url: String,
        notes_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "{url} rejected {notes_ref} {attempts} times in a row (another writer keeps pushing); will retry"
    )]
    PushRejected {
        url: String,
        notes_ref: String,
        attempts: u32,
    },
    #[error("{repo}: {message}")]
    ResolveRevision { repo: String, message: String },
    #[error("fetching {url}: {message}; check the URL, network and credentials")]
    FetchRepository { url: String, message: String },
    #[error("the note on {commit} cannot be read: {source}")]
    ParseNote {
        commit: String,
        #[source]
        source: super::model::ParseNoteError,
    },
    #[error("the notes writer's git task stopped: {0}")]
    TaskStopped(String),
}

impl NotesError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            NotesError::ReadRef { .. } => "read_ref",
            NotesError::ReadTree { .. } => "read_tree",
            NotesError::WriteCommit { .. } => "write_commit",
            NotesError::RefRaced { .. } => "ref_raced",
            NotesError::OpenRepository { .. } => "open_repository",
            NotesError::BadCommitId { .. } => "bad_commit_id",
            NotesError::Signature { .. } => "signature",
            NotesError::FetchNotes { .. } => "fetch_notes",
            NotesError::PushNotes { .. } => "push_notes",
            NotesError::PushRejected { .. } => "push_rejected",
            NotesError::ResolveRevision { .. } => "resolve_revision",
            NotesError::FetchRepository { .. } => "fetch_repository",
            NotesError::ParseNote { .. } => "parse_note",
            NotesError::TaskStopped(_) => "task_stopped",
        }
    }
}
