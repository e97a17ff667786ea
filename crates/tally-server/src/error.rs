//! The one error type of the HTTP API, rendered as a JSON body that names the problem.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// One problem with one field of one event.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Position of the event in the request body (0-based), when the problem is in an event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<usize>,
    /// Dotted path of the field, e.g. `actor.ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The rule that was broken.
    pub rule: String,
    /// Line and column in the body, for syntax errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column in the body, for syntax errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

/// Body of every error response: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// The error itself.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code, e.g. `invalid_event`.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// Per-field problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

/// The code of an error response, as a response extension.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// An API error: status, code, message and details.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<ErrorDetail>,
    retry_after: Option<u32>,
    close: bool,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            close: false,
        }
    }

    /// Adds per-field details.
    pub fn with_details(mut self, details: Vec<ErrorDetail>) -> Self {
        self.details = details;
        self
    }

    /// Asks the client to retry after a number of seconds (503, 409 for unsigned indexes).
    /// Ends the connection after this answer (`Connection: close`): for a request whose body
    /// was not read to its end, so that the client's unsent rest is not waited for.
    pub fn close_connection(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 for a malformed parameter.
    pub fn bad_param(name: &str, rule: impl Into<String>) -> Self {
        let rule = rule.into();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("query parameter {name}: {rule}"),
        )
        .with_details(vec![ErrorDetail {
            event: None,
            field: Some(name.to_string()),
            rule,
            line: None,
            column: None,
        }])
    }

    /// An error about one field of a request body or path: the message reads `{field}:
    /// {rule}`, and the details name the field.
    pub fn field(
        status: StatusCode,
        code: &'static str,
        field: &str,
        rule: impl Into<String>,
    ) -> Self {
        let rule = rule.into();
        ApiError::new(status, code, format!("{field}: {rule}")).with_details(vec![ErrorDetail {
            event: None,
            field: Some(field.to_string()),
            rule,
            line: None,
            column: None,
        }])
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            // Throttled by code: a full disk refuses every request, and one line per refusal
            // would fill it faster.
            tally_store::throttled_error!(self.code, "{}", self.message);
        }
        let body = ErrorBody {
            error: ErrorInfo {
                status: self.status.as_u16(),
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        // For layers that act on the outcome (the recording of refused requests).
        response.extensions_mut().insert(ErrorCode(self.code));
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<tally_store::ReadError> for ApiError {
    fn from(e: tally_store::ReadError) -> Self {
        match e {
            tally_store::ReadError::UnknownTenant(t) => {
                ApiError::not_found(format!("tenant {t} has no events yet"))
            }
            tally_store::ReadError::OutOfRange(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "out_of_range", m)
            }
            tally_store::ReadError::Store(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                format!("{e}; the operator should run `tally verify`"),
            ),
        }
    }
}
