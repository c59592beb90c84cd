//! Running one request on an instance: a fresh [`Store`] (or a kept one), the guest's `handle` call
//! in the world it exports, and the response as soon as the guest gives it.
//!
//! The two worlds of `wasi:http` answer differently. A 0.2 guest's `handle` is a plain call that
//! answers through a `response-outparam` callback and may run on after it, writing its body. A 0.3
//! guest's `handle` is an async task that returns its response, with a body stream that the guest
//! goes on writing from the store's event loop (`run_concurrent`). Both are driven the same way from
//! outside: one future owns the store and runs the guest; the caller awaits the first answer under
//! the deadline, and the response body drives the rest (see `body.rs`). The deadline is always
//! enforced from outside the store, so a guest that spins, or a host call that holds the store, cannot
//! keep it from firing: the future is simply dropped, and the instance with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::component::Resource;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::p3::bindings::Service;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::Error;
use crate::body::{GuestRun, Inner, ResponseBody};
use crate::function::{Function, Instance, Pre, Warm};
use crate::invoke::{Budget, RequestState, incoming_body_error, yield_while_alive};
use crate::limits::InflightPermit;
use crate::observe::{InstanceGuard, Observer};
use crate::shared::{Pool, Settings};
use crate::trace::SpanGuard;

/// What keeps a request counted while its guest runs: its pool slot and its in-flight permit.
type Guards = (InstanceGuard, InflightPermit);

/// Runs `request` on a fresh instance of `function` (or a kept one, if it opted into reuse).
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
        stores,
        calls,
        trace,
    } = budget;
    let deadline = Instant::now() + timeout;
    if function.shares_instances()
        && let Pre::P3(pre) = &function.pre
    {
        let pool = function.shared.get_or_init(|| {
            Pool::new(Settings {
                engine: engine.clone(),
                observer: observer.clone(),
                memory_bytes,
                timeout,
                outbound,
                stores,
                runtime: calls.runtime.clone(),
                reuse: function.guest.spec.max_instance_reuse,
                concurrency: function.guest.spec.max_instance_concurrency,
                pre: pre.clone(),
                guest: function.guest.clone(),
            })
        });
        let request = request.map(|body| {
            body.map_err(|e| incoming_body_error(e.into()))
                .boxed_unsync()
        });
        let begun = deadline - timeout;
        let answer = tokio::time::timeout_at(deadline.into(), pool.handle(request, begun)).await;
        let timed_out = || Error::Timeout {
            function: function.guest.name.to_string(),
            limit: timeout,
        };
        return match answer {
            Err(_) => Err(timed_out()),
            // The instance was ended at the deadline, with every request on it.
            Ok(Err(_)) if Instant::now() >= deadline => Err(timed_out()),
            Ok(Err(message)) => Err(Error::Trap {
                function: function.guest.name.to_string(),
                message,
            }),
            Ok(Ok(response)) => Ok(response
                .map(|body| ResponseBody::detached(Inner::P3(body), deadline, timeout, permit))),
        };
    }
    let instance = InstanceGuard::acquire(observer.clone());
    // A function that opted into reuse may have an instance left by an earlier request.
    let (mut store, warm) = match function.take_warm() {
        Some(mut warm) => {
            // A kept store last served another request: its calls and lines belong to this one now.
            warm.store.data_mut().set_trace(trace);
            (warm.store, Some((warm.instance, warm.served)))
        }
        None => {
            let alive = calls.runtime.clone();
            let state = RequestState::new(
                &function.guest,
                memory_bytes,
                &outbound,
                &stores,
                calls,
                trace,
            )?;
            let mut store = Store::new(engine, state);
            store.limiter(|state| &mut state.limiter);
            // Yield to other requests on every epoch tick. This is also what lets the time limit
            // reach a guest that never calls the host: its future returns at each tick.
            store.epoch_deadline_callback(yield_while_alive(alive));
            (store, None)
        }
    };
    store.set_epoch_deadline(1);

    let request = request.map(|body| body.map_err(|e| incoming_body_error(e.into())));
    let guards = (instance, permit);
    // Set when the guest has answered, before the answer is sent, so the run knows whether a failure
    // after that point is still the caller's to report.
    let answered = Arc::new(AtomicBool::new(false));
    let name = &function.guest.name;
    match &function.pre {
        Pre::P2(_) => {
            let (sender, receiver) = oneshot::channel();
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
            let warm = warm.and_then(|(instance, served)| match instance {
                Instance::P2(proxy) => Some((proxy, served)),
                Instance::P3(_) => None,
            });
            let observer = observer.clone();
            let run = run_p2(
                function.clone(),
                observer,
                store,
                warm,
                (incoming, outparam),
                answered,
            );
            let guest: GuestRun = Box::pin(guarded(run, guards).in_current_span());
            let (answer, rest) = first_answer(name, guest, receiver, deadline, timeout).await?;
            match answer {
                Ok(response) => Ok(response.map(|body| {
                    ResponseBody::new(Inner::P2(body), rest.map(|run| (run, deadline, timeout)))
                })),
                Err(code) => Err(Error::GuestError {
                    function: name.to_string(),
                    code: format!("{code:?}"),
                }),
            }
        }
        Pre::P3(_) => {
            let (sender, receiver) = oneshot::channel();
            let (request, request_io) = {
                let hooks = store.data_mut().http().hooks;
                wasmtime_wasi_http::p3::Request::from_http(hooks, request)
            };
            let warm = warm.and_then(|(instance, served)| match instance {
                Instance::P3(service) => Some((service, served)),
                Instance::P2(_) => None,
            });
            let run = run_p3(
                function.clone(),
                observer.clone(),
                store,
                warm,
                (request, Box::pin(request_io)),
                sender,
                answered,
            );
            let guest: GuestRun = Box::pin(guarded(run, guards).in_current_span());
            let (answer, rest) = first_answer(name, guest, receiver, deadline, timeout).await?;
            match answer {
                Ok(response) => Ok(response.map(|body| {
                    ResponseBody::new(Inner::P3(body), rest.map(|run| (run, deadline, timeout)))
                })),
                Err(code) => Err(Error::GuestError {
                    function: name.to_string(),
                    code: format!("{code:?}"),
                }),
            }
        }
    }
}

/// Keeps the request's pool slot and permit until the guest's run ends, however it ends.
async fn guarded(
    run: impl Future<Output = Result<(), Error>>,
    (instance, _permit): Guards,
) -> Result<(), Error> {
    let _instance = instance;
    run.await
}

/// Waits, under the deadline, for the guest's first answer. Returns it and, when the guest answered
/// but has not finished (it has a body to write), the rest of its run.
async fn first_answer<A>(
    name: &str,
    mut guest: GuestRun,
    mut receiver: oneshot::Receiver<A>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(A, Option<GuestRun>), Error> {
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
                // It dropped its way to answer unused and runs on; its outcome says why.
                Err(_) => Err(match guest.await {
                    Ok(()) => Error::NoResponse { function: name.to_string() },
                    Err(error) => error,
                }),
            },
            outcome = &mut guest => match receiver.try_recv() {
                // It answered and finished in the same step. If it failed, nothing has reached the
                // client yet, so the failure is the answer.
                Ok(answer) => outcome.map(|()| answer),
                // It finished without answering: the outcome says why.
                Err(_) => Err(match outcome {
                    Ok(()) => Error::NoResponse { function: name.to_string() },
                    Err(error) => error,
                }),
            },
        }
    })
    .await;
    // Past the deadline the guest (and with it its instance) is dropped here, wherever it was.
    let answer = answer.map_err(|_| Error::Timeout {
        function: name.to_string(),
        limit: timeout,
    })??;
    Ok((answer, rest))
}

/// Instantiates a 0.2 function and calls its `handle` export. Owns the store, so the instance lives
/// exactly as long as this future: until the guest returns, which may be after its response began.
async fn run_p2(
    function: Arc<Function>,
    observer: Arc<dyn Observer>,
    mut store: Store<RequestState>,
    warm: Option<(Proxy, u32)>,
    (incoming, outparam): (
        Resource<HostIncomingRequest>,
        Resource<HostResponseOutparam>,
    ),
    answered: Arc<AtomicBool>,
) -> Result<(), Error> {
    let result = async {
        let (proxy, served) = match warm {
            Some(warm) => warm,
            None => match instantiate(&function, &observer, &mut store).await? {
                Instance::P2(proxy) => (proxy, 0),
                Instance::P3(_) => wasmtime::bail!("a 0.2 function instantiated as 0.3"),
            },
        };
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, outparam)
            .await?;
        Ok::<_, wasmtime::Error>((proxy, served))
    }
    .await;
    finish(
        &function,
        store,
        result.map(|(p, n)| (Instance::P2(p), n)),
        &answered,
    )
}

/// The 0.3 request as `wasi:http` takes it, and the future that reports how sending its body to the
/// guest went.
type P3Request = (
    wasmtime_wasi_http::p3::Request,
    std::pin::Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>,
);

/// What a 0.3 guest answers: a response whose body it writes on, or an error code.
type P3Answer =
    Result<http::Response<WasiBody>, wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>;

/// Instantiates a 0.3 function and runs its `handle` task in the store's event loop, sending the
/// response as soon as the task returns it, then keeps the loop running until the guest has no task
/// left (it may go on writing its body, or do work after it). Owns the store, like [`run_p2`].
async fn run_p3(
    function: Arc<Function>,
    observer: Arc<dyn Observer>,
    mut store: Store<RequestState>,
    warm: Option<(Service, u32)>,
    (request, request_io): P3Request,
    sender: oneshot::Sender<P3Answer>,
    answered: Arc<AtomicBool>,
) -> Result<(), Error> {
    let result = async {
        let (service, served) = match warm {
            Some(warm) => warm,
            None => match instantiate(&function, &observer, &mut store).await? {
                Instance::P3(service) => (service, 0),
                Instance::P2(_) => wasmtime::bail!("a 0.3 function instantiated as 0.2"),
            },
        };
        let answered = answered.clone();
        store
            .run_concurrent(async |accessor| {
                let answer = match service.handle(accessor, request).await? {
                    Ok(response) => Ok(
                        accessor.with(|mut store| response.into_http(&mut store, request_io))?
                    ),
                    Err(code) => Err(code),
                };
                answered.store(true, Ordering::Release);
                let _ = sender.send(answer);
                // The guest's task may outlive its return: it writes the body from there.
                std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                Ok::<_, wasmtime::Error>(())
            })
            .await??;
        Ok::<_, wasmtime::Error>((service, served))
    }
    .await;
    finish(
        &function,
        store,
        result.map(|(s, n)| (Instance::P3(s), n)),
        &answered,
    )
}

/// A new instance of `function` in `store`, its instantiation time reported.
async fn instantiate(
    function: &Function,
    observer: &Arc<dyn Observer>,
    store: &mut Store<RequestState>,
) -> wasmtime::Result<Instance> {
    let started = Instant::now();
    let span = store.data().trace().map(|trace| {
        SpanGuard(trace.child(
            "instantiate",
            opentelemetry::trace::SpanKind::Internal,
            Vec::new(),
        ))
    });
    let instance = instantiate_in_pool(function, store).await;
    if let (Some(span), Err(error)) = (&span, &instance) {
        span.0.fail(format!("{error:#}"));
    }
    let instance = instance?;
    drop(span);
    observer.instantiated(started.elapsed().as_secs_f64());
    Ok(instance)
}

/// A new instance of `function` in `store`, making room in a pool full of idle kept instances.
async fn instantiate_in_pool(
    function: &Function,
    store: &mut Store<RequestState>,
) -> wasmtime::Result<Instance> {
    let instance = match function.pre.instantiate(store).await {
        // A pool full of instances kept idle for reuse lets one of them go for a new request
        // rather than refuse it; a pool full of busy instances still refuses.
        Err(error)
            if error
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
                && crate::evict_an_idle_instance(store.data().runtime()) =>
        {
            function.pre.instantiate(store).await?
        }
        other => other?,
    };
    Ok(instance)
}

/// Ends a guest's run: an instance that returned normally is offered to a later request (if the
/// function reuses instances); a failure becomes the error that says what happened.
fn finish(
    function: &Function,
    store: Store<RequestState>,
    result: wasmtime::Result<(Instance, u32)>,
    answered: &AtomicBool,
) -> Result<(), Error> {
    store.data().end_output_lines();
    match result {
        Ok((instance, served)) => {
            // Only an instance that returned normally is offered to a later request; one that trapped
            // is dropped with its store.
            function.give_back(Warm {
                store,
                instance,
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
                    function: function.guest.name.to_string(),
                    limit: limiter.limit as u64,
                    wanted: wanted as u64,
                },
                None => Error::from_guest_failure(&function.guest.name, &error),
            };
            if answered.load(Ordering::Acquire) {
                // The caller already has the response; its body will end early. Say why here.
                tracing::warn!(function = %function.guest.name, %error, "function failed after it began to answer");
            }
            Err(error)
        }
    }
}
