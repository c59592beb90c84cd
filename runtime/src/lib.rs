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
//! 2. [`Runtime::load`] a function by name: its component is compiled once, on a blocking thread, and
//!    pre-instantiated against the host's imports (`wasi:http/proxy` plus the `wasi:cli` family that
//!    ordinary toolchains import). A bad component is rejected with [`Error::InvalidComponent`].
//!    Loading a name again replaces the function atomically: requests already running finish on the
//!    old version.
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

mod body;
mod engine;
mod error;
mod function;
mod invoke;
pub mod logs;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::Linker;

pub use crate::body::{BodyError, ResponseBody};
pub use crate::engine::{
    Allocator, AllocatorKind, DEFAULT_EPOCH_TICK, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_MEMORY_BYTES,
    RuntimeConfig,
};
pub use crate::error::Error;
use crate::function::Function;
pub use crate::function::FunctionSpec;
use crate::invoke::RequestState;
use crate::logs::FunctionLogs;

/// Loads functions and serves requests with them. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    allocator: AllocatorKind,
    linker: Linker<RequestState>,
    config: RuntimeConfig,
    functions: RwLock<HashMap<String, Arc<Function>>>,
    // Dropped last among the fields that matter: stops the epoch thread when the runtime goes away.
    _ticker: engine::EpochTicker,
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
        let (engine, allocator) = engine::build_engine(&config)?;
        let mut linker = Linker::new(&engine);
        // All of WASI 0.2 (the `wasi:cli` family that language toolchains import, a filesystem with
        // nothing in it, sockets with every address denied) plus `wasi:http`.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::internal("adding WASI to the linker", &e))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::internal("adding wasi:http to the linker", &e))?;
        let ticker = engine::EpochTicker::start(engine.clone(), config.epoch_tick)?;
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
                functions: RwLock::new(HashMap::new()),
                _ticker: ticker,
            }),
        })
    }

    /// The allocator the engine uses (pooling unless the address space did not allow it).
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator
    }

    /// Compiles `wasm` and makes it the function `name`, replacing any function of that name. The
    /// compilation runs on a blocking thread, never on an async worker.
    pub async fn load(&self, name: &str, wasm: Vec<u8>, spec: FunctionSpec) -> Result<(), Error> {
        // A redeployed function keeps its log history.
        let logs = self
            .read()
            .get(name)
            .map(|f| f.logs.clone())
            .unwrap_or_else(|| Arc::new(FunctionLogs::new(name, self.inner.config.log_lines)));
        let inner = self.inner.clone();
        let owned_name = name.to_string();
        let function = tokio::task::spawn_blocking(move || {
            function::compile(&inner.engine, &inner.linker, &owned_name, &wasm, spec, logs)
        })
        .await
        .map_err(|e| Error::Internal(format!("the compile thread failed: {e}")))??;
        self.write().insert(name.to_string(), Arc::new(function));
        Ok(())
    }

    /// Removes the function `name`; requests already running finish. Returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// The names of the loaded functions, sorted.
    pub fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether a function of this name is loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// The captured output of the function `name`.
    pub fn logs(&self, name: &str) -> Option<Arc<FunctionLogs>> {
        self.read().get(name).map(|f| f.logs.clone())
    }

    /// Serves `request` with a fresh instance of the function `name`.
    ///
    /// The request's URI should carry the path and query the guest is to see, and an authority (or a
    /// `Host` header). The response is returned as soon as the guest sets it; its body streams.
    pub async fn invoke<B>(
        &self,
        name: &str,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, Error>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let function = self
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        invoke::invoke(
            &self.inner.engine,
            function,
            self.inner.config.max_memory_bytes,
            request,
        )
        .await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Function>>> {
        // The map is only ever replaced entry by entry, so a poisoned lock still holds a valid map.
        self.inner
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Function>>> {
        self.inner
            .functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }
}
