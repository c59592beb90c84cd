//! What the embedder says about a function besides its code ([`FunctionSpec`], [`Limits`],
//! [`GuestDir`]), and the world its component exports ([`World`]). Plain data.

use crate::outbound::HostPattern;

/// A host directory that a guest sees, read-only, at a path the embedder chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDir {
    /// The directory on the host.
    pub host: std::path::PathBuf,
    /// Where the guest sees it: an absolute path.
    pub guest: String,
}

/// What a function is given besides its code.
#[derive(Debug, Clone, Default)]
pub struct FunctionSpec {
    /// Environment variables the guest sees through `wasi:cli/environment`. Nothing else of the host's
    /// environment reaches the guest.
    pub env: Vec<(String, String)>,
    /// A host directory holding exactly this function's secrets, one file each, and where the guest
    /// sees it (read-only). `None`: no filesystem at all.
    pub secrets: Option<GuestDir>,
    /// A host directory of static files the guest sees, read-only (a Spin component's `files`,
    /// usually at `/`). `None`: none.
    pub files: Option<GuestDir>,
    /// How many requests one instance may serve, one after the other. 0 or 1: a fresh instance for
    /// every request (the default and the isolation wasmgate promises). More trades isolation for
    /// speed: globals, memory and anything a request leaves behind are seen by the next requests on
    /// that instance.
    pub max_instance_reuse: u32,
    /// How many of those requests one instance may serve at the same time, for a WASI 0.3 function
    /// (whose `handle` is async) that reuses instances. 0 or 1: one at a time. More lets requests
    /// that await (a body, a call, a timer) share one instance; they then also share its memory.
    /// A 0.2 function always serves one request at a time.
    pub max_instance_concurrency: u32,
    /// What one request of this function may use; unset fields take the runtime's defaults.
    pub limits: Limits,
    /// Hosts its outbound HTTP requests may reach; empty (the default): none.
    pub allowed_hosts: Vec<HostPattern>,
    /// Its namespace: scopes its key-value buckets, and the functions it may call by name.
    pub namespace: String,
    /// Key-value buckets it may open besides `default` (see [`crate::services`]).
    pub keyvalue_buckets: Vec<String>,
    /// What `wasi:config/store` answers, in order; the first of a repeated key wins.
    pub config: Vec<(String, String)>,
    /// What Spin's variables interface answers (`fermyon:spin/variables`): the component's
    /// variables with their values, in order; the first of a repeated name wins.
    pub spin_variables: Vec<(String, String)>,
    /// The stores Spin's key-value interface may open (`fermyon:spin/key-value`), by label; each is
    /// the key-value bucket of that name in the function's namespace. Any other label is
    /// `access-denied`, as in Spin.
    pub spin_key_value_stores: Vec<String>,
    /// The databases Spin's SQLite interface may open (`fermyon:spin/sqlite`), by label; each is
    /// the embedder's database of that name in the function's namespace
    /// ([`crate::services::SqliteStore`]). Any other label is `access-denied`.
    pub spin_sqlite_databases: Vec<String>,
}

/// Per-function limits. `None` takes the runtime's default ([`crate::RuntimeConfig`]); the caller
/// keeps values within the runtime's maximums (the pool's memory slot bounds memory in any case).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory one instance may grow to. Growing past it fails; the guest usually
    /// traps, and the request answers [`crate::Error::MemoryLimit`].
    pub memory_bytes: Option<u64>,
    /// Wall-clock time one request may take, its streamed body included. Past it the guest is
    /// interrupted (it yields at every epoch tick, so even an endless loop is reached), its instance
    /// is dropped, and the request answers [`crate::Error::Timeout`].
    pub timeout: Option<std::time::Duration>,
    /// Requests of this function served at once; past it [`crate::Error::TooManyRequests`] at once.
    pub max_inflight: Option<u32>,
}

/// The world of `wasi:http` a function's component exports, which decides how it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `wasi:http/incoming-handler@0.2.x`: a synchronous `handle` that answers through a
    /// `response-outparam` (WASI 0.2, the `wasi:http/proxy` world).
    P2,
    /// `wasi:http/handler@0.3.x`: an async `handle` that returns its response, whose body is a
    /// component-model stream (WASI 0.3, the `wasi:http/service` world).
    P3,
}

impl World {
    /// How it is named in the API and the logs: `wasi:http@0.2` or `wasi:http@0.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            World::P2 => "wasi:http@0.2",
            World::P3 => "wasi:http@0.3",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
