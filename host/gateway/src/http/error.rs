//! What the management API answers when it refuses a request: [`ApiError`], a domain error of the
//! control plane or one of HTTP's own, and [`ApiError::status`], the one place where either becomes
//! an HTTP status. The body is OpenFaaS's: the reason as plain text ([`crate::http::body::text`]).

use http::{HeaderValue, Response, StatusCode, header};

use crate::control;
use crate::http::body::{GatewayBody, text};

/// Why the management API refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The control plane refused the change or the question.
    #[error(transparent)]
    Control(#[from] control::Error),
    /// The request cannot be read: its JSON, its body, a value in it.
    #[error("{0}")]
    BadRequest(String),
    /// No route has this path (the path).
    #[error("no such endpoint: {0}")]
    NoSuchEndpoint(String),
    /// No stored artifact has this digest (the digest).
    #[error("no artifact {0}")]
    NoSuchArtifact(String),
    /// The route exists, the method does not: why, and the methods the route serves, which the
    /// answer lists in `Allow` (RFC 9110 requires it on every 405).
    #[error("{reason}")]
    MethodNotAllowed {
        /// What was refused, for the body.
        reason: String,
        /// The `Allow` header: the route's methods, comma separated.
        allow: &'static str,
    },
    /// The body is larger than this many bytes.
    #[error("the body is larger than the {0} byte limit")]
    TooLarge(usize),
    /// The request is well formed but its values cannot be used (the logs route's query).
    #[error("{0}")]
    Unprocessable(String),
}

impl From<wasmgate_openfaas::names::NameError> for ApiError {
    fn from(error: wasmgate_openfaas::names::NameError) -> Self {
        ApiError::Control(error.into())
    }
}

impl ApiError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Control(error) => match error {
                control::Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
                control::Error::NotFound(_) => StatusCode::NOT_FOUND,
                control::Error::Conflict(_) => StatusCode::CONFLICT,
                control::Error::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
                control::Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NoSuchEndpoint(_) | ApiError::NoSuchArtifact(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The answer: the status, and the reason as the plain-text body (with `Allow` on a 405).
    pub fn response(&self) -> Response<GatewayBody> {
        let mut response = text(self.status(), &self.to_string());
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_its_text() {
        let internal = control::Error::Internal {
            context: "storing the function",
            detail: "disk full".into(),
        };
        let cases: [(ApiError, u16, &str); 11] = [
            (
                control::Error::invalid("image is required").into(),
                400,
                "image is required",
            ),
            (
                control::Error::NotFound("function hello.openfaas-fn".into()).into(),
                404,
                "function hello.openfaas-fn not found",
            ),
            (
                control::Error::Conflict("namespace team".into()).into(),
                409,
                "namespace team already exists",
            ),
            (internal.into(), 500, "storing the function: disk full"),
            (
                ApiError::BadRequest("invalid JSON: EOF".into()),
                400,
                "invalid JSON: EOF",
            ),
            (
                ApiError::NoSuchEndpoint("/system/nothing".into()),
                404,
                "no such endpoint: /system/nothing",
            ),
            (
                ApiError::NoSuchArtifact("sha256:ab".into()),
                404,
                "no artifact sha256:ab",
            ),
            (
                ApiError::MethodNotAllowed {
                    reason: "PATCH is not allowed here".into(),
                    allow: "GET, POST",
                },
                405,
                "PATCH is not allowed here",
            ),
            (
                ApiError::TooLarge(1024),
                413,
                "the body is larger than the 1024 byte limit",
            ),
            (
                ApiError::Unprocessable("name is required".into()),
                422,
                "name is required",
            ),
            (
                wasmgate_openfaas::names::FunctionRef::new("a/b", None)
                    .expect_err("an invalid name")
                    .into(),
                400,
                "invalid function name \"a/b\": use letters, digits, '-', '_' and '.'",
            ),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        for (error, status, body) in cases {
            let response = error.response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            let allow = response.headers().get(http::header::ALLOW);
            match &error {
                ApiError::MethodNotAllowed {
                    allow: expected, ..
                } => {
                    assert_eq!(allow.map(|v| v.as_bytes()), Some(expected.as_bytes()));
                }
                _ => assert!(allow.is_none(), "{error:?}"),
            }
            assert_eq!(
                response.headers()[http::header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
            let bytes = runtime
                .block_on(response.into_body().collect())
                .expect("a body")
                .to_bytes();
            assert_eq!(bytes, format!("{body}\n").as_bytes(), "{error:?}");
        }
    }
}
