//! # wasmgate-runtime
//!
//! Runs WebAssembly components of the `wasi:http/proxy` world, one fresh instance per request. This
//! crate is the only one in wasmgate that knows wasmtime: callers see [`Runtime`], [`Error`], plain
//! `http` requests and responses, and [`logs`] — never a `Store`, a `Linker` or an engine setting.
//!
//! Using it takes three steps:
//!
//! 1. Create one [`Runtime`] for the process with a [`RuntimeConfig`]. It builds the engine (pooling
//!    allocator when the address space allows it, copy-on-write memory images, epoch interruption) and
//!    starts the thread that ticks the epoch; dropping the runtime stops that thread.
//! 2. [`Runtime::deploy`] (or [`Runtime::load`]) a function by name: its component is compiled once, on
//!    a blocking thread, and pre-instantiated against the host's imports (`wasi:http/proxy` plus the
//!    `wasi:cli` family that ordinary toolchains import). A bad component is rejected with
//!    [`Error::InvalidComponent`]. Deploying a name again replaces the function atomically: requests
//!    already running finish on the old version. [`Runtime::register`] adds a function without
//!    compiling it; [`Runtime::unload`] drops its compiled code (scale to zero). Either way the next
//!    request loads it (a cold start; concurrent cold starts share one load).
//! 3. [`Runtime::invoke`] it with an `http::Request`: a new store and instance serve that request alone
//!    and are dropped when the guest returns. The response body streams as the guest writes it.
//!
//! ```no_run
//! # async fn example() -> Result<(), wasmgate_runtime::Error> {
//! use wasmgate_runtime::{FunctionSpec, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let wasm = std::fs::read("hello.wasm").expect("readable");
//! runtime.load("hello", wasm, FunctionSpec::default()).await?;
//! let request = http::Request::get("http://localhost/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
//! let response = runtime.invoke("hello", request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```
//!
//! Over 600 lines: the facade is one type on purpose (the function table, the loaded-code cache,
//! load, invoke, and each request's trace); the parts it calls live in `guest.rs`, `function.rs`,
//! `invoke.rs` and the other modules.

mod app;
mod body;
mod cache;
mod engine;
mod error;
mod function;
mod guest;
mod invoke;
mod limits;
pub mod logs;
mod observe;
mod outbound;
mod pagemap;
mod router;
pub mod services;
mod shared;
mod spec;
pub mod spin;
mod trace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::Linker;

pub use crate::body::{BodyError, ResponseBody};
pub use crate::engine::{
    Allocator, AllocatorKind, DEFAULT_EPOCH_TICK, DEFAULT_LOADED_MEMORY_BUDGET,
    DEFAULT_MAX_INSTANCES, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_TIMEOUT, DEFAULT_MEMORY_BYTES,
    DEFAULT_TIMEOUT, RuntimeConfig,
};
pub use crate::error::{Error, InflightScope};
use crate::function::Function;
pub use crate::function::{LOADED_FUNCTION_OVERHEAD, WasmSource};
use crate::invoke::RequestState;
use crate::limits::{Inflight, InflightPermit, Refused};
use crate::logs::FunctionLogs;
pub use crate::observe::{NoObserver, Observer};
pub use crate::outbound::{
    HostPattern, MAX_IDLE_PER_HOST, MAX_OUTBOUND_PER_REQUEST, MAX_OUTBOUND_TIMEOUT,
    POOL_IDLE_TIMEOUT,
};
pub use crate::router::{CallRoute, Router, part_name};
pub use crate::shared::SHARED_IDLE_TIMEOUT;
pub use crate::spec::{FunctionSpec, GuestDir, Limits, World};
pub use crate::trace::{TRACEPARENT, TRACESTATE, Trace};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// Marks a response (in its `http` extensions) whose request found its function not loaded and
/// waited for it to load first: a cold start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdStart;

/// Loads functions and serves requests with them. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    engine: Engine,
    allocator: AllocatorKind,
    linker: Linker<RequestState>,
    config: RuntimeConfig,
    observer: Arc<dyn Observer>,
    /// Compiled code on disk, when the configuration names a folder for it.
    cache: Option<cache::CodeCache>,
    /// Loaded functions by entry id, bounded by `RuntimeConfig::loaded_memory_budget`: the least
    /// recently used are unloaded past it (and, with `unload_idle_after`, the idle ones).
    loaded: moka::sync::Cache<u64, Arc<Function>>,
    next_id: AtomicU64,
    /// Requests in flight in the whole runtime, for `RuntimeConfig::max_inflight`.
    inflight: Arc<Inflight>,
    /// Outbound HTTP of every function, pooled.
    outbound: outbound::OutboundClient,
    /// Where functions' key-value buckets and Spin apps' SQLite databases live.
    stores: services::Stores,
    functions: RwLock<HashMap<String, Arc<Entry>>>,
    /// Functions made of parts, by name; their parts are in `functions` (see `app.rs`).
    apps: RwLock<HashMap<String, Arc<app::App>>>,
    /// The zero of every entry's `last_used`.
    started: Instant,
    // Stops the epoch thread when the runtime goes away.
    _ticker: engine::EpochTicker,
}

/// A function known to the runtime, loaded or not. Replaced whole on deploy; its compiled code lives
/// in `Inner::loaded` under its `id`, which no other version of the function shares.
pub(crate) struct Entry {
    id: u64,
    name: Arc<str>,
    source: WasmSource,
    spec: Arc<FunctionSpec>,
    logs: Arc<FunctionLogs>,
    /// Held while loading, so concurrent cold starts of this function share one load.
    loading: tokio::sync::Mutex<()>,
    /// Milliseconds since `Inner::started` when a request last used it.
    last_used: AtomicU64,
    /// Its requests in flight, for `Limits::max_inflight`.
    inflight: Arc<Inflight>,
}

/// A compiled function not yet live; see [`Runtime::prepare`].
pub struct Prepared(Entry, Option<Arc<Function>>, World);

impl Prepared {
    /// The world of `wasi:http` the function exports.
    pub fn world(&self) -> World {
        self.2
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Prepared").field(&self.0.name).finish()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("allocator", &self.allocator)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine, the linker and the epoch thread.
    pub fn new(config: RuntimeConfig) -> Result<Self, Error> {
        Runtime::with_observer(config, Arc::new(NoObserver))
    }

    /// Like [`Runtime::new`], reporting events to `observer`; key-value data is kept in memory.
    pub fn with_observer(
        config: RuntimeConfig,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, Error> {
        Runtime::with_services(
            config,
            observer,
            Arc::new(services::MemoryKeyValue::default()),
        )
    }

    /// Like [`Runtime::with_observer`], with functions' key-value buckets in `keyvalue`; Spin's
    /// SQLite databases are refused.
    pub fn with_services(
        config: RuntimeConfig,
        observer: Arc<dyn Observer>,
        keyvalue: Arc<dyn services::KeyValueStore>,
    ) -> Result<Self, Error> {
        Runtime::with_stores(config, observer, keyvalue, Arc::new(services::NoSqlite))
    }

    /// Like [`Runtime::with_services`], with Spin apps' SQLite databases in `sqlite`.
    pub fn with_stores(
        config: RuntimeConfig,
        observer: Arc<dyn Observer>,
        keyvalue: Arc<dyn services::KeyValueStore>,
        sqlite: Arc<dyn services::SqliteStore>,
    ) -> Result<Self, Error> {
        let (engine, allocator) = engine::build_engine(&config)?;
        let mut linker = Linker::new(&engine);
        // All of WASI 0.2 and of WASI 0.3, side by side in one linker (their interfaces are versioned,
        // so they never clash; a component may import both, as componentize-py's do): the `wasi:cli`
        // family that language toolchains import, a filesystem with only what the function is given,
        // sockets with every address denied, plus `wasi:http`.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::internal("adding WASI 0.2 to the linker", &e))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::internal("adding wasi:http 0.2 to the linker", &e))?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)
            .map_err(|e| Error::internal("adding WASI 0.3 to the linker", &e))?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)
            .map_err(|e| Error::internal("adding wasi:http 0.3 to the linker", &e))?;
        services::add_to_linker(&mut linker, invoke::RequestState::services)?;
        spin::add_to_linker(&mut linker, invoke::RequestState::services)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(cache::CodeCache::open(dir, &engine).map_err(|e| {
                Error::Internal(format!("opening the code cache {}: {e}", dir.display()))
            })?),
            None => None,
        };
        let ticker = engine::EpochTicker::start(engine.clone(), config.epoch_tick)?;
        // Weighed in KiB so a budget of terabytes still fits moka's u64 capacity and u32 weights.
        let mut loaded = moka::sync::Cache::builder()
            .max_capacity(config.loaded_memory_budget / 1024)
            .weigher(|_id: &u64, function: &Arc<Function>| function.weight_kib);
        if let Some(idle) = config.unload_idle_after {
            loaded = loaded.time_to_idle(idle);
        }
        let loaded = loaded.build();
        tracing::info!(
            ?allocator,
            max_instances = config.max_instances,
            "runtime ready"
        );
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                allocator,
                linker,
                config,
                observer,
                cache,
                loaded,
                next_id: AtomicU64::new(0),
                inflight: Arc::default(),
                outbound: outbound::OutboundClient::new(),
                stores: services::Stores { keyvalue, sqlite },
                functions: RwLock::new(HashMap::new()),
                apps: RwLock::new(HashMap::new()),
                started: Instant::now(),
                _ticker: ticker,
            }),
        })
    }

    /// The allocator the engine uses (pooling unless the address space did not allow it).
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator
    }

    /// Checks that `wasm` is a component this runtime can serve, and says which world of `wasi:http`
    /// it exports. Nothing is kept but, with a `cache_key`, its compiled code, so deploying the same
    /// bytes later does not compile again.
    pub async fn validate(&self, wasm: Vec<u8>, cache_key: Option<&str>) -> Result<World, Error> {
        let logs = Arc::new(FunctionLogs::new("validation", 0));
        let mut source = WasmSource::new(|| Err("validation keeps no source".to_string()));
        if let Some(key) = cache_key {
            source = source.with_cache_key(key);
        }
        self.compile(
            "validation",
            Some(wasm),
            source,
            Arc::new(FunctionSpec::default()),
            logs,
            None,
        )
        .await
        .map(|function| function.pre.world())
    }

    /// Compiles `wasm` (kept in memory for reloads) and makes it the function `name`.
    pub async fn load(&self, name: &str, wasm: Vec<u8>, spec: FunctionSpec) -> Result<(), Error> {
        let source = WasmSource::bytes(Arc::from(wasm.as_slice()));
        self.deploy(name, wasm, source, spec, true).await
    }

    /// Compiles `wasm` and makes it the function `name`, replacing any function of that name;
    /// `source` gives the bytes again after an unload. With `keep_loaded` false the compiled code is
    /// dropped after validation (a function deployed scaled to zero). Compilation runs on a blocking
    /// thread, never on an async worker.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: Vec<u8>,
        source: WasmSource,
        spec: FunctionSpec,
        keep_loaded: bool,
    ) -> Result<(), Error> {
        let prepared = self.prepare(name, wasm, source, spec, keep_loaded).await?;
        self.install(prepared);
        Ok(())
    }

    /// The first half of [`Runtime::deploy`]: compiles and validates, but changes nothing yet, so
    /// the caller can persist the function between the check and the switch.
    pub async fn prepare(
        &self,
        name: &str,
        wasm: Vec<u8>,
        source: WasmSource,
        spec: FunctionSpec,
        keep_loaded: bool,
    ) -> Result<Prepared, Error> {
        let logs = self.logs_for(name);
        self.prepare_logged(name, logs, wasm, source, spec, keep_loaded)
            .await
    }

    /// [`Runtime::prepare`] with the log the function is to write to.
    pub(crate) async fn prepare_logged(
        &self,
        name: &str,
        logs: Arc<FunctionLogs>,
        wasm: Vec<u8>,
        source: WasmSource,
        spec: FunctionSpec,
        keep_loaded: bool,
    ) -> Result<Prepared, Error> {
        let spec = Arc::new(spec);
        let function = self
            .compile(
                name,
                Some(wasm),
                source.clone(),
                spec.clone(),
                logs.clone(),
                None,
            )
            .await?;
        let entry = self.entry(name, source, spec, logs);
        let world = function.pre.world();
        Ok(Prepared(
            entry,
            keep_loaded.then(|| Arc::new(function)),
            world,
        ))
    }

    /// The second half of [`Runtime::deploy`]: makes a prepared function live, atomically.
    pub fn install(&self, prepared: Prepared) {
        let Prepared(entry, function, _) = prepared;
        // A function made of parts of this name is replaced whole.
        self.remove_app(&entry.name);
        if let Some(function) = function {
            self.inner.loaded.insert(entry.id, function);
        }
        let old = self.write().insert(entry.name.to_string(), Arc::new(entry));
        if let Some(old) = old {
            self.inner.loaded.invalidate(&old.id);
        }
    }

    /// Adds the function `name` without compiling it: the first request (or [`Runtime::warm`]) loads
    /// it from `source`. Used at start-up, so the gateway serves at once.
    pub fn register(&self, name: &str, source: WasmSource, spec: FunctionSpec) {
        self.remove_app(name);
        let entry = self.entry(name, source, Arc::new(spec), self.logs_for(name));
        self.write().insert(name.to_string(), Arc::new(entry));
    }

    /// Gives the function `name` a new spec (say, a secret it lists changed) without recompiling: its
    /// code loads again (from the disk cache) on its next request; requests running keep the old one.
    pub fn respecify(&self, name: &str, spec: FunctionSpec) -> Result<(), Error> {
        let old = self.get(name)?;
        let entry = self.entry(name, old.source.clone(), Arc::new(spec), old.logs.clone());
        self.write().insert(name.to_string(), Arc::new(entry));
        self.inner.loaded.invalidate(&old.id);
        Ok(())
    }

    /// Loads the function `name` if it is not loaded. Not counted as a cold start.
    pub async fn warm(&self, name: &str) -> Result<(), Error> {
        let entries = self.entries_of(name);
        if entries.is_empty() {
            return Err(Error::NotFound(name.to_string()));
        }
        for entry in entries {
            self.load_entry(&entry, false, None).await?;
        }
        Ok(())
    }

    /// Makes sure the compiled code of `name` is in the disk cache, compiling it if not, without
    /// loading it. Returns whether it compiled. Used at start-up for artifacts never compiled here.
    pub async fn precompile(&self, name: &str) -> Result<bool, Error> {
        let entries = self.entries_of(name);
        if entries.is_empty() {
            return Err(Error::NotFound(name.to_string()));
        }
        let mut compiled = false;
        for entry in entries {
            let (Some(cache), Some(key)) = (&self.inner.cache, entry.source.cache_key()) else {
                continue;
            };
            if cache.contains(key) {
                continue;
            }
            let logs = entry.logs.clone();
            self.compile(
                &entry.name,
                None,
                entry.source.clone(),
                entry.spec.clone(),
                logs,
                None,
            )
            .await?;
            compiled = true;
        }
        Ok(compiled)
    }

    /// Removes the compiled code kept on disk under `cache_key` (a component no function uses any
    /// more). Loaded functions keep theirs.
    pub fn forget_compiled(&self, cache_key: &str) {
        if let Some(cache) = &self.inner.cache {
            cache.remove(cache_key);
        }
    }

    /// Drops the compiled code of `name` (scale to zero); requests running keep theirs. Returns whether
    /// it was loaded.
    pub fn unload(&self, name: &str) -> bool {
        let mut unloaded = false;
        for entry in self.entries_of(name) {
            unloaded |= self.inner.loaded.remove(&entry.id).is_some();
        }
        unloaded
    }

    /// The world of `wasi:http` that `name` exports, if it is loaded (the compiled component says);
    /// `None` if it is unknown or not loaded.
    pub fn world(&self, name: &str) -> Option<World> {
        self.entries_of(name)
            .iter()
            .find_map(|entry| self.inner.loaded.get(&entry.id))
            .map(|function| function.pre.world())
    }

    /// Whether `name` is loaded (ready to serve without compiling); `None` if unknown.
    pub fn is_loaded(&self, name: &str) -> Option<bool> {
        let entries = self.entries_of(name);
        if entries.is_empty() {
            return None;
        }
        Some(
            entries
                .iter()
                .any(|entry| self.inner.loaded.contains_key(&entry.id)),
        )
    }

    /// How long since a request last used `name` (or since it was added); `None` if unknown.
    pub fn idle_for(&self, name: &str) -> Option<Duration> {
        let last_used = self
            .entries_of(name)
            .iter()
            .map(|entry| entry.last_used.load(Ordering::Relaxed))
            .max()?;
        Some(Duration::from_millis(
            self.now_millis().saturating_sub(last_used),
        ))
    }

    /// Removes the function `name`; requests already running finish. Returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        let app = self.remove_app(name);
        let removed = self.write().remove(name);
        if let Some(entry) = &removed {
            self.inner.loaded.invalidate(&entry.id);
        }
        removed.is_some() || app
    }

    /// The names of the known functions, sorted.
    pub fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// How many functions are loaded.
    pub fn loaded_count(&self) -> usize {
        let loaded = &self.inner.loaded;
        // Evictions by the budget are applied lazily; apply them so the count is exact.
        loaded.run_pending_tasks();
        self.read()
            .values()
            .filter(|e| loaded.contains_key(&e.id))
            .count()
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Requests being served now (counted from admission until the guest is done, body included).
    pub fn in_flight(&self) -> u32 {
        self.inner.inflight.current()
    }

    /// Whether a function of this name is known.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name) || self.app(name).is_some()
    }

    /// The captured output of the function `name` (of all its parts, for one made of them).
    pub fn logs(&self, name: &str) -> Option<Arc<FunctionLogs>> {
        let logs = self.read().get(name).map(|e| e.logs.clone());
        logs.or_else(|| self.app(name).map(|app| app.logs.clone()))
    }

    /// Serves `request` with a fresh instance of the function `name`, loading it first if needed.
    ///
    /// The request's URI should carry the path and query the guest is to see, and an authority (or a
    /// `Host` header). The response is returned as soon as the guest sets it; its body streams. When
    /// the function had to be loaded for this request, the response's extensions hold [`ColdStart`].
    /// A request whose extensions hold a [`Trace`] is traced (see its module).
    pub async fn invoke<B>(
        &self,
        name: &str,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, Error>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let calls_left = Arc::new(std::sync::atomic::AtomicU32::new(
            invoke::MAX_CALLS_PER_REQUEST,
        ));
        self.invoke_at_depth(name, request, 0, calls_left).await
    }

    /// A runtime from its shared state (for the calls functions make to each other).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Runtime {
        Runtime { inner }
    }

    /// The shared state, weakly (a request must not keep the runtime alive).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The observer events go to.
    pub(crate) fn observer(&self) -> &Arc<dyn Observer> {
        &self.inner.observer
    }

    /// [`Runtime::invoke`] for a call `depth` levels deep in a chain of functions calling functions.
    pub(crate) async fn invoke_at_depth<B>(
        &self,
        name: &str,
        request: http::Request<B>,
        depth: u32,
        calls_left: Arc<std::sync::atomic::AtomicU32>,
    ) -> Result<http::Response<ResponseBody>, Error>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut request = request;
        // A function made of parts: its router picks the part.
        let part = match self.app(name) {
            Some(app) => {
                let (mut head, body) = request.into_parts();
                let Some(part) = app.router.route(&mut head) else {
                    return Err(Error::NoRoute {
                        function: name.to_string(),
                        path: head.uri.path().to_string(),
                    });
                };
                request = http::Request::from_parts(head, body);
                Some(part_name(name, &part))
            }
            None => None,
        };
        let entry = self.get(part.as_deref().unwrap_or(name))?;
        entry.last_used.store(self.now_millis(), Ordering::Relaxed);
        let trace = request.extensions_mut().remove::<Trace>();
        let (function, cold) = match self.inner.loaded.get(&entry.id) {
            Some(function) => {
                self.inner.observer.warm_start(&entry.name);
                (function, false)
            }
            None => {
                let load = trace.as_ref().map(|trace| {
                    trace::SpanGuard(trace.child(
                        format!("load {}", entry.name),
                        SpanKind::Internal,
                        vec![KeyValue::new("faas.name", entry.name.to_string())],
                    ))
                });
                let loaded = self.load_entry(&entry, true, load.as_ref()).await;
                if let (Some(span), Err(error)) = (&load, &loaded) {
                    span.0.fail(error.to_string());
                }
                (loaded?, true)
            }
        };
        // The guest's handling, from here to its last body byte; the guest sees it as its parent.
        let handle = trace.map(|trace| {
            let handle = trace.child(
                format!("handle {}", entry.name),
                SpanKind::Internal,
                vec![
                    KeyValue::new("faas.name", entry.name.to_string()),
                    KeyValue::new("faas.coldstart", cold),
                ],
            );
            handle.set_headers(request.headers_mut());
            trace::SpanGuard(handle)
        });
        let config = &self.inner.config;
        let limits = entry.spec.limits;
        let permit = InflightPermit::try_acquire(
            &self.inner.inflight,
            config.max_inflight.unwrap_or(config.max_instances),
            &entry.inflight,
            limits.max_inflight,
        )
        .map_err(|refused| {
            let (scope, limit) = match refused {
                Refused::Runtime(limit) => (InflightScope::Runtime, limit),
                Refused::Function(limit) => (InflightScope::Function, limit),
            };
            Error::TooManyRequests {
                function: entry.name.to_string(),
                scope,
                limit,
            }
        });
        let permit = match permit {
            Ok(permit) => permit,
            Err(error) => {
                if let Some(handle) = &handle {
                    handle.0.fail(error.to_string());
                }
                return Err(error);
            }
        };
        let budget = invoke::Budget {
            memory_bytes: limits
                .memory_bytes
                .unwrap_or(config.default_memory_bytes)
                .min(config.max_memory_bytes),
            timeout: limits
                .timeout
                .unwrap_or(config.default_timeout)
                .min(config.max_timeout),
            permit,
            outbound: self.inner.outbound.clone(),
            stores: self.inner.stores.clone(),
            calls: invoke::Calls {
                runtime: self.downgrade(),
                depth,
                left: calls_left,
            },
            trace: handle.as_ref().map(|handle| handle.0.clone()),
        };
        let outcome = guest::invoke(
            &self.inner.engine,
            &self.inner.observer,
            function,
            budget,
            request,
        )
        .await;
        let mut response = match (outcome, handle) {
            (Ok(response), None) => response,
            (Ok(response), Some(handle)) => {
                handle
                    .0
                    .set_attribute(trace::status_code(response.status()));
                // Ended with the body's last byte (or its failure).
                response.map(|body| body.traced(handle))
            }
            (Err(error), handle) => {
                if let Some(handle) = handle {
                    handle.0.fail(error.to_string());
                }
                return Err(error);
            }
        };
        if cold {
            response.extensions_mut().insert(ColdStart);
        }
        Ok(response)
    }

    /// The entry's compiled function, loading it from its source (or the disk cache) if needed.
    /// Concurrent callers wait for one load; only a request that actually loads (`cold`) counts a cold
    /// start.
    /// `span`, when the request is traced, learns where the code came from.
    async fn load_entry(
        &self,
        entry: &Entry,
        cold: bool,
        span: Option<&trace::SpanGuard>,
    ) -> Result<Arc<Function>, Error> {
        let _loading = entry.loading.lock().await;
        if let Some(function) = self.inner.loaded.get(&entry.id) {
            if let Some(span) = span {
                span.0
                    .set_attribute(KeyValue::new("wasmgate.load.source", "shared"));
            }
            return Ok(function);
        }
        if cold {
            self.inner.observer.cold_start(&entry.name);
        }
        let function = Arc::new(
            self.compile(
                &entry.name,
                None,
                entry.source.clone(),
                entry.spec.clone(),
                entry.logs.clone(),
                span.map(|span| span.0.clone()),
            )
            .await?,
        );
        // A deploy or removal may have replaced this entry meanwhile; its id is then stale and the
        // function is only used by this request.
        if self
            .read()
            .get(&*entry.name)
            .is_some_and(|current| current.id == entry.id)
        {
            self.inner.loaded.insert(entry.id, function.clone());
        }
        Ok(function)
    }

    /// Produces the function from the compiled-code cache when it has it, else by compiling (`wasm`
    /// if given, else what `source` reads) and caching the result. Runs on a blocking thread. A
    /// traced load's `span` gets `wasmgate.load.source`.
    async fn compile(
        &self,
        name: &str,
        wasm: Option<Vec<u8>>,
        source: WasmSource,
        spec: Arc<FunctionSpec>,
        logs: Arc<FunctionLogs>,
        span: Option<Trace>,
    ) -> Result<Function, Error> {
        let inner = self.inner.clone();
        let owned_name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let engine = &inner.engine;
            let cached = match (&inner.cache, source.cache_key()) {
                (Some(cache), Some(key)) => cache.load(engine, key),
                _ => None,
            };
            if let Some(span) = &span {
                let from = if cached.is_some() {
                    "disk_cache"
                } else {
                    "compile"
                };
                span.set_attribute(KeyValue::new("wasmgate.load.source", from));
            }
            let component = match cached {
                Some(component) => component,
                None => {
                    let wasm = match wasm {
                        Some(wasm) => wasm,
                        None => source.read().map_err(|e| {
                            Error::Internal(format!("reading the component of {owned_name}: {e}"))
                        })?,
                    };
                    let started = Instant::now();
                    let component = function::compile_component(engine, &wasm)?;
                    inner
                        .observer
                        .compiled(&owned_name, started.elapsed().as_secs_f64());
                    if let (Some(cache), Some(key)) = (&inner.cache, source.cache_key()) {
                        cache.store(key, &component);
                    }
                    component
                }
            };
            function::pre_instantiate(&inner.linker, &owned_name, &component, spec, logs)
        })
        .await
        .map_err(|e| Error::Internal(format!("the compile thread failed: {e}")))?
    }

    fn entry(
        &self,
        name: &str,
        source: WasmSource,
        spec: Arc<FunctionSpec>,
        logs: Arc<FunctionLogs>,
    ) -> Entry {
        Entry {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            source,
            spec,
            logs,
            loading: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(self.now_millis()),
            inflight: Arc::default(),
        }
    }

    /// The logs of `name`, kept across redeploys.
    fn logs_for(&self, name: &str) -> Arc<FunctionLogs> {
        self.read()
            .get(name)
            .map(|e| e.logs.clone())
            .unwrap_or_else(|| Arc::new(FunctionLogs::new(name, self.inner.config.log_lines)))
    }

    fn get(&self, name: &str) -> Result<Arc<Entry>, Error> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Entry>>> {
        // The map is only ever changed entry by entry, so a poisoned lock still holds a valid map.
        self.inner
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Entry>>> {
        self.inner
            .functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Frees a pool slot by dropping one instance some loaded function keeps idle for reuse; false when
/// none has one (every slot is in use by a request).
pub(crate) fn evict_an_idle_instance(runtime: &std::sync::Weak<Inner>) -> bool {
    let Some(inner) = runtime.upgrade() else {
        return false;
    };
    for (_, function) in inner.loaded.iter() {
        if function.evict_idle() {
            tracing::debug!(function = %function.guest.name, "evicted an idle instance: the pool was full");
            inner.observer.idle_instance_evicted();
            return true;
        }
    }
    false
}
