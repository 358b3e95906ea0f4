//! The source layer's one error type: each variant names the step that failed, what it failed
//! on, and what to do about it. Never carries credentials (URLs are redacted).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "cannot open git repository at {path}: {source}; check --repo points at a git repository"
    )]
    OpenRepository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error(
        "cannot resolve revision \"{revision}\": {source}; give a branch, tag or commit that exists"
    )]
    ResolveRevision {
        revision: String,
        #[source]
        source: git2::Error,
    },
    #[error("branch or ref \"{branch}\" does not exist in {url}; existing branches: {available}")]
    BranchNotFound {
        branch: String,
        url: String,
        available: String,
    },
    #[error("cannot read {what} from the git object database: {source}")]
    ReadObject {
        what: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "path \"{path}\" does not exist at {revision}: check --path (the folder that holds the task folders)"
    )]
    PathNotFound { path: String, revision: String },
    #[error(
        "path \"{path}\" at {revision} is a file, not a folder: --path must name the folder that holds the task folders"
    )]
    PathNotAFolder { path: String, revision: String },
    #[error(
        "path \"{path}\" leaves the repository: --path must name a folder inside it, relative to its root (no \"..\", \".\" or leading \"/\")"
    )]
    PathOutsideRepository { path: String },
    #[error("cannot read folder {path}: {source}")]
    ReadFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch {url} (attempt {attempt}): {message}; check the URL, the network and the credentials{}", last_good_note(.last_good))]
    Fetch {
        url: String,
        attempt: u32,
        message: String,
        last_good: Option<String>,
    },
    #[error(
        "cannot prepare the local mirror at {path}: {message}; check that the mirror directory is writable"
    )]
    Mirror { path: PathBuf, message: String },
    #[error(transparent)]
    Credentials(#[from] super::credentials::CredentialsError),
    #[error("cannot watch {path} for new commits: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("the git worker thread failed: {0}")]
    Worker(String),
}

fn last_good_note(last_good: &Option<String>) -> String {
    match last_good {
        Some(revision) => format!("; still using the last good snapshot {revision}"),
        None => "; no snapshot has been read yet".to_string(),
    }
}

impl SourceError {
    /// A fixed label for metrics, never the error text.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::OpenRepository { .. } => "open_repository",
            SourceError::ResolveRevision { .. } => "resolve_revision",
            SourceError::BranchNotFound { .. } => "branch_not_found",
            SourceError::ReadObject { .. } => "read_object",
            SourceError::PathNotFound { .. } => "path_not_found",
            SourceError::PathNotAFolder { .. } => "path_not_a_folder",
            SourceError::PathOutsideRepository { .. } => "path_outside_repository",
            SourceError::ReadFolder { .. } => "read_folder",
            SourceError::Fetch { .. } => "fetch",
            SourceError::Mirror { .. } => "mirror",
            SourceError::Credentials(_) => "credentials",
            SourceError::Watch { .. } => "watch",
            SourceError::Worker(_) => "worker",
        }
    }
}
