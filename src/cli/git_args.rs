//! The git credential flags every command that reaches a remote takes: flags in, `Credentials`
//! out.

use crate::source::credentials::{CredentialSettings, Credentials};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GitCredentialArgs {
    /// SSH private key for ssh URLs.
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// File holding a token for https URLs.
    #[arg(long)]
    pub git_token_file: Option<PathBuf>,
    /// Environment variable holding a token for https URLs.
    #[arg(long)]
    pub git_token_env: Option<String>,
}

impl GitCredentialArgs {
    /// Reads the key or token the flags name (never logged).
    pub fn load(&self) -> anyhow::Result<Credentials> {
        Credentials::load(&CredentialSettings {
            username: None,
            ssh_key: self.ssh_key.clone(),
            token_file: self.git_token_file.clone(),
            token_env: self.git_token_env.clone(),
        })
        .context("loading git credentials")
    }
}
