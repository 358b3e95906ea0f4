//! The one answer shape of the API: a failed step in, an `ApiResponse` with the right status out.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Every answer of the API, success or failure, has this shape (the sketch's `ApiResponse`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiResponse {
    pub success: bool,
    pub message: String,
    /// What was created or read (an object or a list, per endpoint); for a 400,
    /// `{"field": "<the field at fault>"}`; absent when there is nothing to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub data: Option<Value>,
}

impl ApiResponse {
    pub fn ok(message: impl Into<String>, data: Option<Value>) -> Self {
        ApiResponse {
            success: true,
            message: message.into(),
            data,
        }
    }

    pub fn failed(message: impl Into<String>, data: Option<Value>) -> Self {
        ApiResponse {
            success: false,
            message: message.into(),
            data,
        }
    }
}

/// A successful answer with its status code.
pub struct Answer(pub StatusCode, pub ApiResponse);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// Why a request failed. The message is what the client reads, so it names the thing at fault
/// and how to fix it, and never carries a secret or an internal error's text.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field of the request is wrong; `field` is its JSON path (`markdownFiles[0].filename`).
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The body is not the JSON the endpoint takes.
    #[error("{0}")]
    MalformedBody(String),
    #[error("request body is larger than the limit of {limit} bytes; send smaller content")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request did not finish within {seconds} s; a write may still land: check the task")]
    Timeout { seconds: u64 },
    /// Git or the cluster could not be reached; retrying later may help.
    #[error("{0}")]
    Unavailable(String),
    /// A step failed for a reason the client cannot fix; the details go to the server log only.
    #[error("internal error while {step}; the server log has the details")]
    Internal { step: &'static str },
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidField { .. } | ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            ApiError::InvalidField { field, .. } => Some(serde_json::json!({ "field": field })),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            Json(ApiResponse::failed(self.to_string(), self.data())),
        )
            .into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// `axum::Json` whose rejections answer in the ApiResponse shape (400 malformed, 413 too large).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection, limit)),
        }
    }
}

/// The configured body limit, put into request extensions by the router so that a 413 can say
/// what the limit is.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

fn json_rejection(rejection: JsonRejection, limit: Option<usize>) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::BodyTooLarge {
            limit: limit.unwrap_or_default(),
        };
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::MalformedBody(
            "the body must be JSON: send the header `Content-Type: application/json`".into(),
        ),
        // serde's message names the field and the line/column, and holds no secret.
        JsonRejection::JsonDataError(e) => ApiError::MalformedBody(format!(
            "the JSON does not match the request: {}",
            e.body_text()
        )),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::MalformedBody(format!("the body is not valid JSON: {}", e.body_text()))
        }
        other => ApiError::MalformedBody(format!("could not read the body: {}", other.body_text())),
    }
}

/// The raw body, with the same 413 rule as [`ApiJson`] (the webhook needs the exact bytes).
pub struct ApiBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(rejection) => Err(bytes_rejection(rejection, limit)),
        }
    }
}

fn bytes_rejection(rejection: BytesRejection, limit: Option<usize>) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge {
            limit: limit.unwrap_or_default(),
        }
    } else {
        ApiError::MalformedBody(format!(
            "could not read the body: {}",
            rejection.body_text()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_follow_the_variant() {
        let cases = [
            (ApiError::invalid("id", "bad"), StatusCode::BAD_REQUEST),
            (ApiError::MalformedBody("x".into()), StatusCode::BAD_REQUEST),
            (
                ApiError::BodyTooLarge { limit: 1 },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (ApiError::Unauthorized("x".into()), StatusCode::UNAUTHORIZED),
            (ApiError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (ApiError::Conflict("x".into()), StatusCode::CONFLICT),
            (
                ApiError::Internal { step: "x" },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
        }
    }

    #[test]
    fn a_field_error_names_the_field_in_message_and_data() {
        let e = ApiError::invalid("markdownFiles[0].filename", "must not contain '/'");
        assert_eq!(
            e.to_string(),
            "markdownFiles[0].filename: must not contain '/'"
        );
        assert_eq!(
            e.data(),
            Some(serde_json::json!({"field": "markdownFiles[0].filename"}))
        );
    }
}
