//! How a refused or failed request is answered: a status for its failure class and a JSON body
//! that names the problem, e.g.
//! `{"error":{"status":422,"rule":"INV-002","index":3,"message":"ticker \"aapl\" has lower-case letters; …"}}`.
//!
//! | class | status |
//! |---|---|
//! | malformed JSON, a body that is not a batch | 400 |
//! | body over `--max-body-bytes` | 413 |
//! | Content-Type not application/json (INV-007) | 415 |
//! | a broken contract rule (INV-001..006, volume, range, duplicate) or an Idempotency-Key reused for another body | 422 |
//! | the database is unavailable or failed the write | 503 + Retry-After (the worker retries) |

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quotestream_api::batch::Violation;
use serde::Serialize;

/// A request the store did not take.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The rule or failure class (`INV-002`, `json`, `body_size`, `database`, …).
    pub rule: &'static str,
    /// The offending quote, for rules about one quote.
    pub index: Option<usize>,
    pub message: String,
    /// Seconds for Retry-After (503 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            rule,
            index: None,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "database", message)
        }
    }
}

impl From<Violation> for ApiError {
    fn from(v: Violation) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            rule: v.rule.label(),
            index: v.index,
            message: v.message,
            retry_after: None,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    status: u16,
    rule: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                status: self.status.as_u16(),
                rule: self.rule,
                index: self.index,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
