//! The endpoints, one file per idea; each handler turns a request into a call on the state and
//! its outcome into an `ApiResponse`.

pub mod context;
pub mod health;
pub mod operations;
pub mod status;
pub mod tasks;
pub mod webhook;

use super::change::ChangeRefused;
use super::commit::CommitError;
use super::error::ApiError;
use tracing::{error, warn};

/// The write's failure as the client should see it; causes the client cannot fix are logged
/// here and answered without their details.
pub(crate) fn commit_failed(e: CommitError) -> ApiError {
    match e {
        CommitError::Refused(refused) => match refused {
            ChangeRefused::TaskExists { .. } | ChangeRefused::ContextVersionTaken { .. } => {
                ApiError::Conflict(refused.to_string())
            }
            ChangeRefused::TaskNotFound { .. } => ApiError::NotFound(refused.to_string()),
            ChangeRefused::FolderBroken { .. } => ApiError::Conflict(refused.to_string()),
            ChangeRefused::ContextInvalid { problem, .. } => {
                ApiError::invalid("additionalContext", problem)
            }
        },
        CommitError::Fetch { .. } | CommitError::Push { .. } => {
            warn!(step = e.kind(), error = %redact(&e.to_string()), "git remote unreachable");
            ApiError::Unavailable(format!(
                "the git remote could not be reached ({}); nothing was written, retry later",
                e.kind()
            ))
        }
        CommitError::TooManyRaces { attempts } => ApiError::Unavailable(format!(
            "the branch kept moving under {attempts} attempts; nothing was written, retry"
        )),
        other => {
            error!(step = other.kind(), error = %redact(&other.to_string()), "git write failed");
            ApiError::Internal {
                step: "writing the commit",
            }
        }
    }
}

/// Removes `user:password@` from URLs in a message, so that logs never carry credentials.
pub(crate) fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact("cannot fetch https://bot:ghp_x@github.com/o/r.git: 401"),
            "cannot fetch https://<redacted>@github.com/o/r.git: 401"
        );
        assert_eq!(
            redact("file:///tmp/r and ssh://git@h/x"),
            "file:///tmp/r and ssh://<redacted>@h/x"
        );
        assert_eq!(redact("no urls"), "no urls");
    }
}
