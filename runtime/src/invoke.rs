//! What one request's [`Store`] holds (WASI, `wasi:http`, the memory limiter, the services) and the
//! hooks that route a guest's outbound requests: to other functions in process, or out through the
//! allow-list. Running the guest itself is `guest.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tracing::Instrument;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::Error;
use crate::limits::InflightPermit;
use crate::logs::{FunctionLogs, GuestOutputFactory, LogStream};
use crate::outbound::{HostPattern, Outbound, OutboundClient};
use crate::services::{Services, ServicesCtx, Stores};
use crate::spec::FunctionSpec;
use crate::trace::{SpanGuard, Trace, status_code};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// What the state of every request of one function version is made from, built once when the
/// function is loaded.
pub(crate) struct GuestSetup {
    /// `name.namespace`.
    pub(crate) name: Arc<str>,
    pub(crate) spec: Arc<FunctionSpec>,
    pub(crate) logs: Arc<FunctionLogs>,
    /// `spec.allowed_hosts`, `spec.namespace`, `spec.keyvalue_buckets` and `spec.config`, in the
    /// shared form each request's state takes them in.
    pub(crate) allowed_hosts: Arc<[HostPattern]>,
    pub(crate) namespace: Arc<str>,
    pub(crate) keyvalue_buckets: Arc<[String]>,
    pub(crate) config: Arc<[(String, String)]>,
    /// `spec.spin_variables` and `spec.spin_key_value_stores`, likewise.
    pub(crate) spin_variables: Arc<[(String, String)]>,
    pub(crate) spin_stores: Arc<[String]>,
    /// `spec.spin_sqlite_databases`, likewise.
    pub(crate) spin_databases: Arc<[String]>,
}

/// Everything one request's [`Store`] holds. Built fresh for every request and dropped with it.
pub(crate) struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: GuestHooks,
    pub(crate) limiter: MemoryLimiter,
    services: ServicesCtx,
    /// The guest's stdout and stderr, kept to end their unfinished lines when a request ends.
    output: [GuestOutputFactory; 2],
}

/// Holds linear memory to the function's limit and remembers a refusal, so a trap that follows can be
/// reported as what it is.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    /// The size, in bytes, of the last growth refused.
    pub(crate) refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pool's slots.
        Ok(true)
    }
}

impl RequestState {
    /// The runtime this request runs in (weakly, as a kept instance holds it).
    pub(crate) fn runtime(&self) -> &std::sync::Weak<crate::Inner> {
        &self.hooks.calls.runtime
    }

    /// The services' view of this state, for the linker.
    pub(crate) fn services(&mut self) -> Services<'_> {
        Services {
            ctx: &self.services,
            table: &mut self.table,
        }
    }

    pub(crate) fn new(
        function: &GuestSetup,
        memory_limit: u64,
        client: &OutboundClient,
        stores: &Stores,
        calls: Calls,
        trace: Option<Trace>,
    ) -> Result<Self, Error> {
        let logs = &function.logs;
        let trace_id: Option<Arc<str>> = trace.as_ref().map(|t| t.trace_id().into());
        let stdout = GuestOutputFactory::new(logs.clone(), LogStream::Stdout, trace_id.clone());
        let stderr = GuestOutputFactory::new(logs.clone(), LogStream::Stderr, trace_id.clone());
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&function.spec.env);
        if let Some(dir) = &function.spec.secrets {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|e| Error::internal("opening the secrets directory", &e))?;
        }
        if let Some(dir) = &function.spec.files {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|e| Error::internal("opening the static files' directory", &e))?;
        }
        Ok(RequestState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: GuestHooks {
                outbound: Outbound::new(function.allowed_hosts.clone(), client.clone()),
                caller: function.name.clone(),
                namespace: function.namespace.clone(),
                calls,
                trace,
            },
            limiter: MemoryLimiter {
                limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
                refused: None,
            },
            services: ServicesCtx {
                keyvalue: stores.keyvalue.clone(),
                sqlite: stores.sqlite.clone(),
                namespace: function.namespace.clone(),
                buckets: function.keyvalue_buckets.clone(),
                config: function.config.clone(),
                logs: logs.clone(),
                trace_id,
                spin_variables: function.spin_variables.clone(),
                spin_stores: function.spin_stores.clone(),
                spin_databases: function.spin_databases.clone(),
            },
            output: [stdout, stderr],
        })
    }

    /// The traced request's `handle` span, if it is traced.
    pub(crate) fn trace(&self) -> Option<&Trace> {
        self.hooks.trace.as_ref()
    }

    /// Makes a kept state serve a new request: its calls, its outbound requests and its log lines
    /// belong to `trace` (or to no trace) from now on.
    pub(crate) fn set_trace(&mut self, trace: Option<Trace>) {
        let trace_id: Option<Arc<str>> = trace.as_ref().map(|t| t.trace_id().into());
        for output in &self.output {
            output.set_trace_id(trace_id.clone());
        }
        self.services.trace_id = trace_id;
        self.hooks.trace = trace;
    }

    /// Ends the lines the guest left unfinished on stdout and stderr: its request is over (an
    /// instance kept for reuse starts the next request on a new line).
    pub(crate) fn end_output_lines(&self) {
        for output in &self.output {
            output.flush();
        }
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP from guests: to other functions by name, served in this process; else to the
/// function's allowed hosts only (see `outbound.rs`).
struct GuestHooks {
    outbound: Outbound,
    /// The calling function's name (`name.namespace`) and namespace.
    caller: Arc<str>,
    namespace: Arc<str>,
    calls: Calls,
    /// The request's `handle` span: its calls and outbound requests are children of it.
    trace: Option<Trace>,
}

/// Where a request a part of a function made of parts sends goes, when it is for that function.
enum AppCall {
    /// To this part (`NAME/PART`), in process.
    Part(crate::Runtime, String),
    /// Not allowed: the guest gets `HTTP-request-denied`.
    Denied(String),
    /// No part serves it: the guest gets a 404 with the reason.
    NoRoute(String),
}

impl GuestHooks {
    /// Offers a request of a part to its function's router (see `app.rs`); `None` when the caller
    /// is no part, or the request is not for its function.
    fn app_call(&self, head: &mut http::request::Parts) -> Option<AppCall> {
        let (function, part) = self.caller.split_once('/')?;
        let runtime = crate::Runtime::from_inner(self.calls.runtime.upgrade()?);
        let app = runtime.app(function)?;
        Some(match app.router.route_call(part, head) {
            crate::router::CallRoute::NotMine => return None,
            crate::router::CallRoute::Part(target) => {
                AppCall::Part(runtime, crate::router::part_name(function, &target))
            }
            crate::router::CallRoute::Denied(reason) => AppCall::Denied(reason),
            crate::router::CallRoute::NoRoute(reason) => AppCall::NoRoute(reason),
        })
    }

    /// The function `uri` names, if it names one this function may call: `http://NAME/...` (a
    /// function of its own namespace) or `http://NAME.NAMESPACE/...` (its own namespace, or another
    /// that its allowed hosts list). Plain `http` on the default port only.
    fn function_target(&self, uri: &http::Uri) -> Option<(crate::Runtime, String)> {
        if uri.scheme() != Some(&http::uri::Scheme::HTTP)
            || uri.port_u16().is_some_and(|port| port != 80)
        {
            return None;
        }
        let host = uri.host()?.to_ascii_lowercase();
        let runtime = crate::Runtime::from_inner(self.calls.runtime.upgrade()?);
        let own = (!host.contains('.') && !self.namespace.is_empty())
            .then(|| format!("{host}.{}", self.namespace));
        let key = own
            .into_iter()
            .chain(std::iter::once(host))
            .find(|key| runtime.contains(key))?;
        let namespace = key.rsplit_once('.').map_or("", |(_, ns)| ns);
        if namespace != &*self.namespace && !self.outbound.allows(uri) {
            // Falls through to the outbound rules, which deny it.
            return None;
        }
        Some((runtime, key))
    }
}

/// A plain-text response to a guest's call, made by the runtime.
fn call_answer(status: u16, text: String) -> http::Response<wasmtime_wasi_http::WasiBody> {
    let body = http_body_util::Full::new(Bytes::from(text + "\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The status a failed call to a function answers with, as the gateway would answer it.
fn call_status(error: &Error) -> u16 {
    match error {
        Error::NotFound(_) | Error::NoRoute { .. } => 404,
        Error::Timeout { .. } => 504,
        Error::TooManyRequests { .. } => 429,
        Error::Busy { .. } => 503,
        _ => 500,
    }
}

impl WasiHttpHooks for GuestHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        let (mut head, body) = request.into_parts();
        let routed = self.app_call(&mut head);
        let mut request = http::Request::from_parts(head, body);
        let target = match routed {
            Some(AppCall::Part(runtime, part)) => Some((runtime, part)),
            Some(AppCall::Denied(reason)) => {
                tracing::debug!(caller = %self.caller, %reason, "call denied");
                return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
            }
            Some(AppCall::NoRoute(reason)) => {
                let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                    Box::new(async { Ok(()) });
                return Box::new(async move { Ok((call_answer(404, reason), done)) });
            }
            None => self.function_target(request.uri()),
        };
        if let Some((runtime, callee)) = target {
            let caller = self.caller.clone();
            let depth = self.calls.depth + 1;
            let left = self.calls.left.clone();
            // The call's span; the callee's spans are its children (through the request).
            let span = self.trace.as_ref().map(|trace| {
                let span = trace.child(
                    format!("call {callee}"),
                    SpanKind::Client,
                    vec![
                        KeyValue::new("faas.invoked_name", callee.clone()),
                        KeyValue::new("http.request.method", request.method().to_string()),
                    ],
                );
                span.set_headers(request.headers_mut());
                request.extensions_mut().insert(span.clone());
                SpanGuard(span)
            });
            return Box::new(
                async move {
                    let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                        Box::new(async { Ok(()) });
                    if depth > MAX_CALL_DEPTH {
                        let text = format!(
                            "{caller} cannot call {callee}: calls are nested {MAX_CALL_DEPTH} deep \
                         already (a loop of functions calling each other?)"
                        );
                        tracing::warn!("{text}");
                        if let Some(span) = &span {
                            span.0.fail(text.clone());
                        }
                        return Ok((call_answer(508, text), done));
                    }
                    if left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_err()
                    {
                        let text = format!(
                            "{caller} cannot call {callee}: this request already made \
                         {MAX_CALLS_PER_REQUEST} calls to functions"
                        );
                        tracing::warn!("{text}");
                        if let Some(span) = &span {
                            span.0.fail(text.clone());
                        }
                        return Ok((call_answer(508, text), done));
                    }
                    let observer = runtime.observer().clone();
                    observer.call_started(&caller, &callee);
                    let started = Instant::now();
                    let answer = match runtime.invoke_at_depth(&callee, request, depth, left).await
                    {
                        Ok(response) => response.map(|body| {
                            body.map_err(|e| {
                                wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
                            })
                            .boxed_unsync()
                        }),
                        Err(error) => {
                            if let Some(span) = &span {
                                span.0.fail(error.to_string());
                            }
                            call_answer(call_status(&error), error.to_string())
                        }
                    };
                    if let Some(span) = &span {
                        span.0.set_attribute(status_code(answer.status()));
                    }
                    observer.call_finished(
                        &caller,
                        &callee,
                        answer.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                    Ok((answer, done))
                }
                // wasi:http may drive the call from a task of its own: the callee's log lines stay in
                // the request's log span.
                .in_current_span(),
            );
        }
        let span = self.trace.as_ref().map(|trace| {
            let span = trace.child(
                request.method().to_string(),
                SpanKind::Client,
                outbound_attributes(&request),
            );
            span.set_headers(request.headers_mut());
            SpanGuard(span)
        });
        let send = self.outbound.send(request, options);
        Box::new(
            async move {
                let response = send.await;
                if let Some(span) = &span {
                    match &response {
                        Ok(response) => {
                            span.0.set_attribute(status_code(response.status()));
                            if response.status().is_server_error() {
                                span.0.fail(format!("status {}", response.status()));
                            }
                        }
                        Err(error) => span.0.fail(error.to_string()),
                    }
                }
                let response = response?;
                // Errors while sending the request body surface through the response future itself.
                let sent: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response, sent))
            }
            .in_current_span(),
        )
    }
}

/// The attributes of an outbound request's span: method, server, and the URL without its query
/// (which may hold secrets).
fn outbound_attributes<B>(request: &http::Request<B>) -> Vec<KeyValue> {
    let uri = request.uri();
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or_default();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    vec![
        KeyValue::new("http.request.method", request.method().to_string()),
        KeyValue::new("server.address", host.to_string()),
        KeyValue::new("server.port", i64::from(port)),
        KeyValue::new(
            "url.full",
            format!(
                "{scheme}://{}{}",
                uri.authority()
                    .map_or("", |a| a.as_str())
                    .rsplit('@')
                    .next()
                    .unwrap_or_default(),
                uri.path()
            ),
        ),
    ]
}

/// Maps a request body's error into the one `wasi:http` understands.
pub(crate) fn incoming_body_error(
    error: Box<dyn std::error::Error + Send + Sync>,
) -> wasmtime_wasi_http::Error {
    match error.downcast::<hyper::Error>() {
        Ok(hyper) => wasmtime_wasi_http::Error::from(*hyper),
        Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
    }
}

/// What one invocation may use, resolved from the function's limits and the runtime's defaults.
pub(crate) struct Budget {
    pub(crate) memory_bytes: u64,
    pub(crate) timeout: Duration,
    /// Counts this request in flight until the guest is done with it.
    pub(crate) permit: InflightPermit,
    /// The client its outbound requests go through.
    pub(crate) outbound: OutboundClient,
    /// Where its key-value buckets and SQLite databases live.
    pub(crate) stores: Stores,
    /// Where it stands in a chain of functions calling functions.
    pub(crate) calls: Calls,
    /// Its `handle` span, when the host traces it.
    pub(crate) trace: Option<Trace>,
}

/// How deep a chain of functions calling functions may go (`http://NAME.NAMESPACE/...`); the call
/// that would go deeper gets 508 Loop Detected.
pub const MAX_CALL_DEPTH: u32 = 8;

/// Calls to other functions one external request may cause in all, however they branch; past it,
/// 508 too.
pub const MAX_CALLS_PER_REQUEST: u32 = 64;

/// A request's place in a chain of function calls.
#[derive(Clone)]
pub(crate) struct Calls {
    /// The runtime, to call functions by name (weakly: a kept instance must not keep it alive).
    pub(crate) runtime: std::sync::Weak<crate::Inner>,
    /// 0 for a request from outside; one more per call.
    pub(crate) depth: u32,
    /// Calls left for the whole tree of calls the outside request started.
    pub(crate) left: Arc<std::sync::atomic::AtomicU32>,
}

/// The epoch callback of every store: yield to other tasks at each tick while the runtime lives;
/// trap once it is gone, so a guest still spinning in a task nobody drives stops at the last tick
/// (the epoch thread gives one as it stops) instead of holding its thread for ever.
pub(crate) fn yield_while_alive(
    runtime: std::sync::Weak<crate::Inner>,
) -> impl FnMut(wasmtime::StoreHookState<'_, RequestState>) -> wasmtime::Result<wasmtime::UpdateDeadline>
+ Send
+ Sync
+ 'static {
    move |_| {
        if runtime.strong_count() > 0 {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        } else {
            Err(wasmtime::format_err!("the runtime stopped"))
        }
    }
}
