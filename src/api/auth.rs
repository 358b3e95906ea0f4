//! Who may write: a presented bearer token or webhook signature in, allowed or 401 out. Secrets
//! are compared in constant time and never printed (their `Debug` is redacted).

use super::error::ApiError;
use super::state::AppState;
use crate::secret_source::SecretSource;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The environment variable that may hold the API token.
pub const TOKEN_ENV: &str = "ORCHESTRATOR_API_TOKEN";
/// The environment variable that may hold the webhook secret.
pub const WEBHOOK_SECRET_ENV: &str = "ORCHESTRATOR_WEBHOOK_SECRET";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret file {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a secret from `file` (first line, trimmed), else from the environment variable
/// `env_name`. An empty file or an empty or unset variable is no secret (see
/// [`crate::secret_source`]); a file that cannot be read is an error.
pub fn load_secret(file: Option<&Path>, env_name: &str) -> Result<SecretSource, SecretError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::ReadFile {
            path: path.display().to_string(),
            source,
        })?;
        return Ok(SecretSource::of(Some(
            text.lines().next().unwrap_or_default(),
        )));
    }
    Ok(SecretSource::from_env(env_name))
}

/// The bearer token write endpoints require. Only its sha256 is kept, so comparing takes the
/// same time whatever the presented token's length.
#[derive(Clone)]
pub struct ApiToken(Arc<[u8; 32]>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    pub fn new(token: &str) -> Self {
        ApiToken(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&*self.0).into()
    }
}

/// The shared secret of push webhooks.
#[derive(Clone)]
pub struct WebhookSecret(Arc<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    pub fn new(secret: &str) -> Self {
        WebhookSecret(Arc::new(secret.as_bytes().to_vec()))
    }

    /// Checks a GitHub `X-Hub-Signature-256` (`sha256=<hex>`) or Gitea `X-Gitea-Signature`
    /// (`<hex>`) header against HMAC-SHA256(secret, body), in constant time.
    pub fn verify(&self, body: &[u8], header: &str) -> bool {
        let hex_part = header
            .trim()
            .strip_prefix("sha256=")
            .unwrap_or(header.trim());
        let Ok(signature) = hex::decode(hex_part) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(body);
        // verify_slice compares in constant time.
        mac.verify_slice(&signature).is_ok()
    }

    /// The header value a sender would put on `body` (for tests and examples).
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// Proof that the request carried the API token: write handlers take it as their first
/// extractor, so a request without the token is answered 401 before its body is read.
#[derive(Debug)]
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_bearer(state.token.as_ref(), parts.headers.get(AUTHORIZATION)).map(|()| Authorized)
    }
}

fn check_bearer(
    token: Option<&ApiToken>,
    header: Option<&axum::http::HeaderValue>,
) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::Unauthorized(
            "this server has no API token configured, so it accepts no writes: set \
             --api-token-file or ORCHESTRATOR_API_TOKEN"
                .into(),
        ));
    };
    let presented = header.and_then(|h| h.to_str().ok()).and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    });
    match presented {
        None => Err(ApiError::Unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>`".into(),
        )),
        Some(p) if token.matches(p.trim()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens() {
        let token = ApiToken::new("s3cret");
        let ok = HeaderValue::from_static("Bearer s3cret");
        assert!(check_bearer(Some(&token), Some(&ok)).is_ok());
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            let h = HeaderValue::from_str(bad).unwrap();
            assert!(check_bearer(Some(&token), Some(&h)).is_err(), "{bad:?}");
        }
        assert!(check_bearer(Some(&token), None).is_err());
        assert!(
            check_bearer(None, Some(&ok)).is_err(),
            "no token configured: no writes"
        );
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn webhook_signatures() {
        let secret = WebhookSecret::new("It's a Secret to Everybody");
        // GitHub's documented example for this secret and body.
        let body = b"Hello, World!";
        let github = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(secret.sign(body), github);
        assert!(secret.verify(body, github));
        assert!(
            secret.verify(body, &github["sha256=".len()..]),
            "Gitea style"
        );
        assert!(!secret.verify(b"Hello, World?", github));
        assert!(!secret.verify(body, "sha256=zz"));
        assert!(!secret.verify(body, ""));
        assert!(!WebhookSecret::new("other").verify(body, github));
    }

    #[test]
    fn secrets_come_from_a_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        // PATH is set in every test environment; the file wins over it.
        assert_eq!(
            load_secret(Some(&file), "PATH").unwrap(),
            SecretSource::Value("from-file".into())
        );
        assert_eq!(
            load_secret(None, "ORCHESTRATOR_TEST_SECRET_THAT_IS_NOT_SET").unwrap(),
            SecretSource::Unset
        );
        // An empty file (an optional Secret key left empty) is no secret, not an error.
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(
            load_secret(Some(&file), "PATH").unwrap(),
            SecretSource::Empty
        );
        assert!(load_secret(Some(&dir.path().join("missing")), "PATH").is_err());
    }
}
