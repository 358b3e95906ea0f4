//! The git source over ssh against a real OpenSSH server on loopback: an SSH key and
//! `--ssh-known-hosts` fetch the task folders; a host missing from the file, a changed host
//! key and an unauthorised client key each fail with a message that says what to fix.
//!
//! Needs `/usr/sbin/sshd` (Debian's openssh-server, which `.ci/run` installs). Without it the
//! tests skip, unless ORCHESTRATOR_REQUIRE_SSHD is set (CI sets it), when they fail.

mod source_support;

use orchestrator::source::SourceError;
use orchestrator::source::credentials::{CredentialSettings, Credentials};
use source_support::{TestRepo, YAML_WEB};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

struct SshServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "orchestrator-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn public_key(private: &Path) -> String {
    std::fs::read_to_string(private.with_extension("pub")).unwrap()
}

impl SshServer {
    /// An sshd on a free loopback port that lets the current user in with `client_key` only.
    /// `None` when sshd is not installed (and not required).
    fn start() -> Option<SshServer> {
        if !Path::new(SSHD).exists() {
            assert!(
                std::env::var_os("ORCHESTRATOR_REQUIRE_SSHD").is_none(),
                "ORCHESTRATOR_REQUIRE_SSHD is set but {SSHD} is missing: apt-get install openssh-server"
            );
            eprintln!("skipping: {SSHD} is not installed (apt-get install openssh-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        keygen(&host_key);
        keygen(&dir.path().join("client_key"));
        keygen(&dir.path().join("stranger_key"));
        std::fs::write(
            dir.path().join("authorized_keys"),
            public_key(&dir.path().join("client_key")),
        )
        .unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
                 AuthorizedKeysFile {keys}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 StrictModes no\nUsePAM no\nAllowUsers {user}\n",
                host_key = host_key.display(),
                pid = dir.path().join("sshd.pid").display(),
                keys = dir.path().join("authorized_keys").display(),
            ),
        )
        .unwrap();
        // sshd's privilege separation directory, as the Debian service creates it.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        let server = SshServer {
            child,
            port,
            dir,
            user,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen within 10 s: {}",
                std::fs::read_to_string(server.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// A known_hosts file that lists this server's real host key for 127.0.0.1.
    fn trusting_known_hosts(&self) -> PathBuf {
        let host = public_key(&self.key("host_key"));
        self.known_hosts("known_hosts", "127.0.0.1", &host)
    }

    /// A known_hosts file listing `public` (a public key line) for `host`.
    fn known_hosts(&self, name: &str, host: &str, public: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(&path, format!("# test\n{host} {kind} {key}\n")).unwrap();
        path
    }
}

fn origin() -> TestRepo {
    let origin = TestRepo::new();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    origin.commit("one");
    origin
}

async fn fetch(url: String, key: PathBuf, known_hosts: PathBuf) -> Result<Vec<i64>, SourceError> {
    let credentials = Credentials::load(&CredentialSettings {
        ssh_key: Some(key),
        known_hosts_file: Some(known_hosts),
        ..Default::default()
    })
    .unwrap();
    let mirrors = tempfile::tempdir().unwrap();
    let mut source = source_support::git_source(url, mirrors.path(), credentials);
    let snapshot = source.fetch_snapshot().await?;
    Ok(snapshot.tasks.iter().map(|t| t.task_id).collect())
}

#[tokio::test]
async fn an_ssh_key_and_known_hosts_fetch_the_tasks() {
    let Some(server) = SshServer::start() else {
        return;
    };
    let origin = origin();
    let known = server.trusting_known_hosts();
    let ids = fetch(server.url(origin.path()), server.key("client_key"), known)
        .await
        .unwrap();
    assert_eq!(ids, vec![1]);
}

#[tokio::test]
async fn a_host_missing_from_known_hosts_or_with_another_key_is_refused() {
    let Some(server) = SshServer::start() else {
        return;
    };
    let origin = origin();
    let host = public_key(&server.key("host_key"));
    let stranger = public_key(&server.key("stranger_key"));
    let cases = [
        (
            server.known_hosts("other_host", "git.example.com", &host),
            "127.0.0.1 is not in --ssh-known-hosts: add its key (ssh-keyscan 127.0.0.1)",
        ),
        (
            server.known_hosts("changed_key", "127.0.0.1", &stranger),
            "the ssh host key of 127.0.0.1 (ssh-ed25519) is not the one --ssh-known-hosts lists",
        ),
    ];
    for (known, says) in cases {
        let err = fetch(server.url(origin.path()), server.key("client_key"), known)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
    }
}

#[tokio::test]
async fn a_key_the_server_does_not_accept_fails_with_an_authentication_error() {
    let Some(server) = SshServer::start() else {
        return;
    };
    let origin = origin();
    let known = server.trusting_known_hosts();
    let err = fetch(server.url(origin.path()), server.key("stranger_key"), known)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication"), "{err}");
    assert!(
        !err.contains("BEGIN OPENSSH"),
        "no key material in messages: {err}"
    );
}
