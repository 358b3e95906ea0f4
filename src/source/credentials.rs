//! Git credentials: an SSH key or a token (read from a file or an environment variable) in,
//! `git2::RemoteCallbacks` that answer libgit2's credential requests out. Secrets never reach a
//! log: [`Secret`] prints as `***`, and URLs are redacted before they appear in messages.

use super::known_hosts::{KnownHosts, KnownHostsError, Verdict};
use crate::secret_source::SecretSource;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

/// A secret string whose Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; only for handing to libgit2.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to authenticate to the remote. All optional: public and local repositories need none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name for https (default `x-access-token`, which GitHub, GitLab and Gitea accept
    /// with a token) or ssh (default: the URL's user, else `git`).
    pub username: Option<String>,
    /// Private key file for ssh URLs.
    pub ssh_key: Option<PathBuf>,
    pub ssh_key_passphrase: Option<Secret>,
    /// Token (or password) for https URLs.
    pub token: Option<Secret>,
    /// The ssh servers' host keys (`--ssh-known-hosts`); without it libgit2 consults
    /// `~/.ssh/known_hosts`, which a container does not have.
    pub known_hosts: Option<Arc<KnownHosts>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the git token file {path}: {source}; check the path and its permissions")]
    ReadTokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the SSH key {path}: {source}; check --ssh-key and its permissions")]
    ReadSshKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the SSH key {path} does not exist: check --ssh-key")]
    MissingSshKey { path: PathBuf },
    #[error("cannot read the known_hosts file {path}: {source}; check --ssh-known-hosts")]
    ReadKnownHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the known_hosts file {path}, {source}; write it as ssh-keyscan prints it (ssh-keyscan HOST)"
    )]
    BadKnownHosts {
        path: PathBuf,
        #[source]
        source: KnownHostsError,
    },
    #[error(
        "the known_hosts file {path} lists no host: add the git server's keys (ssh-keyscan HOST)"
    )]
    EmptyKnownHosts { path: PathBuf },
}

/// Where the secrets come from, as the CLI or a config file gives them.
#[derive(Clone, Debug, Default)]
pub struct CredentialSettings {
    pub username: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub known_hosts_file: Option<PathBuf>,
}

impl Credentials {
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads the token from its file or environment variable and checks the SSH key exists.
    /// A token file wins over a token variable. An empty token file or key file and an empty or
    /// unset token variable mean "no such credential" (said once at info level; see
    /// [`crate::secret_source`]); a file that cannot be read is an error.
    pub fn load(settings: &CredentialSettings) -> Result<Self, CredentialsError> {
        let token = match (&settings.token_file, &settings.token_env) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    CredentialsError::ReadTokenFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                let found = SecretSource::of(Some(&text));
                if let Some(absence) = found.absence() {
                    info!(
                        "the git token file {} (--git-token-file) {absence}: no git token, https \
                         remotes are fetched without one",
                        path.display()
                    );
                }
                found.into_value().map(Secret::new)
            }
            (None, Some(name)) => {
                let found = SecretSource::from_env(name);
                if let Some(absence) = found.absence() {
                    info!(
                        "{name} (--git-token-env) {absence}: no git token, https remotes are \
                         fetched without one"
                    );
                }
                found.into_value().map(Secret::new)
            }
            (None, None) => None,
        };
        let ssh_key = match &settings.ssh_key {
            Some(key) if !key.exists() => {
                return Err(CredentialsError::MissingSshKey { path: key.clone() });
            }
            Some(key) => {
                let text = std::fs::read(key).map_err(|source| CredentialsError::ReadSshKey {
                    path: key.clone(),
                    source,
                })?;
                if text.iter().all(u8::is_ascii_whitespace) {
                    info!(
                        "the SSH key {} (--ssh-key) is empty: no key, ssh remotes use the \
                         ssh-agent if one runs",
                        key.display()
                    );
                    None
                } else {
                    Some(key.clone())
                }
            }
            None => None,
        };
        let known_hosts = match &settings.known_hosts_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    CredentialsError::ReadKnownHosts {
                        path: path.clone(),
                        source,
                    }
                })?;
                let known =
                    KnownHosts::parse(&text).map_err(|source| CredentialsError::BadKnownHosts {
                        path: path.clone(),
                        source,
                    })?;
                if known.is_empty() {
                    return Err(CredentialsError::EmptyKnownHosts { path: path.clone() });
                }
                Some(Arc::new(known))
            }
            None => None,
        };
        Ok(Credentials {
            username: settings.username.clone(),
            ssh_key,
            ssh_key_passphrase: None,
            token,
            known_hosts,
        })
    }
}

/// libgit2 asks again after a rejected credential; stop after this many tries so a wrong token
/// fails fast instead of looping.
const MAX_CREDENTIAL_ATTEMPTS: u32 = 3;

/// Callbacks for fetch and push that answer credential requests from `credentials`:
/// a token for https (user/password), the SSH key (or the ssh-agent) for ssh.
pub fn remote_callbacks(credentials: &Credentials) -> git2::RemoteCallbacks<'static> {
    let known_hosts = credentials.known_hosts.clone();
    // A refusal left by an earlier transfer on this thread must not explain this one's error.
    HOST_KEY_REFUSAL.with(|r| r.borrow_mut().take());
    let credentials = credentials.clone();
    let mut attempts = 0;
    let mut callbacks = git2::RemoteCallbacks::new();
    callbacks.credentials(move |_url, username_from_url, allowed| {
        attempts += 1;
        if attempts > MAX_CREDENTIAL_ATTEMPTS {
            return Err(git2::Error::from_str(
                "authentication failed: the remote rejected the configured credentials",
            ));
        }
        if allowed.contains(git2::CredentialType::USERNAME) {
            let user = credentials.username.as_deref().or(username_from_url).unwrap_or("git");
            return git2::Cred::username(user);
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            let user = username_from_url.or(credentials.username.as_deref()).unwrap_or("git");
            return match &credentials.ssh_key {
                Some(key) => git2::Cred::ssh_key(
                    user,
                    None,
                    key,
                    credentials.ssh_key_passphrase.as_ref().map(Secret::expose),
                ),
                None => git2::Cred::ssh_key_from_agent(user),
            };
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            return match &credentials.token {
                Some(token) => {
                    let user = credentials.username.as_deref().or(username_from_url).unwrap_or("x-access-token");
                    git2::Cred::userpass_plaintext(user, token.expose())
                }
                None => Err(git2::Error::from_str(
                    "the remote asks for a user name and password: give a token with --git-token-file or --git-token-env",
                )),
            };
        }
        git2::Cred::default()
    });
    if let Some(known) = known_hosts {
        callbacks.certificate_check(move |cert, host| check_host_key(&known, cert, host));
    }
    callbacks
}

/// The URL with any `user:password@` removed, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

thread_local! {
    /// Why [`check_host_key`] refused a host key: libgit2 replaces the callback's error with
    /// "invalid or unknown remote ssh hostkey", and the callback runs on the fetching thread.
    static HOST_KEY_REFUSAL: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The message of a fetch or push error, with what libgit2 loses put back: why the host key
/// was refused, or, without `--ssh-known-hosts`, how to give the host key.
pub fn git_error_message(error: &git2::Error) -> String {
    let refusal = HOST_KEY_REFUSAL.with(|r| r.borrow_mut().take());
    match refusal {
        Some(why) if error.class() == git2::ErrorClass::Ssh => why,
        _ if error.message().contains("unknown remote ssh hostkey") => format!(
            "{}: the server's host key is not in ~/.ssh/known_hosts; give it with \
             --ssh-known-hosts FILE (ssh-keyscan HOST > FILE, after checking the key)",
            error.message()
        ),
        _ if error.code() == git2::ErrorCode::Certificate
            || error.class() == git2::ErrorClass::Ssl =>
        {
            format!(
                "{}: if the server's certificate comes from a private CA, trust it with \
                 --git-ca-file FILE",
                error.message()
            )
        }
        _ => error.message().to_string(),
    }
}

/// The ssh server's host key against `--ssh-known-hosts`; TLS certificates are left to libgit2.
fn check_host_key(
    known: &KnownHosts,
    cert: &git2::cert::Cert<'_>,
    host: &str,
) -> Result<git2::CertificateCheckStatus, git2::Error> {
    let Some(hostkey) = cert.as_hostkey() else {
        return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
    };
    let Some(key) = hostkey.hostkey() else {
        return Err(git2::Error::from_str(&format!(
            "the ssh server {host} presented no host key to check against --ssh-known-hosts"
        )));
    };
    let presented = hostkey.hostkey_type().map_or("unknown", |t| t.name());
    let refuse = |why: String| {
        HOST_KEY_REFUSAL.with(|r| *r.borrow_mut() = Some(why.clone()));
        Err(git2::Error::from_str(&why))
    };
    match known.verdict(host, key) {
        Verdict::Trusted => Ok(git2::CertificateCheckStatus::CertificateOk),
        Verdict::Mismatch => refuse(format!(
            "the ssh host key of {host} ({presented}) is not the one --ssh-known-hosts lists \
             for it ({}): the server's key changed, or this is not that server; update the file \
             only after checking the new key",
            known.key_types_for(host).join(", ")
        )),
        Verdict::Unknown => refuse(format!(
            "{host} is not in --ssh-known-hosts: add its key (ssh-keyscan {host}), after \
             checking it, to the file"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let creds = Credentials {
            token: Some(Secret::new("ghp_supersecret")),
            ..Credentials::none()
        };
        assert!(!format!("{creds:?}").contains("supersecret"));
        assert_eq!(Secret::new("x").to_string(), "***");
    }

    #[test]
    fn urls_are_redacted() {
        for (url, want) in [
            (
                "https://user:tok@github.com/o/r.git",
                "https://***@github.com/o/r.git",
            ),
            (
                "https://tok@github.com/o/r.git",
                "https://***@github.com/o/r.git",
            ),
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            ("ssh://git@host/r.git", "ssh://***@host/r.git"),
            ("git@host:o/r.git", "git@host:o/r.git"),
            ("/srv/repo", "/srv/repo"),
            ("https://host/a@b", "https://host/a@b"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn token_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  tok123\n").unwrap();
        let creds = Credentials::load(&CredentialSettings {
            token_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(creds.token.as_ref().map(Secret::expose), Some("tok123"));

        // Present but empty (an optional Secret key left empty) is no token, not an error.
        std::fs::write(&file, "\n").unwrap();
        let creds = Credentials::load(&CredentialSettings {
            token_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(creds.token, None);
        let creds = Credentials::load(&CredentialSettings {
            token_env: Some("ORCHESTRATOR_TEST_TOKEN_THAT_IS_NOT_SET".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(creds.token, None);
        let empty_key = dir.path().join("empty_key");
        std::fs::write(&empty_key, "").unwrap();
        let creds = Credentials::load(&CredentialSettings {
            ssh_key: Some(empty_key),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(creds.ssh_key, None);
        // A path the user typed that does not exist stays an error.
        let err = Credentials::load(&CredentialSettings {
            token_file: Some(dir.path().join("missing")),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the git token file"),
            "{err}"
        );

        let err = Credentials::load(&CredentialSettings {
            ssh_key: Some(dir.path().join("nope")),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("the SSH key "), "{err}");
    }
}
