//! The gateway as a value: routes, the invocation contract of OpenFaaS, and the mapping of runtime
//! errors to HTTP. It takes any request and returns a response, so it runs without a socket too.
//!
//! Over 600 lines, to be split: routing, the invocation contract and the async routes are still one
//! file; the async routes are the next to move out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tracing::Instrument;
use wasmgate_runtime::{ColdStart, Error as RuntimeError, InflightScope, Runtime};

use crate::control::spin::SpinClient;
use crate::http::api::Api;
use crate::http::auth::Credentials;
use crate::http::body::{BoxError, GatewayBody, text};
use crate::http::limits::{BodyLimit, HttpLimits, LimitedBody, Tripped};
use crate::observe::metrics::Metrics;
use crate::observe::readiness::Readiness;
use crate::observe::traces::{self, TRACERESPONSE, Traces, Trigger};
use crate::queue::{AsyncQueue, Call, CancelOutcome, EnqueueError, Invoker, NewCall};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use wasmgate_openfaas::headers::{
    X_CALL_ID, X_CALLBACK_URL, X_DURATION_SECONDS, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_OPENFAAS_INTERNAL, X_START_TIME, call_id, strip_hop_by_hop,
};
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::retry::RetryPolicy;

/// Names this gateway in `X-OpenFaaS-Internal` on the errors it produces itself.
const INTERNAL: &str = "wasmgate";
/// On a function's answer: `true` when the function had to be loaded for this request.
const X_WASMGATE_COLD_START: HeaderName = HeaderName::from_static("x-wasmgate-cold-start");
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

/// Routes requests: functions to the [`Runtime`], `/system/*` to the management [`Api`] and `/ui/` to
/// the web portal, both behind basic auth, `/metrics` and `/healthz` to themselves.
#[derive(Debug, Clone)]
pub struct Gateway {
    runtime: Runtime,
    metrics: Arc<Metrics>,
    auth: Option<Credentials>,
    api: Api,
    http_limits: HttpLimits,
    queue: Option<AsyncQueue>,
    readiness: Arc<Readiness>,
    /// When tracing is on; `None` makes no span and adds no header.
    traces: Option<Traces>,
    /// The scheme clients reach this gateway with: `https` when it serves TLS itself. (No proxy's
    /// `X-Forwarded-Proto` is trusted: the gateway has no notion of a trusted proxy.)
    scheme: &'static str,
}

impl Gateway {
    /// A gateway over `api`'s functions; `auth`, when set, guards `/system/*` and `/ui/`.
    pub fn new(api: Api, metrics: Arc<Metrics>, auth: Option<Credentials>) -> Self {
        Gateway {
            runtime: api.functions.runtime().clone(),
            metrics,
            auth,
            api,
            http_limits: HttpLimits::default(),
            queue: None,
            readiness: Readiness::new(),
            traces: None,
            scheme: "http",
        }
    }

    /// Says whether this gateway serves TLS itself (`--tls-cert`): the URL a Spin app is told
    /// its client asked for (`spin-full-url`) then says `https://`.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.scheme = if tls { "https" } else { "http" };
        self
    }

    /// Traces requests with `traces` (nothing is traced with `None`).
    pub fn with_traces(mut self, traces: Option<Traces>) -> Self {
        self.traces = traces;
        self
    }

    /// Answers `/readyz` from `readiness` (by default: ready).
    pub fn with_readiness(mut self, readiness: Arc<Readiness>) -> Self {
        self.readiness = readiness;
        self
    }

    /// Serves `/async-function/*` and `/system/async/*` from `queue`.
    pub fn with_queue(mut self, queue: AsyncQueue) -> Self {
        self.queue = Some(queue);
        self
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
        if path == "/healthz" || path == "/readyz" || path == "/metrics" {
            let method = request.method();
            if method != Method::GET && method != Method::HEAD {
                return method_not_allowed(
                    &format!("{method} is not allowed on {path}"),
                    "GET, HEAD",
                );
            }
        }
        if path == "/healthz" {
            return text(StatusCode::OK, "OK");
        }
        // Liveness is /healthz; readiness (state restored, the cluster caught up) is /readyz.
        if path == "/readyz" {
            return match self.readiness.check() {
                Ok(()) => text(StatusCode::OK, "OK"),
                Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &reason),
            };
        }
        if path == "/metrics" {
            let mut response = text(StatusCode::OK, "");
            self.metrics
                .set_functions_loaded(self.runtime.loaded_count() as u64);
            self.api.functions.refresh_replica_metrics();
            let mut rendered = self.metrics.render();
            if let Some(queue) = &self.queue {
                queue.render_metrics(&mut rendered);
            }
            if let Some(traces) = &self.traces {
                traces.render_metrics(&mut rendered);
            }
            *response.body_mut() = Full::new(Bytes::from(rendered))
                .map_err(|never| match never {})
                .boxed_unsync();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::observe::metrics::CONTENT_TYPE),
            );
            return response;
        }
        let portal = path == "/ui" || path.starts_with("/ui/");
        if portal || path == "/system" || path.starts_with("/system/") {
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
            if portal {
                return crate::http::ui::serve(request.method(), path, request.headers());
            }
            if let Some(id) = path.strip_prefix("/system/async/") {
                return self.async_status(id, request.method()).await;
            }
            return self.api.handle(request).await;
        }
        if let Some(route) = path.strip_prefix("/async-function/") {
            let route = route.to_string();
            return self.async_call(&route, request, peer).await;
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

    /// `POST /async-function/{name}[/{path}]` queues a call; `DELETE /async-function/{call-id}`
    /// cancels one that has not started.
    async fn async_call<B>(
        &self,
        route: &str,
        request: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response<GatewayBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(queue) = &self.queue else {
            return internal_error(StatusCode::NOT_FOUND, "this gateway has no async queue");
        };
        let (name, suffix) = match route.find('/') {
            Some(slash) => (&route[..slash], &route[slash..]),
            None => (route, "/"),
        };
        if request.method() == Method::DELETE && suffix == "/" {
            return self.async_cancel(queue, name).await;
        }
        if request.method() != Method::POST {
            return method_not_allowed(
                &format!(
                    "{} is not allowed on /async-function/ (POST queues a call, DELETE \
                     /async-function/{{call-id}} cancels one)",
                    request.method()
                ),
                "POST, DELETE",
            );
        }
        let function = match FunctionRef::parse(name) {
            Ok(function) if self.runtime.contains(&function.key()) => function,
            _ => {
                return internal_error(
                    StatusCode::NOT_FOUND,
                    &format!("function {name:?} not found"),
                );
            }
        };
        let (mut parts, body) = request.into_parts();
        let callback_url = match parts.headers.get(X_CALLBACK_URL) {
            None => None,
            Some(value) => match callback_url(value) {
                Ok(url) => Some(url),
                Err(reason) => return internal_error(StatusCode::BAD_REQUEST, &reason),
            },
        };
        let max_body = self
            .http_limits
            .max_request_body
            .min(queue.config().max_body);
        let too_large = || {
            internal_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than the async limit of {max_body} bytes"),
            )
        };
        if content_length(&parts.headers).is_some_and(|length| length > max_body) {
            return too_large();
        }
        let limits = HttpLimits {
            max_request_body: max_body,
            read_timeout: self.http_limits.read_timeout,
        };
        let tripped = Tripped::default();
        let body = match LimitedBody::new(body, limits, tripped.clone())
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) => {
                return match tripped.get() {
                    Some(BodyLimit::TooLarge) => too_large(),
                    Some(BodyLimit::TooSlow) => internal_error(
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "the request body stopped arriving for {:?}",
                            self.http_limits.read_timeout
                        ),
                    ),
                    None => internal_error(
                        StatusCode::BAD_REQUEST,
                        &format!("reading the request body: {error}"),
                    ),
                };
            }
        };
        // The call id names the call in the status and cancel URLs: a client's own is kept only
        // when it fits in a path segment as it is.
        let mut call_id = call_id(&parts.headers);
        if !call_id
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'~'))
        {
            call_id = wasmgate_openfaas::headers::new_call_id();
        }
        let start_time = parts
            .headers
            .get(X_START_TIME)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from(unix_nanos()));
        prepare_request_headers(&mut parts.headers, &call_id, &start_time, peer);
        // The call's trace context is the enqueue span: stored with the call, continued by each
        // attempt and by the callback.
        let span = self.traces.as_ref().map(|traces| {
            let parent = traces.extract(&parts.headers);
            let span = traces.span(
                parent,
                format!("enqueue {}", function.key()),
                SpanKind::Producer,
                vec![
                    KeyValue::new("faas.name", function.key()),
                    KeyValue::new(
                        "faas.invocation_id",
                        call_id.to_str().unwrap_or_default().to_string(),
                    ),
                    KeyValue::new(
                        "faas.trigger",
                        trigger_name(parts.extensions.get::<Trigger>()),
                    ),
                    KeyValue::new("http.request.method", parts.method.to_string()),
                    KeyValue::new("http.route", "/async-function/{name}"),
                ],
            );
            span.set_headers(&mut parts.headers);
            span
        });
        let call = NewCall {
            id: call_id.to_str().unwrap_or_default().to_string(),
            function: function.key(),
            called_as: name.to_string(),
            method: parts.method.to_string(),
            path: suffix.to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
            callback_url,
            start_time: start_time.to_str().unwrap_or_default().to_string(),
            queued_at: u64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        };
        let (mut response, refused) = self.enqueue(queue, call, call_id, start_time).await;
        if let Some(span) = span {
            traces::end_with_status(&span, response.status(), refused.as_deref());
            response
                .headers_mut()
                .insert(TRACERESPONSE, span.traceparent());
            span.end();
        }
        response
    }

    /// Hands `call` to the queue: the 202, or the refusal and its reason.
    async fn enqueue(
        &self,
        queue: &AsyncQueue,
        call: NewCall,
        call_id: HeaderValue,
        start_time: HeaderValue,
    ) -> (Response<GatewayBody>, Option<String>) {
        let error = match queue.enqueue(call).await {
            Ok(_) => {
                // An empty body, as OpenFaaS answers.
                let mut response = Response::new(
                    Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *response.status_mut() = StatusCode::ACCEPTED;
                let headers = response.headers_mut();
                headers.insert(X_CALL_ID, call_id);
                headers.insert(X_START_TIME, start_time);
                return (response, None);
            }
            Err(error) => error,
        };
        let reason = error.to_string();
        let response = match error {
            error @ EnqueueError::Full(_) => {
                try_again_after(StatusCode::TOO_MANY_REQUESTS, &error.to_string(), "1")
            }
            error @ EnqueueError::Stopping => {
                internal_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
            }
            error @ EnqueueError::Store(_) => {
                // Not durable, so not accepted: the store may be full (a full disk) or out of
                // reach (NATS), which passes; the client may send it again.
                tracing::error!(%error, "an async call was refused");
                try_again_after(StatusCode::SERVICE_UNAVAILABLE, &error.to_string(), "5")
            }
        };
        (response, Some(reason))
    }

    async fn async_cancel(&self, queue: &AsyncQueue, id: &str) -> Response<GatewayBody> {
        match queue.cancel(id.to_string()).await {
            Ok(CancelOutcome::Cancelled { .. }) => self.async_status(id, &Method::GET).await,
            Ok(CancelOutcome::NotQueued(state)) => internal_error(
                StatusCode::CONFLICT,
                &format!(
                    "call {id} is {}; only a queued call can be cancelled",
                    state.as_str()
                ),
            ),
            Ok(CancelOutcome::NotFound) => {
                internal_error(StatusCode::NOT_FOUND, &format!("no async call {id}"))
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cancelling an async call");
                internal_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not cancel the call",
                )
            }
        }
    }

    /// `GET /system/async/{call-id}`: where a queued call is.
    async fn async_status(&self, id: &str, method: &Method) -> Response<GatewayBody> {
        let Some(queue) = &self.queue else {
            return text(StatusCode::NOT_FOUND, "this gateway has no async queue");
        };
        if method != Method::GET {
            return method_not_allowed(
                &format!("{method} is not allowed on /system/async/{{call-id}}"),
                "GET",
            );
        }
        match queue.status(id.to_string()).await {
            Ok(Some(status)) => {
                let body = crate::queue::status_json(&status).to_string();
                let mut response = text(StatusCode::OK, "");
                *response.body_mut() = Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Ok(None) => text(StatusCode::NOT_FOUND, &format!("no async call {id}")),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "reading an async call");
                text(StatusCode::INTERNAL_SERVER_ERROR, "could not read the call")
            }
        }
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
            trace_id = tracing::field::Empty,
        );
        let trigger = parts.extensions.remove::<Trigger>();
        let trace = self.traces.as_ref().map(|traces| {
            let parent = traces.extract(&parts.headers);
            let (name, kind) = match trigger {
                Some(Trigger::Async { .. }) => (format!("run {key}"), SpanKind::Consumer),
                // Span names stay few: a name nobody deployed is not one of them.
                _ if !known => (
                    format!("{} /function/{{name}}", parts.method),
                    SpanKind::Server,
                ),
                _ => (
                    format!("{} /function/{key}", parts.method),
                    SpanKind::Server,
                ),
            };
            let mut attributes = vec![
                KeyValue::new("faas.name", key.clone()),
                KeyValue::new(
                    "faas.invocation_id",
                    call_id.to_str().unwrap_or_default().to_string(),
                ),
                KeyValue::new("faas.trigger", trigger_name(trigger.as_ref())),
                KeyValue::new("http.request.method", parts.method.to_string()),
                KeyValue::new("http.route", "/function/{name}"),
                KeyValue::new("url.path", parts.uri.path().to_string()),
            ];
            if let Some(Trigger::Async { attempt }) = trigger {
                attributes.push(KeyValue::new("wasmgate.async.attempt", i64::from(attempt)));
            }
            let trace = traces.span(parent, name, kind, attributes);
            span.record("trace_id", trace.trace_id());
            trace
        });
        // Why the function's answer is an error, for the span's status.
        let mut failure: Option<String> = None;

        let response = async {
            if !ALLOWED_METHODS.contains(&parts.method) {
                return method_not_allowed(
                    &format!("{} is not allowed on /function/", parts.method),
                    "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD",
                );
            }
            let request_content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
            if self.runtime.is_made_of_parts(&key) {
                // A Spin app's router tells its components the URL the client asked for.
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| parts.uri.authority().map(|a| a.as_str()))
                    .unwrap_or("localhost");
                let asked = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                parts.extensions.insert(SpinClient {
                    full_url: format!("{}://{host}{asked}", self.scheme),
                    peer,
                });
            }
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

            if let Some(trace) = &trace {
                // The runtime's spans are children of the gateway's.
                parts.extensions.insert(trace.clone());
            }
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
                    let cold = parts.extensions.get::<ColdStart>().is_some();
                    parts.headers.insert(
                        X_WASMGATE_COLD_START,
                        HeaderValue::from_static(if cold { "true" } else { "false" }),
                    );
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
                    None => {
                        failure = Some(error.to_string());
                        error_response(&function, &error)
                    }
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
        if let Some(trace) = trace {
            let cold = response
                .headers()
                .get(X_WASMGATE_COLD_START)
                .is_some_and(|v| v == "true");
            trace.set_attribute(KeyValue::new("faas.coldstart", cold));
            traces::end_with_status(&trace, response.status(), failure.as_deref());
            response
                .headers_mut()
                .insert(TRACERESPONSE, trace.traceparent());
            response = response.map(|body| traces::end_with_body(body, trace));
        }
        if known {
            let seconds = started.elapsed().as_secs_f64();
            self.metrics
                .invocation_finished(&key, response.status().as_u16(), seconds);
        }
        response
    }
}

impl Invoker for Gateway {
    fn invoke(&self, call: &Call) -> futures::future::BoxFuture<'static, Response<GatewayBody>> {
        let gateway = self.clone();
        let retries = call.attempts.saturating_sub(1);
        let call = call.call.clone();
        Box::pin(async move {
            let Ok(function) = FunctionRef::parse(&call.function) else {
                return internal_error(StatusCode::NOT_FOUND, "function not found");
            };
            let mut request =
                Request::builder()
                    .method(call.method.as_str())
                    .uri(match &call.query {
                        Some(query) => format!("{}?{query}", call.path),
                        None => call.path.clone(),
                    });
            for (name, value) in &call.headers {
                request = request.header(name.as_str(), value.as_slice());
            }
            // Traced as a run of the queued call, under the context it was queued with (among its
            // headers).
            request = request.extension(Trigger::Async {
                attempt: retries + 1,
            });
            // The function can tell a retry from a first attempt (and the queue's retries of a
            // failed attempt from the client's own), as the callback can.
            if retries > 0 {
                request = request.header("x-retry", retries.to_string());
            }
            let request = match request.body(Full::new(Bytes::from(call.body))) {
                Ok(request) => request,
                Err(error) => {
                    return internal_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("the queued request is not valid: {error}"),
                    );
                }
            };
            gateway.invoke(function, call.path, request, None).await
        })
    }

    fn retry_policy(&self, function: &str) -> RetryPolicy {
        FunctionRef::parse(function)
            .ok()
            .and_then(|f| self.api.functions.status(&f))
            .and_then(|status| {
                RetryPolicy::from_annotations(status.settings.annotations.as_ref()).ok()
            })
            .unwrap_or_default()
    }
}

/// `faas.trigger` for a request started by `trigger` (none: a client's request).
fn trigger_name(trigger: Option<&Trigger>) -> &'static str {
    match trigger {
        None => "http",
        Some(Trigger::Timer) => "timer",
        Some(Trigger::PubSub | Trigger::Async { .. }) => "pubsub",
    }
}

/// An `X-Callback-Url`: an absolute `http` or `https` URL.
fn callback_url(value: &HeaderValue) -> Result<String, String> {
    let text = value
        .to_str()
        .map_err(|_| "X-Callback-Url is not text".to_string())?;
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("X-Callback-Url {text:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(text.to_string()),
        _ => Err(format!(
            "X-Callback-Url {text:?} must be an absolute http:// or https:// URL"
        )),
    }
}

/// Maps a runtime error to the answer the client gets; the full reason goes to the log.
fn error_response(function: &FunctionRef, error: &RuntimeError) -> Response<GatewayBody> {
    let (status, reason) = match error {
        RuntimeError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            format!("function {function} not found"),
        ),
        // A Spin app's answer when no route matches (Spin's own is a bare 404).
        RuntimeError::NoRoute { path, .. } => (
            StatusCode::NOT_FOUND,
            format!("no route of {function} matches {path}"),
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
                wasmgate_openfaas::quantity::format_memory(*limit)
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

/// A refusal the client may try again after `seconds` (`Retry-After`).
fn try_again_after(
    status: StatusCode,
    reason: &str,
    seconds: &'static str,
) -> Response<GatewayBody> {
    let mut response = internal_error(status, reason);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    response
}

/// A 405 with the route's methods in `Allow`, as RFC 9110 requires of every 405.
fn method_not_allowed(reason: &str, allow: &'static str) -> Response<GatewayBody> {
    let mut response = internal_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{reason}; use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
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
}
