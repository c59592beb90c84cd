//! Serving one request: a fresh [`Store`] and instance, the guest's `handle` call, and the response.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::Error;
use crate::body::{GuestRun, ResponseBody};
use crate::function::{Function, Warm};
use crate::limits::InflightPermit;
use crate::logs::{GuestOutputFactory, LogStream};
use crate::observe::{InstanceGuard, Observer};
use crate::outbound::{Outbound, OutboundClient};
use crate::services::{KeyValueStore, Services, ServicesCtx};

/// Everything one request's [`Store`] holds. Built fresh for every request and dropped with it.
pub(crate) struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: GuestHooks,
    limiter: MemoryLimiter,
    services: ServicesCtx,
}

/// Holds linear memory to the function's limit and remembers a refusal, so a trap that follows can be
/// reported as what it is.
struct MemoryLimiter {
    limit: usize,
    /// The size, in bytes, of the last growth refused.
    refused: Option<usize>,
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
    /// The services' view of this state, for the linker.
    pub(crate) fn services(&mut self) -> Services<'_> {
        Services {
            ctx: &self.services,
            table: &mut self.table,
        }
    }

    fn new(
        function: &Function,
        memory_limit: u64,
        client: &OutboundClient,
        keyvalue: &Arc<dyn KeyValueStore>,
        calls: Calls,
    ) -> Result<Self, Error> {
        let logs = &function.logs;
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutputFactory::new(logs.clone(), LogStream::Stdout))
            .stderr(GuestOutputFactory::new(logs.clone(), LogStream::Stderr))
            .envs(&function.spec.env);
        if let Some(dir) = &function.spec.secrets {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|e| Error::internal("opening the secrets directory", &e))?;
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
            },
            limiter: MemoryLimiter {
                limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
                refused: None,
            },
            services: ServicesCtx {
                keyvalue: keyvalue.clone(),
                namespace: function.namespace.clone(),
                buckets: function.keyvalue_buckets.clone(),
                config: function.config.clone(),
                logs: logs.clone(),
            },
        })
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
}

impl GuestHooks {
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
        Error::NotFound(_) => 404,
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
        if let Some((runtime, callee)) = self.function_target(request.uri()) {
            let caller = self.caller.clone();
            let depth = self.calls.depth + 1;
            let left = self.calls.left.clone();
            return Box::new(async move {
                let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                    Box::new(async { Ok(()) });
                if depth > MAX_CALL_DEPTH {
                    let text = format!(
                        "{caller} cannot call {callee}: calls are nested {MAX_CALL_DEPTH} deep \
                         already (a loop of functions calling each other?)"
                    );
                    tracing::warn!("{text}");
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
                    return Ok((call_answer(508, text), done));
                }
                let observer = runtime.observer().clone();
                observer.call_started(&caller, &callee);
                let started = Instant::now();
                let answer = match runtime.invoke_at_depth(&callee, request, depth, left).await {
                    Ok(response) => response.map(|body| {
                        body.map_err(|e| {
                            wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
                        })
                        .boxed_unsync()
                    }),
                    Err(error) => call_answer(call_status(&error), error.to_string()),
                };
                observer.call_finished(
                    &caller,
                    &callee,
                    answer.status().as_u16(),
                    started.elapsed().as_secs_f64(),
                );
                Ok((answer, done))
            });
        }
        let send = self.outbound.send(request, options);
        Box::new(async move {
            let response = send.await?;
            // Errors while sending the request body surface through the response future itself.
            let sent: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, sent))
        })
    }
}

/// Maps a request body's error into the one `wasi:http` understands.
fn incoming_body_error(
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
    /// Where its key-value buckets live.
    pub(crate) keyvalue: Arc<dyn KeyValueStore>,
    /// Where it stands in a chain of functions calling functions.
    pub(crate) calls: Calls,
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

/// Runs `request` on a fresh instance of `function`.
pub(crate) async fn invoke<B>(
    engine: &Engine,
    observer: &Arc<dyn Observer>,
    function: Arc<Function>,
    budget: Budget,
    request: http::Request<B>,
) -> Result<http::Response<ResponseBody>, Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Budget {
        memory_bytes,
        timeout,
        permit,
        outbound,
        keyvalue,
        calls,
    } = budget;
    let deadline = Instant::now() + timeout;
    let instance = InstanceGuard::acquire(observer.clone());
    // A function that opted into reuse may have an instance left by an earlier request.
    let (mut store, warm) = match function.take_warm() {
        Some(warm) => (warm.store, Some((warm.proxy, warm.served))),
        None => {
            let mut store = Store::new(
                engine,
                RequestState::new(&function, memory_bytes, &outbound, &keyvalue, calls)?,
            );
            store.limiter(|state| &mut state.limiter);
            // Yield to other requests on every epoch tick. This is also what lets the time limit
            // reach a guest that never calls the host: its future returns at each tick.
            store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
            (store, None)
        }
    };
    store.set_epoch_deadline(1);

    let request = request.map(|body| body.map_err(|e| incoming_body_error(e.into())));
    let (sender, receiver) = oneshot::channel();
    // Set inside the guest's call to `response-outparam.set`, before the response is sent, so the task
    // knows whether a failure after that point is still the caller's to report.
    let answered = Arc::new(AtomicBool::new(false));
    let (incoming, outparam) = {
        let answered = answered.clone();
        let mut http = store.data_mut().http();
        let incoming = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| Error::internal("preparing the request", &e))?;
        let outparam = http
            .new_response_outparam_from_callback(move |response| {
                answered.store(true, Ordering::Release);
                let _ = sender.send(response);
            })
            .map_err(|e| Error::internal("preparing the response", &e))?;
        (incoming, outparam)
    };

    // The guest runs inside this future until it answers, then inside the response body while it
    // writes that body (see `ResponseBody`): no task is spawned and no other worker thread is woken
    // for a request. If the caller stops waiting (the client left), dropping this future or the body
    // ends the guest.
    let mut guest: GuestRun = Box::pin(
        run_guest(
            function.clone(),
            store,
            warm,
            incoming,
            outparam,
            answered,
            (instance, permit),
        )
        .in_current_span(),
    );
    let mut receiver = receiver;
    let mut rest: Option<GuestRun> = None;
    let answer = tokio::time::timeout_at(deadline.into(), async {
        tokio::select! {
            biased;
            answer = &mut receiver => match answer {
                // The guest answered and has not finished: the response body drives the rest of it.
                Ok(answer) => {
                    rest = Some(guest);
                    Ok(answer)
                }
                // It dropped its response-outparam unused and runs on; its outcome says why.
                Err(_) => Err(match guest.await {
                    Ok(()) => Error::NoResponse { function: function.name.to_string() },
                    Err(error) => error,
                }),
            },
            outcome = &mut guest => match receiver.try_recv() {
                // It answered and finished in the same step. If it failed, nothing has reached the
                // client yet, so the failure is the answer.
                Ok(answer) => outcome.map(|()| answer),
                // It finished without answering: the outcome says why.
                Err(_) => Err(match outcome {
                    Ok(()) => Error::NoResponse { function: function.name.to_string() },
                    Err(error) => error,
                }),
            },
        }
    })
    .await;
    // Past the deadline the guest (and with it its instance) is dropped here, wherever it was.
    let answer = answer.map_err(|_| Error::Timeout {
        function: function.name.to_string(),
        limit: timeout,
    })??;
    match answer {
        Ok(response) => Ok(response
            .map(|body| ResponseBody::new(body, rest.map(|guest| (guest, deadline, timeout))))),
        Err(code) => Err(Error::GuestError {
            function: function.name.to_string(),
            code: format!("{code:?}"),
        }),
    }
}

/// Instantiates the function and calls its `handle` export. Owns the store, so the instance lives
/// exactly as long as this task: until the guest returns, which may be after its response has started.
async fn run_guest(
    function: Arc<Function>,
    mut store: Store<RequestState>,
    warm: Option<(Proxy, u32)>,
    incoming: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    answered: Arc<AtomicBool>,
    (instance, _permit): (InstanceGuard, InflightPermit),
) -> Result<(), Error> {
    let result = async {
        let (proxy, served) = match warm {
            Some(warm) => warm,
            None => {
                let started = std::time::Instant::now();
                let proxy = function.pre.instantiate_async(&mut store).await?;
                instance
                    .observer()
                    .instantiated(started.elapsed().as_secs_f64());
                (proxy, 0)
            }
        };
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, outparam)
            .await?;
        Ok::<_, wasmtime::Error>((proxy, served))
    }
    .await;
    match result {
        Ok((proxy, served)) => {
            // Only an instance that returned normally is offered to a later request; one that trapped
            // is dropped with its store.
            function.give_back(Warm {
                store,
                proxy,
                served: served + 1,
            });
            Ok(())
        }
        Err(error) => {
            let limiter = &store.data().limiter;
            let error = match limiter.refused {
                // A guest that could not grow its memory nearly always traps right after (an abort in
                // its allocator); say which limit it hit rather than which instruction trapped.
                Some(wanted) => Error::MemoryLimit {
                    function: function.name.to_string(),
                    limit: limiter.limit as u64,
                    wanted: wanted as u64,
                },
                None => Error::from_guest_failure(&function.name, &error),
            };
            if answered.load(Ordering::Acquire) {
                // The caller already has the response; its body will end early. Say why here.
                tracing::warn!(function = %function.name, %error, "function failed after it began to answer");
            }
            Err(error)
        }
    }
}
