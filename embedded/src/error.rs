//! Errors of starting and running the embedded API server, named after the step that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "could not bind the embedded API server to 127.0.0.1:{port}: {source} (choose another --port, or 0 for a free one)"
    )]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("could not generate the server's TLS certificates: {0}")]
    Certificate(String),
    #[error("could not configure TLS: {0}")]
    Tls(String),
    #[error(
        "could not use the data directory {path}: {source} (check that it exists and is writable)"
    )]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database error while trying to {step}: {source} (the --data-dir may be corrupt or in use by another server)"
    )]
    Database {
        step: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("stored object {key} is not valid JSON: {source} (the --data-dir is corrupt)")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not build a kube client for the embedded server: {0}")]
    Client(String),
    #[error("could not write the kubeconfig to {path}: {source}")]
    WriteKubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
