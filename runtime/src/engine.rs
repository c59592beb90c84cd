//! The one wasmtime [`Engine`] of the process and the thread that ticks its epoch.
//!
//! Every limit of the engine is derived here from [`RuntimeConfig`], so there is one place to read to
//! know what a guest may use.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::Error;

/// Instances that may exist at once (one per request being served) when nothing else is said.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
/// The largest linear memory any instance may grow to (the size of a memory slot of the pool), when
/// nothing else is said. Slots are reserved as address space, not memory, so a large maximum is cheap
/// until a guest uses it.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
/// The linear memory a function may use when its deployment sets no limit.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 * 1024 * 1024;
/// How long a request may take when its function sets no limit (OpenFaaS's gateway uses 60 s too).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest time limit a function may ask for, when nothing else is said.
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How often the engine's epoch advances. A running guest yields to other requests on each tick, so
/// this bounds how long one busy guest can hold a worker thread.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);
/// Core instances one component may create. A Rust `wasm32-wasip2` component has a handful (its own
/// module plus the shims of the component model); toolchains that embed an interpreter have more
/// (componentize-py links CPython from several modules: 14 core instances for a hello function).
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Core instance slots of the pool per concurrent instance, on average. Below the maximum on
/// purpose: the slots are reserved up front, and most functions use far fewer than the maximum. When
/// many large components run at once the pool runs out of slots first, which is a 503 like any full
/// pool.
const CORE_INSTANCES_PER_INSTANCE: u32 = 8;
/// Linear memories per component: one for the guest, one spare for toolchains that split theirs.
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables one component may create (function tables of the modules and the component model's
/// shims; a dynamically linked interpreter has one per module).
const MAX_TABLES_PER_COMPONENT: u32 = 32;
/// Table slots of the pool per concurrent instance, on average (see the core instances above).
const TABLES_PER_INSTANCE: u32 = 8;
/// Bytes of each linear memory slot reset with `memset` (and kept resident) when an instance ends,
/// instead of handing the pages back with `madvise`. Every request ends an instance, and on a virtual
/// machine each `madvise` costs a trip to the hypervisor to flush the TLB; a small guest touches far
/// less than this, so the reset is a cheap memset and the next instance takes no page faults.
const MEMORY_KEEP_RESIDENT: usize = 10 * 1024 * 1024;
/// The same for each table slot.
const TABLE_KEEP_RESIDENT: usize = 1024 * 1024;

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocator {
    /// Use the pooling allocator when the address space allows it, else allocate on demand.
    #[default]
    Auto,
    /// The pooling allocator, or fail.
    Pooling,
    /// Allocate each instance's memory when it is created (slower; needs little address space).
    OnDemand,
}

/// The knobs of the runtime. Every field has a named default; see [`RuntimeConfig::default`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may exist at once. Sizes the pool: past it, a request fails rather than waits.
    pub max_instances: u32,
    /// The largest linear memory one instance may have, in bytes: the pool's slot size, and the
    /// ceiling of every per-function limit.
    pub max_memory_bytes: u64,
    /// The memory limit of a function that sets none (at most `max_memory_bytes`).
    pub default_memory_bytes: u64,
    /// The time limit of a request whose function sets none.
    pub default_timeout: Duration,
    /// The ceiling of every per-function time limit.
    pub max_timeout: Duration,
    /// Requests served at once by the whole runtime; past it a request is refused at once
    /// ([`crate::Error::TooManyRequests`]). `None`: `max_instances`, one pool slot per request.
    pub max_inflight: Option<u32>,
    /// How often the epoch ticks (see [`DEFAULT_EPOCH_TICK`]).
    pub epoch_tick: Duration,
    /// Lines of guest output kept per function (see [`crate::logs::DEFAULT_LOG_LINES_KEPT`]).
    pub log_lines: usize,
    /// Pooling or on-demand allocation.
    pub allocator: Allocator,
    /// A folder for compiled code, so a component is compiled once per engine rather than at every
    /// load. `None`: compile every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Memory that loaded functions may take (compiled code plus wasmtime's per-component state, as
    /// estimated by [`crate::LOADED_FUNCTION_OVERHEAD`]); past it the least recently used are unloaded
    /// and load again on their next request.
    pub loaded_memory_budget: u64,
    /// Unload a function nobody called for this long (scale to zero for all). `None`: only the budget
    /// and explicit unloads.
    pub unload_idle_after: Option<Duration>,
}

/// The default of [`RuntimeConfig::loaded_memory_budget`].
pub const DEFAULT_LOADED_MEMORY_BUDGET: u64 = 512 * 1024 * 1024;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            default_memory_bytes: DEFAULT_MEMORY_BYTES,
            default_timeout: DEFAULT_TIMEOUT,
            max_timeout: DEFAULT_MAX_TIMEOUT,
            max_inflight: None,
            epoch_tick: DEFAULT_EPOCH_TICK,
            log_lines: crate::logs::DEFAULT_LOG_LINES_KEPT,
            allocator: Allocator::Auto,
            cache_dir: None,
            loaded_memory_budget: DEFAULT_LOADED_MEMORY_BUDGET,
            unload_idle_after: None,
        }
    }
}

impl RuntimeConfig {
    fn validate(&self) -> Result<(), Error> {
        let fail = |what: &str| {
            Err(Error::Internal(format!(
                "invalid runtime configuration: {what}"
            )))
        };
        if self.max_instances == 0 {
            return fail("max_instances must be at least 1");
        }
        if self.max_memory_bytes < 64 * 1024 {
            return fail("max_memory_bytes must be at least one Wasm page (64 KiB)");
        }
        if self.default_memory_bytes > self.max_memory_bytes {
            return fail("default_memory_bytes must not exceed max_memory_bytes");
        }
        if self.default_timeout.is_zero() || self.default_timeout > self.max_timeout {
            return fail("default_timeout must be more than zero and at most max_timeout");
        }
        if self.max_inflight == Some(0) {
            return fail("max_inflight must be at least 1");
        }
        if self.epoch_tick.is_zero() {
            return fail("epoch_tick must be more than zero");
        }
        Ok(())
    }
}

/// Which allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Instances come from a pool reserved at start-up.
    Pooling,
    /// Instances allocate their memory when created.
    OnDemand,
}

/// Settings shared by both allocators.
fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3 components use the component model's async ABI, streams and futures.
    config.wasm_component_model_async(true);
    // Guests are interrupted through the epoch, never through fuel: epochs cost a load and a compare
    // at loop heads and function entries, fuel costs far more.
    config.epoch_interruption(true);
    // Linear memories start as copy-on-write mappings of the module's data segments, so an
    // instance does not copy its initial memory.
    config.memory_init_cow(true);
    config
}

fn pooling_config(runtime: &RuntimeConfig) -> PoolingAllocationConfig {
    let instances = runtime.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_INSTANCE))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_INSTANCE))
        // One fiber stack per instance: each request runs its guest on its own stack.
        .total_stacks(instances)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_memory_size(usize::try_from(runtime.max_memory_bytes).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        // With PAGEMAP_SCAN (Linux 6.7+) wasmtime asks the kernel which pages an instance dirtied and
        // resets only those, beyond the resident part too, instead of decommitting the whole slot;
        // but only where the scan can tell untouched pages from written ones (see `pagemap.rs`).
        .pagemap_scan(pagemap_scan());
    pool
}

/// The scan where it is precise; elsewhere none, which resets the same bytes without its cost.
fn pagemap_scan() -> Enabled {
    static PRECISE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *PRECISE.get_or_init(crate::pagemap::scan_is_precise) {
        Enabled::Auto
    } else {
        tracing::debug!("PAGEMAP_SCAN counts untouched pages as written here; not using it");
        Enabled::No
    }
}

/// Builds the engine, trying the pooling allocator first when `Auto` allows a fall back.
///
/// The pool reserves its address space when the engine is created (several GiB of virtual memory per
/// memory slot, for guard pages), which fails under a tight `ulimit -v` or on small 32-bit address
/// spaces. That failure is the probe.
pub(crate) fn build_engine(runtime: &RuntimeConfig) -> Result<(Engine, AllocatorKind), Error> {
    runtime.validate()?;
    let on_demand = || {
        let mut config = base_config();
        config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        Engine::new(&config)
            .map(|engine| (engine, AllocatorKind::OnDemand))
            .map_err(|e| Error::internal("creating the engine", &e))
    };
    if runtime.allocator == Allocator::OnDemand {
        return on_demand();
    }
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(runtime)));
    match Engine::new(&config) {
        Ok(engine) => Ok((engine, AllocatorKind::Pooling)),
        Err(error) if runtime.allocator == Allocator::Auto => {
            tracing::warn!(
                error = %format!("{error:#}"),
                "the pooling allocator is not available here; allocating instances on demand"
            );
            on_demand()
        }
        Err(error) => Err(Error::internal("creating the pooling allocator", &error)),
    }
}

/// Advances the engine's epoch every tick on a thread of its own, until dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    // Dropping the sender wakes the thread at once and tells it to stop.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    engine: Engine,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<Self, Error> {
        let (stop, stopped) = mpsc::channel::<()>();
        let ticking = engine.clone();
        let thread = thread::Builder::new()
            .name("wasmgate-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::Internal(format!("starting the epoch thread: {e}")))?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
            engine: ticking,
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // One last tick, so a guest still running somewhere reaches its epoch callback, finds the
        // runtime gone and traps (see `guest::yield_while_alive`).
        self.engine.increment_epoch();
    }
}
