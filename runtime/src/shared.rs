//! Instances of a WASI 0.3 function shared by concurrent requests, for the functions that ask for it
//! (`FunctionSpec::max_instance_reuse` above 1 and `FunctionSpec::max_instance_concurrency` above 1).
//!
//! A 0.3 guest's `handle` is an async task, so one instance can have several in flight: while one
//! request awaits (its body, an outbound call, a timer) another runs. That trades isolation for
//! speed, exactly as sequential reuse does, and more: requests served at the same time see each
//! other's globals and memory. wasmgate never does it unless the function asks.
//!
//! Each shared instance is a worker task that owns its store and runs the store's event loop
//! (`run_concurrent`), taking requests from a bounded channel. A request is handled exactly as on a
//! fresh instance (`guest.rs`): `handle` is called inside the event loop and the response goes back
//! as soon as the guest returns it; its body goes on streaming from the same loop. The function keeps
//! the list of its workers ([`Pool`]) and sends a request to one that is below its bounds, or starts
//! a new one.
//!
//! Bounds, and who stops what:
//! - a worker awaits at most `concurrency` responses at once (a request whose response has begun
//!   streams on and no longer counts) and takes `reuse` requests in all;
//! - it ends when it has served `reuse` requests and has nothing left to run, after
//!   [`SHARED_IDLE_TIMEOUT`] without work, when its function version is dropped (the pool owns the
//!   only senders of its channel), or when a request on it runs past the time limit: each request's
//!   own deadline answers 504 first, and the worker ends the instance (and every request on it: a
//!   0.3 task cannot be stopped alone) [`EXPIRY_GRACE`] later. That check runs outside the store's
//!   event loop, between epoch yields, so a guest that spins cannot hold it off.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::invoke::{Calls, GuestSetup, MAX_CALLS_PER_REQUEST, RequestState};
use crate::observe::{InstanceGuard, Observer};
use crate::outbound::OutboundClient;

/// How long a shared instance waits for another request before it ends and frees its pool slot.
pub const SHARED_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long past a request's time limit its instance is ended if the request has not. Each request's
/// own deadline fires first and answers 504; this is the backstop that stops a guest still running.
const EXPIRY_GRACE: Duration = Duration::from_millis(100);

/// What a request on a shared instance answers: a response whose body streams on, or why not.
pub(crate) type SharedAnswer = Result<http::Response<WasiBody>, String>;

/// One request for a worker, with where its answer goes.
struct Job {
    request: http::Request<WasiBody>,
    answer: oneshot::Sender<SharedAnswer>,
    /// When its time limit began (its deadline less the limit), the basis of every deadline check.
    begun: Instant,
}

/// What every instance of one function version is made with.
pub(crate) struct Settings {
    pub(crate) engine: Engine,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) memory_bytes: u64,
    pub(crate) timeout: Duration,
    pub(crate) outbound: OutboundClient,
    pub(crate) stores: crate::services::Stores,
    pub(crate) runtime: Weak<crate::Inner>,
    /// Requests one instance serves in all, and awaits at once.
    pub(crate) reuse: u32,
    pub(crate) concurrency: u32,
    /// The function version's pre-instance and what its requests' state is made from. Neither
    /// holds the function itself, so dropping the function (a redeploy, a removal) drops the pool
    /// and with it every sender of the workers' queues.
    pub(crate) pre: ServicePre<RequestState>,
    pub(crate) guest: Arc<GuestSetup>,
}

/// The shared instances of one function version.
pub(crate) struct Pool {
    /// Shared with the workers, which may outlive the pool.
    settings: Arc<Settings>,
    workers: Mutex<Vec<Handle>>,
}

/// The pool's side of one worker.
struct Handle {
    jobs: mpsc::Sender<Job>,
    load: Arc<Load>,
}

/// A worker's counts, shared with the pool so it can choose a worker without asking it.
#[derive(Default)]
struct Load {
    /// Requests given to it that have not had their response yet.
    awaiting: AtomicU32,
    /// Requests given to it in all.
    accepted: AtomicU32,
    /// Set when it stops taking requests.
    closed: AtomicBool,
    /// When each request awaiting its response began, oldest first: the deadline check of the
    /// worker, and of the pool before it gives the worker another request.
    starts: Mutex<VecDeque<Instant>>,
}

impl Pool {
    pub(crate) fn new(settings: Settings) -> Self {
        Pool {
            settings: Arc::new(settings),
            workers: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` to a worker with room, starting one if none has, and waits for the
    /// response's head.
    pub(crate) async fn handle(
        &self,
        request: http::Request<WasiBody>,
        begun: Instant,
    ) -> SharedAnswer {
        let (answer, answered) = oneshot::channel();
        self.dispatch(Job {
            request,
            answer,
            begun,
        })?;
        wait(answered).await
    }

    /// Gives `job` to a worker with room, or to a new one.
    fn dispatch(&self, mut job: Job) -> Result<(), String> {
        let settings = &self.settings;
        let mut workers = lock(&self.workers);
        workers.retain(|w| !w.load.closed.load(Ordering::Acquire) && !w.jobs.is_closed());
        for worker in workers.iter() {
            if !worker
                .load
                .reserve(settings.concurrency, settings.reuse, settings.timeout)
            {
                continue;
            }
            match worker.jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(
                    mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back),
                ) => {
                    worker.load.release();
                    job = back;
                }
            }
        }
        let load = Arc::new(Load::default());
        load.reserve(settings.concurrency, settings.reuse, settings.timeout);
        // The channel holds at most what the worker may await at once.
        let (jobs, queue) = mpsc::channel(settings.concurrency as usize);
        jobs.try_send(job)
            .map_err(|_| "a new shared instance refused its first request".to_string())?;
        workers.push(Handle {
            jobs,
            load: load.clone(),
        });
        tokio::spawn(run_worker(self.settings.clone(), queue, load));
        Ok(())
    }
}

impl Load {
    /// Whether a request on it is past `timeout`: it will be ended, so it takes no more.
    fn overdue(&self, timeout: Duration) -> bool {
        lock(&self.starts)
            .front()
            .is_some_and(|start| start.elapsed() >= timeout)
    }

    /// Counts one more request on this worker if it has room for it.
    fn reserve(&self, concurrency: u32, reuse: u32, timeout: Duration) -> bool {
        if self.closed.load(Ordering::Acquire)
            || self.accepted.load(Ordering::Acquire) >= reuse
            || self.overdue(timeout)
        {
            return false;
        }
        let taken = self
            .awaiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < concurrency).then_some(n + 1)
            })
            .is_ok();
        if taken {
            self.accepted.fetch_add(1, Ordering::AcqRel);
        }
        taken
    }

    fn release(&self) {
        self.awaiting.fetch_sub(1, Ordering::AcqRel);
        self.accepted.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn wait(answered: oneshot::Receiver<SharedAnswer>) -> SharedAnswer {
    answered
        .await
        .unwrap_or_else(|_| Err("the shared instance ended before it answered".into()))
}

/// One shared instance: made, then serving until one of its ends (see the module docs).
async fn run_worker(settings: Arc<Settings>, mut queue: mpsc::Receiver<Job>, load: Arc<Load>) {
    let result = serve(&settings, &mut queue, &load).await;
    load.closed.store(true, Ordering::Release);
    queue.close();
    while let Ok(job) = queue.try_recv() {
        let _ = job.answer.send(Err("the shared instance ended".into()));
    }
    if let Err(error) = result {
        tracing::warn!(function = %settings.guest.name, %error, "a shared instance ended; its requests failed");
    }
}

async fn serve(
    settings: &Settings,
    queue: &mut mpsc::Receiver<Job>,
    load: &Arc<Load>,
) -> Result<(), String> {
    // The pool slot is held for as long as the instance lives, not per request.
    let _slot = InstanceGuard::acquire(settings.observer.clone());
    // Calls to other functions from a shared instance start a chain of their own: the instance
    // serves many outside requests, so none of them owns its budget.
    let calls = Calls {
        runtime: settings.runtime.clone(),
        depth: 0,
        left: Arc::new(AtomicU32::new(MAX_CALLS_PER_REQUEST)),
    };
    let state = RequestState::new(
        &settings.guest,
        settings.memory_bytes,
        &settings.outbound,
        &settings.stores,
        calls,
        // Shared by many requests at once, its calls and lines belong to none of their traces.
        None,
    )
    .map_err(|e| e.to_string())?;
    let mut store = Store::new(&settings.engine, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_callback(crate::invoke::yield_while_alive(settings.runtime.clone()));
    store.set_epoch_deadline(1);
    let started = Instant::now();
    let service = settings
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| format!("{e:#}"))?;
    settings
        .observer
        .instantiated(started.elapsed().as_secs_f64());

    let starts = &load.starts;
    let mut event_loop = Box::pin(store.run_concurrent(async |accessor| {
        let mut running = FuturesUnordered::new();
        let mut served = 0u32;
        loop {
            let idle = running.is_empty();
            let more = served < settings.reuse;
            if idle && !more {
                break;
            }
            tokio::select! {
                job = queue.recv(), if more => {
                    let Some(job) = job else {
                        // The pool is gone: finish what runs, take nothing new.
                        if running.is_empty() { break; }
                        served = settings.reuse;
                        continue;
                    };
                    served += 1;
                    let begun = job.begun;
                    lock(starts).push_back(begun);
                    let load = load.clone();
                    let service = &service;
                    running.push(async move {
                        let answer = answer_one(accessor, service, job.request).await;
                        load.awaiting.fetch_sub(1, Ordering::AcqRel);
                        let mut starts = lock(starts);
                        if let Some(i) = starts.iter().position(|s| *s == begun) {
                            starts.remove(i);
                        }
                        drop(starts);
                        let _ = job.answer.send(answer);
                    });
                }
                Some(()) = running.next(), if !idle => {}
                () = tokio::time::sleep(SHARED_IDLE_TIMEOUT), if idle => break,
                else => break,
            }
        }
        // Stop taking requests, then let the guest finish what it writes (bodies, work after them).
        load.closed.store(true, Ordering::Release);
        std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
    }));
    let timeout = settings.timeout;
    let mut check = tokio::time::interval(Duration::from_millis(50));
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(outcome) = event_loop.as_mut().poll(cx) {
            return Poll::Ready(outcome.map_err(|e| format!("{e:#}")));
        }
        // Checked here, outside the event loop: a guest that spins only yields to this poll.
        let oldest = lock(starts).front().copied();
        if oldest.is_some_and(|start| start.elapsed() >= timeout) {
            // Take no more; the requests on it have until the grace ends.
            load.closed.store(true, Ordering::Release);
        }
        if oldest.is_some_and(|start| start.elapsed() > timeout + EXPIRY_GRACE) {
            return Poll::Ready(Err(format!(
                "a request on it ran past its time limit of {timeout:?}"
            )));
        }
        while check.poll_tick(cx).is_ready() {}
        Poll::Pending
    })
    .await
}

/// Calls `handle` for one request and turns its answer into an `http` response.
async fn answer_one(
    accessor: &wasmtime::component::Accessor<RequestState>,
    service: &Service,
    request: http::Request<WasiBody>,
) -> SharedAnswer {
    let (request, request_io) = accessor.with(|mut store| {
        let hooks = store.data_mut().http().hooks;
        wasmtime_wasi_http::p3::Request::from_http(hooks, request)
    });
    match service.handle(accessor, request).await {
        Ok(Ok(response)) => accessor
            .with(|mut store| response.into_http(&mut store, request_io))
            .map_err(|e| format!("{e:#}")),
        Ok(Err(code)) => Err(format!("the function answered with an error: {code:?}")),
        Err(error) => Err(format!("{error:#}")),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}
