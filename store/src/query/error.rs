//! How the read API refuses a request: a status and a JSON body that names what was wrong and
//! what is allowed, e.g.
//! `{"error":{"status":400,"code":"invalid_parameter","parameter":"timeframe","value":"2Min","allowed":"one of 1Min, 5Min, 15Min, 1Hour, 1Day","message":"…"}}`.
//!
//! | code | status | when |
//! |---|---|---|
//! | `invalid_parameter` | 400 | a parameter that is malformed, out of range, repeated or unknown |
//! | `range_too_large` | 400 | `end - start` wider than the timeframe's window (`allowed` names it) |
//! | `unauthorized` | 401 | a bearer token is configured and the request lacks it |
//! | `unknown_symbol` | 404 | no quote of the symbol was ever stored |
//! | `database` | 503 + Retry-After | the database is unavailable or failed the query |

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A request the read API did not answer (boxed: it travels through every `?` of a handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(Box<Refusal>);

impl std::ops::Deref for QueryError {
    type Target = Refusal;
    fn deref(&self) -> &Refusal {
        &self.0
    }
}

impl From<Refusal> for QueryError {
    fn from(r: Refusal) -> Self {
        Self(Box::new(r))
    }
}

/// What a [`QueryError`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    /// The parameter at fault (query parameter or path segment).
    pub parameter: Option<String>,
    /// The value given, as given.
    pub value: Option<String>,
    /// What the parameter accepts.
    pub allowed: Option<String>,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl QueryError {
    /// A 400 naming the parameter, the value and what is allowed.
    pub fn invalid(
        parameter: impl Into<String>,
        value: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Self {
        let parameter = parameter.into();
        let value = value.into();
        let allowed = allowed.into();
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_parameter",
            message: format!("{parameter}={value:?} is not allowed: {parameter} must be {allowed}"),
            parameter: Some(parameter),
            value: Some(value),
            allowed: Some(allowed),
            retry_after: None,
        }
        .into()
    }

    /// A 400 for a range wider than `window` allows for `what`.
    pub fn range_too_large(what: &str, given: &str, window: &str) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "range_too_large",
            parameter: Some("start".into()),
            value: Some(given.to_owned()),
            allowed: Some(format!("at most {window} between start and end for {what}")),
            message: format!(
                "the range {given} is too large for {what}: at most {window} between start and end; \
                 narrow it, or use a coarser timeframe"
            ),
            retry_after: None,
        }
        .into()
    }

    /// A 404 for symbols the store has no quote of.
    pub fn unknown_symbols(parameter: &str, symbols: &[String]) -> Self {
        let list = symbols.join(",");
        Refusal {
            status: StatusCode::NOT_FOUND,
            code: "unknown_symbol",
            parameter: Some(parameter.to_owned()),
            message: format!(
                "no quote of {list} is stored; GET /v1/symbols lists the symbols there are"
            ),
            value: Some(list),
            allowed: Some("a symbol listed by GET /v1/symbols".into()),
            retry_after: None,
        }
        .into()
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            parameter: None,
            value: None,
            allowed: None,
            message: message.into(),
            retry_after: None,
        }
        .into()
    }

    /// A 503 + Retry-After: the database is unavailable or failed the query.
    pub fn database(message: impl Into<String>, retry_after: u64) -> Self {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "database",
            parameter: None,
            value: None,
            allowed: None,
            message: message.into(),
            retry_after: Some(retry_after),
        }
        .into()
    }
}

/// The body of every refused read request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What was wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    #[schema(example = 400)]
    pub status: u16,
    /// `invalid_parameter`, `range_too_large`, `unauthorized`, `unknown_symbol` or `database`.
    #[schema(example = "invalid_parameter")]
    pub code: String,
    /// The parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "timeframe")]
    pub parameter: Option<String>,
    /// The value given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "2Min")]
    pub value: Option<String>,
    /// What the parameter accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "one of 1Min, 5Min, 15Min, 1Hour, 1Day")]
    pub allowed: Option<String>,
    /// A sentence saying what to change.
    pub message: String,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let r = *self.0;
        let body = ErrorBody {
            error: ErrorDetail {
                status: r.status.as_u16(),
                code: r.code.to_owned(),
                parameter: r.parameter,
                value: r.value,
                allowed: r.allowed,
                message: r.message,
            },
        };
        let mut response = (r.status, Json(body)).into_response();
        if let Some(secs) = r.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if r.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"quotestream\""),
            );
        }
        response
    }
}
