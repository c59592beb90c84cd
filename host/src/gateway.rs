//! The gateway as a value: routes, the invocation contract of OpenFaaS, and the mapping of runtime
//! errors to HTTP. It takes any request and returns a response, so it runs without a socket too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tracing::Instrument;
use wasmgate_runtime::{Error as RuntimeError, InflightScope, Runtime};

use crate::api::Api;
use crate::auth::Credentials;
use crate::http_limits::{BodyLimit, HttpLimits, LimitedBody, Tripped};
use crate::metrics::Metrics;
use crate::names::FunctionRef;

/// Any error a response body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the gateway sends.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// Names this gateway in `X-OpenFaaS-Internal` on the errors it produces itself.
const INTERNAL: &str = "wasmgate";
const X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
const X_START_TIME: HeaderName = HeaderName::from_static("x-start-time");
const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_OPENFAAS_INTERNAL: HeaderName = HeaderName::from_static("x-openfaas-internal");
/// Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
/// The methods OpenFaaS lets through to a function.
const ALLOWED_METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::HEAD,
];

/// Routes requests: functions to the [`Runtime`], `/system/*` to the management [`Api`] behind basic
/// auth, `/metrics` and `/healthz` to themselves.
#[derive(Debug, Clone)]
pub struct Gateway {
    runtime: Runtime,
    metrics: Arc<Metrics>,
    auth: Option<Credentials>,
    api: Api,
    http_limits: HttpLimits,
}

impl Gateway {
    /// A gateway over `api`'s functions; `auth`, when set, guards `/system/*`.
    pub fn new(api: Api, metrics: Arc<Metrics>, auth: Option<Credentials>) -> Self {
        Gateway {
            runtime: api.functions.runtime().clone(),
            metrics,
            auth,
            api,
            http_limits: HttpLimits::default(),
        }
    }

    /// Holds request bodies to `limits` instead of the defaults.
    pub fn with_http_limits(mut self, limits: HttpLimits) -> Self {
        self.http_limits = limits;
        self
    }

    /// Answers one request. `peer` is the client's address, for `X-Forwarded-For`.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response<GatewayBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path();
        if path == "/healthz" {
            return text(StatusCode::OK, "OK");
        }
        if path == "/metrics" {
            let mut response = text(StatusCode::OK, "");
            self.metrics
                .set_functions_loaded(self.runtime.loaded_count() as u64);
            *response.body_mut() = Full::new(Bytes::from(self.metrics.render()))
                .map_err(|never| match never {})
                .boxed_unsync();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            return response;
        }
        if path == "/system" || path.starts_with("/system/") {
            if let Some(credentials) = &self.auth
                && !credentials.check(request.headers())
            {
                let mut response = text(StatusCode::UNAUTHORIZED, "invalid credentials");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Restricted\""),
                );
                return response;
            }
            return self.api.handle(request).await;
        }
        if let Some(route) = path.strip_prefix("/function/") {
            let (name, suffix) = match route.find('/') {
                Some(slash) => (&route[..slash], &route[slash..]),
                None => (route, "/"),
            };
            let suffix = suffix.to_string();
            return match FunctionRef::parse(name) {
                Ok(function) => self.invoke(function, suffix, request, peer).await,
                Err(_) => internal_error(
                    StatusCode::NOT_FOUND,
                    &format!("function {name:?} not found"),
                ),
            };
        }
        text(StatusCode::NOT_FOUND, "not found")
    }

    async fn invoke<B>(
        &self,
        function: FunctionRef,
        suffix: String,
        request: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response<GatewayBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let key = function.key();
        // Only deployed functions get metric series, so made-up names cannot grow them.
        let known = self.runtime.contains(&key);
        if known {
            self.metrics.invocation_started(&key);
        }
        let (mut parts, body) = request.into_parts();
        let call_id = call_id(&parts.headers);
        let start_time = parts
            .headers
            .get(X_START_TIME)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from(unix_nanos()));
        let span = tracing::info_span!(
            "invoke",
            function = %function,
            call_id = %call_id.to_str().unwrap_or_default(),
            method = %parts.method,
            path = %suffix,
            status = tracing::field::Empty,
        );

        let response = async {
            if !ALLOWED_METHODS.contains(&parts.method) {
                let mut response =
                    internal_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                response.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD"),
                );
                return response;
            }
            let request_content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
            parts.uri = match guest_uri(&parts.headers, &suffix, parts.uri.query()) {
                Ok(uri) => uri,
                Err(reason) => return internal_error(StatusCode::BAD_REQUEST, &reason),
            };
            prepare_request_headers(&mut parts.headers, &call_id, &start_time, peer);
            let max_body = self.http_limits.max_request_body;
            if content_length(&parts.headers).is_some_and(|length| length > max_body) {
                return internal_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is larger than this gateway's limit of {max_body} bytes"),
                );
            }
            let tripped = Tripped::default();
            let body = LimitedBody::new(body, self.http_limits, tripped.clone());

            let outcome = self
                .runtime
                .invoke(&key, Request::from_parts(parts, body))
                .await;
            // A body cut short by a limit before the function answered explains the answer better
            // than whatever the function made of the truncated body; the function is dropped.
            let outcome = match (tripped.get(), outcome) {
                (Some(_), Ok(response)) => {
                    drop(response);
                    Err(RuntimeError::Internal("the request body was cut short".into()))
                }
                (_, outcome) => outcome,
            };
            match outcome {
                Ok(response) => {
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    if !parts.headers.contains_key(header::CONTENT_TYPE) {
                        let fallback =
                            request_content_type.unwrap_or(HeaderValue::from_static("text/plain"));
                        parts.headers.insert(header::CONTENT_TYPE, fallback);
                    }
                    Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
                }
                // A guest that failed after its request body was cut short failed because of that.
                Err(error) => match tripped.get() {
                    Some(BodyLimit::TooLarge) => internal_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!(
                            "the request body is larger than this gateway's limit of {max_body} bytes"
                        ),
                    ),
                    Some(BodyLimit::TooSlow) => internal_error(
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "the request body stopped arriving for {:?}",
                            self.http_limits.read_timeout
                        ),
                    ),
                    None => error_response(&function, &error),
                },
            }
        }
        .instrument(span.clone())
        .await;

        let mut response = response;
        let headers = response.headers_mut();
        headers.insert(X_CALL_ID, call_id);
        headers.insert(X_START_TIME, start_time);
        headers.insert(X_DURATION_SECONDS, duration_header(started));
        span.record("status", response.status().as_u16());
        if known {
            let seconds = started.elapsed().as_secs_f64();
            self.metrics
                .invocation_finished(&key, response.status().as_u16(), seconds);
        }
        response
    }
}

/// Maps a runtime error to the answer the client gets; the full reason goes to the log.
fn error_response(function: &FunctionRef, error: &RuntimeError) -> Response<GatewayBody> {
    let (status, reason) = match error {
        RuntimeError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            format!("function {function} not found"),
        ),
        RuntimeError::Trap { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("function {function} failed"),
        ),
        RuntimeError::NoResponse { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("function {function} returned without a response"),
        ),
        RuntimeError::GuestError { code, .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("function {function} answered with an error: {code}"),
        ),
        RuntimeError::Timeout { limit, .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("function {function} timed out after {limit:?}"),
        ),
        RuntimeError::MemoryLimit { limit, .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "function {function} exceeded its memory limit of {}",
                crate::quantity::format_memory(*limit)
            ),
        ),
        RuntimeError::TooManyRequests { scope, limit, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            match scope {
                InflightScope::Function => {
                    format!(
                        "function {function} is serving its maximum of {limit} requests at once"
                    )
                }
                InflightScope::Runtime => {
                    format!("the gateway is serving its maximum of {limit} requests at once")
                }
            },
        ),
        RuntimeError::Busy { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no instance free for function {function}; try again shortly"),
        ),
        RuntimeError::InvalidComponent { .. } | RuntimeError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("function {function} could not be run"),
        ),
    };
    if status == StatusCode::NOT_FOUND {
        tracing::debug!(%error, "unknown function");
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        // Load shedding is expected under load; one line per refused request would flood the log.
        tracing::debug!(%error, "request refused");
    } else {
        tracing::error!(%error, "invocation failed");
    }
    internal_error(status, &reason)
}

/// A plain-text answer produced by the gateway itself, marked so retriers can tell it from a
/// function's own answer.
fn internal_error(status: StatusCode, reason: &str) -> Response<GatewayBody> {
    let mut response = text(status, reason);
    response
        .headers_mut()
        .insert(X_OPENFAAS_INTERNAL, HeaderValue::from_static(INTERNAL));
    response
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<GatewayBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{body}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The declared `Content-Length`, when there is a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The client's `X-Call-Id` when it sent a usable one, else a new UUID.
fn call_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(X_CALL_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid header value")
        })
}

fn unix_nanos() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

fn duration_header(started: Instant) -> HeaderValue {
    HeaderValue::from_str(&format!("{:.6}", started.elapsed().as_secs_f64()))
        .expect("digits are a valid header value")
}

/// The URI the guest sees: `http://<host>/<suffix>?<query>`, the query byte for byte as sent.
fn guest_uri(headers: &HeaderMap, suffix: &str, query: Option<&str>) -> Result<Uri, String> {
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .unwrap_or("localhost");
    let path_and_query = match query {
        Some(query) => format!("{suffix}?{query}"),
        None => suffix.to_string(),
    };
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("invalid request path: {e}"))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// What OpenFaaS adds to a request on its way to the function.
fn prepare_request_headers(
    headers: &mut HeaderMap,
    call_id: &HeaderValue,
    start_time: &HeaderValue,
    peer: Option<SocketAddr>,
) {
    strip_hop_by_hop(headers);
    headers.insert(X_CALL_ID, call_id.clone());
    headers.insert(X_START_TIME, start_time.clone());
    if !headers.contains_key(X_FORWARDED_HOST)
        && let Some(host) = headers.get(header::HOST).cloned()
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Some(peer) = peer {
        let forwarded = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever path and query a client may send (anything `http::Uri` accepts), the function sees
        /// exactly that path suffix and that raw query; nothing panics.
        #[test]
        fn guest_uri_keeps_any_valid_path_and_query(
            suffix in "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,12}){1,4}",
            query in proptest::option::of("[a-zA-Z0-9._~%!$&'()*+,;=:@/?-]{0,30}"),
            host in proptest::option::of("[ -~]{0,20}"),
        ) {
            let mut headers = HeaderMap::new();
            if let Some(host) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
                headers.insert(header::HOST, host);
            }
            let uri = guest_uri(&headers, &suffix, query.as_deref()).expect("a valid URI");
            proptest::prop_assert_eq!(uri.path(), suffix.as_str());
            proptest::prop_assert_eq!(uri.query(), query.as_deref());
        }
    }

    #[test]
    fn guest_uri_keeps_the_raw_query() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("gw:8080"));
        let uri = guest_uri(&headers, "/a/b", Some("x=1&y=%20z&&")).expect("valid");
        assert_eq!(uri.to_string(), "http://gw:8080/a/b?x=1&y=%20z&&");
        let uri = guest_uri(&HeaderMap::new(), "/", None).expect("valid");
        assert_eq!(uri.to_string(), "http://localhost/");
    }

    #[test]
    fn request_headers_follow_openfaas() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("gw"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let id = HeaderValue::from_static("id-1");
        let start = HeaderValue::from_static("123");
        prepare_request_headers(
            &mut headers,
            &id,
            &start,
            Some("127.0.0.1:5000".parse().expect("addr")),
        );
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key("x-secret-hop"));
        assert!(!headers.contains_key(header::TE));
        assert_eq!(headers[X_CALL_ID], "id-1");
        assert_eq!(headers[X_START_TIME], "123");
        assert_eq!(headers[X_FORWARDED_HOST], "gw");
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(headers[header::AUTHORIZATION], "Bearer t");
    }

    #[test]
    fn call_ids_are_kept_or_made() {
        let mut headers = HeaderMap::new();
        let made = call_id(&headers);
        assert_eq!(made.len(), 36);
        headers.insert(X_CALL_ID, HeaderValue::from_static("mine"));
        assert_eq!(call_id(&headers), "mine");
    }
}
