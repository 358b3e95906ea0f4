//! The git credential flags every command that reaches a remote takes: flags in, `Credentials`
//! out.

use crate::source::credentials::{CredentialSettings, Credentials};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GitCredentialArgs {
    /// SSH private key for ssh URLs (an empty file means no key: the ssh-agent is asked).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// File holding a token for https URLs (an empty file means no token).
    #[arg(long)]
    pub git_token_file: Option<PathBuf>,
    /// Environment variable holding a token for https URLs (empty or unset means no token).
    #[arg(long)]
    pub git_token_env: Option<String>,
    /// known_hosts file with the ssh servers' host keys (as `ssh-keyscan HOST` prints them);
    /// without it, ~/.ssh/known_hosts is used.
    #[arg(long)]
    pub ssh_known_hosts: Option<PathBuf>,
}

impl GitCredentialArgs {
    /// Reads the key or token the flags name (never logged).
    pub fn load(&self) -> anyhow::Result<Credentials> {
        Credentials::load(&CredentialSettings {
            username: None,
            ssh_key: self.ssh_key.clone(),
            token_file: self.git_token_file.clone(),
            token_env: self.git_token_env.clone(),
            known_hosts_file: self.ssh_known_hosts.clone(),
        })
        .context("loading git credentials")
    }
}
