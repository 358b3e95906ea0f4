//! `POST /api/v1/webhook/git`: a signed GitHub- or Gitea-style push event in, an immediate
//! fetch-and-sync out.

use crate::api::error::{Answer, ApiBytes, ApiError, ApiResponse};
use crate::api::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tracing::info;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const GITEA_SIGNATURE_HEADER: &str = "x-gitea-signature";

/// What a verified event asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookAction {
    /// GitHub's `ping` on hook creation.
    Pong,
    /// A push to another branch: nothing to sync.
    Ignore {
        pushed: String,
    },
    Sync,
}

/// Decides from the event name and the payload's `ref` (pure). A payload without a `ref` (or
/// not JSON) triggers a sync: being told too often is cheap, missing a push is not.
pub fn webhook_action(event: Option<&str>, body: &[u8], branch: &str) -> WebhookAction {
    if event == Some("ping") {
        return WebhookAction::Pong;
    }
    let pushed = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
    match pushed {
        Some(r) if r.starts_with("refs/heads/") && r != format!("refs/heads/{branch}") => {
            WebhookAction::Ignore { pushed: r }
        }
        _ => WebhookAction::Sync,
    }
}

/// Verify the signature and trigger a sync.
#[utoipa::path(
    post,
    path = "/api/v1/webhook/git",
    tag = "webhook",
    request_body(content = Object, description = "The push event; signed with X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>"),
    responses(
        (status = 202, description = "Sync triggered or push ignored", body = ApiResponse),
        (status = 200, description = "Ping answered", body = ApiResponse),
        (status = 401, description = "Missing or wrong signature", body = ApiResponse),
        (status = 403, description = "No webhook secret configured", body = ApiResponse),
        (status = 413, description = "Body too large", body = ApiResponse),
    )
)]
pub async fn git_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Answer, ApiError> {
    let Some(secret) = &state.webhook_secret else {
        return Err(ApiError::Forbidden(
            "webhooks are disabled: set --webhook-secret-file or ORCHESTRATOR_WEBHOOK_SECRET"
                .into(),
        ));
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .or_else(|| headers.get(GITEA_SIGNATURE_HEADER))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "missing X-Hub-Signature-256: configure the webhook with the shared secret".into(),
            )
        })?;
    if !secret.verify(&body, signature) {
        return Err(ApiError::Unauthorized(
            "the webhook signature does not match: the secret differs from this server's".into(),
        ));
    }
    let event = headers
        .get("x-github-event")
        .or_else(|| headers.get("x-gitea-event"))
        .and_then(|v| v.to_str().ok());
    let answer = match webhook_action(event, &body, state.writes.branch()) {
        WebhookAction::Pong => Answer(StatusCode::OK, ApiResponse::ok("pong", None)),
        WebhookAction::Ignore { pushed } => Answer(
            StatusCode::ACCEPTED,
            ApiResponse::ok(
                format!(
                    "ignored: the push was to {pushed}, this server syncs {}",
                    state.writes.branch()
                ),
                None,
            ),
        ),
        WebhookAction::Sync => {
            info!("webhook: triggering a sync");
            (state.trigger)();
            Answer(
                StatusCode::ACCEPTED,
                ApiResponse::ok("sync triggered", None),
            )
        }
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let push = |r: &str| format!(r#"{{"ref":"{r}","after":"abc"}}"#).into_bytes();
        assert_eq!(
            webhook_action(Some("ping"), b"{}", "main"),
            WebhookAction::Pong
        );
        assert_eq!(
            webhook_action(Some("push"), &push("refs/heads/main"), "main"),
            WebhookAction::Sync
        );
        assert_eq!(
            webhook_action(Some("push"), &push("refs/heads/dev"), "main"),
            WebhookAction::Ignore {
                pushed: "refs/heads/dev".into()
            }
        );
        assert_eq!(
            webhook_action(None, b"not json", "main"),
            WebhookAction::Sync
        );
        assert_eq!(
            webhook_action(Some("push"), &push("refs/tags/v1"), "main"),
            WebhookAction::Sync
        );
    }
}
