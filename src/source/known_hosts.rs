//! SSH host keys from a known_hosts file (`--ssh-known-hosts`), as Flux and Argo CD take them:
//! text in, a verdict on the key an ssh server presents out. In a container there is no
//! `~/.ssh/known_hosts`, so without this file every ssh fetch fails host verification.
//!
//! Supported: OpenSSH lines `host[,host…] key-type base64-key [comment]`, `[host]:port` names,
//! hashed names (`|1|salt|hash`, as `ssh-keyscan -H` writes them), comments and blank lines.
//! Lines with a marker (`@cert-authority`, `@revoked`) and wildcard patterns are rejected with
//! a message rather than half-understood. Ports are not compared: libgit2 hands the callback
//! the host name only, so `[host]:2222` entries match `host` on any port.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The parsed file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    names: Names,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Names {
    /// Host names, without any `[…]:port`.
    Plain(Vec<String>),
    /// `|1|salt|hash`: HMAC-SHA1 of the name, keyed by the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// What the file says of a presented key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The host is listed with this key.
    Trusted,
    /// The host is listed, but with other keys: the server's key changed, or it is not the
    /// server it claims to be.
    Mismatch,
    /// The host is not listed at all.
    Unknown,
}

/// A line the parser did not accept (1-based line number).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct KnownHostsError {
    pub line: usize,
    pub reason: String,
}

impl KnownHosts {
    pub fn parse(text: &str) -> Result<Self, KnownHostsError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: &str| KnownHostsError {
                line: index + 1,
                reason: reason.to_string(),
            };
            if line.starts_with('@') {
                return Err(fail(
                    "markers such as @cert-authority and @revoked are not supported: list the host keys themselves",
                ));
            }
            let mut fields = line.split_whitespace();
            let (Some(names), Some(key_type), Some(key)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(fail(
                    "expected `host key-type base64-key`, as ssh-keyscan prints it",
                ));
            };
            let key = b64
                .decode(key)
                .map_err(|_| fail("the key is not valid base64"))?;
            let names = if let Some(hashed) = names.strip_prefix("|1|") {
                let (salt, hash) = hashed
                    .split_once('|')
                    .ok_or_else(|| fail("a hashed host name is `|1|salt|hash`"))?;
                Names::Hashed {
                    salt: b64
                        .decode(salt)
                        .map_err(|_| fail("the salt of the hashed host name is not base64"))?,
                    hash: b64
                        .decode(hash)
                        .map_err(|_| fail("the hash of the hashed host name is not base64"))?,
                }
            } else {
                let mut plain = Vec::new();
                for name in names.split(',') {
                    if name.contains(['*', '?', '!']) {
                        return Err(fail(
                            "wildcard and negated host patterns are not supported: name each host",
                        ));
                    }
                    plain.push(host_of(name).to_ascii_lowercase());
                }
                Names::Plain(plain)
            };
            entries.push(Entry {
                names,
                key_type: key_type.to_string(),
                key,
            });
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verdict on `key` (the raw public key blob, as in the file after base64) presented by
    /// `host`.
    pub fn verdict(&self, host: &str, key: &[u8]) -> Verdict {
        let host = host.to_ascii_lowercase();
        let mut listed = false;
        for entry in self.entries.iter().filter(|e| e.names.include(&host)) {
            if entry.key == key {
                return Verdict::Trusted;
            }
            listed = true;
        }
        if listed {
            Verdict::Mismatch
        } else {
            Verdict::Unknown
        }
    }

    /// The key types listed for `host`, for messages.
    pub fn key_types_for(&self, host: &str) -> Vec<&str> {
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(|e| e.names.include(&host))
            .map(|e| e.key_type.as_str())
            .collect()
    }
}

impl Names {
    fn include(&self, host: &str) -> bool {
        match self {
            Names::Plain(names) => names.iter().any(|n| n == host),
            Names::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(host.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
        }
    }
}

/// `[host]:port` → `host`; `host` as is.
fn host_of(name: &str) -> &str {
    name.strip_prefix('[')
        .and_then(|rest| rest.split_once("]:"))
        .map_or(name, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const KEY_A: &[u8] =
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY_B: &[u8] =
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn hashed(host: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(host.as_bytes());
        format!("|1|{}|{}", b64(salt), b64(&mac.finalize().into_bytes()))
    }

    #[test]
    fn verdicts() {
        let text = format!(
            "# comment\n\ngithub.com,140.82.121.3 ssh-ed25519 {a}\n[git.example.com]:2222 ssh-ed25519 {a} me@laptop\n{h} ssh-ed25519 {b}\n",
            a = b64(KEY_A),
            b = b64(KEY_B),
            h = hashed("hidden.example.com", b"0123456789abcdef0123"),
        );
        let known = KnownHosts::parse(&text).unwrap();
        let cases = [
            (
                "listed name, its key",
                "github.com",
                KEY_A,
                Verdict::Trusted,
            ),
            (
                "second name of the line",
                "140.82.121.3",
                KEY_A,
                Verdict::Trusted,
            ),
            (
                "names are case-insensitive",
                "GitHub.com",
                KEY_A,
                Verdict::Trusted,
            ),
            (
                "listed name, another key",
                "github.com",
                KEY_B,
                Verdict::Mismatch,
            ),
            (
                "[host]:port entry",
                "git.example.com",
                KEY_A,
                Verdict::Trusted,
            ),
            (
                "hashed entry",
                "hidden.example.com",
                KEY_B,
                Verdict::Trusted,
            ),
            (
                "hashed entry, another key",
                "hidden.example.com",
                KEY_A,
                Verdict::Mismatch,
            ),
            ("not listed", "gitlab.com", KEY_A, Verdict::Unknown),
        ];
        for (case, host, key, want) in cases {
            assert_eq!(known.verdict(host, key), want, "{case}");
        }
        assert_eq!(known.key_types_for("github.com"), ["ssh-ed25519"]);
    }

    #[test]
    fn lines_it_does_not_understand_are_errors_naming_the_line() {
        let a = b64(KEY_A);
        let cases = [
            (
                "host ssh-ed25519".to_string(),
                1,
                "expected `host key-type base64-key`",
            ),
            (
                "\nhost ssh-ed25519 not-base64!".to_string(),
                2,
                "not valid base64",
            ),
            (
                format!("@cert-authority *.example.com ssh-ed25519 {a}"),
                1,
                "markers",
            ),
            (format!("*.example.com ssh-ed25519 {a}"), 1, "wildcard"),
            (format!("|1|nohash ssh-ed25519 {a}"), 1, "|1|salt|hash"),
        ];
        for (text, line, says) in cases {
            let err = KnownHosts::parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{text}");
            assert!(err.to_string().contains(says), "{text}: {err}");
        }
    }
}
