//! The errors of the runtime: exactly the cases a caller must tell apart.
//!
//! Wasmtime's own errors are turned into these in one place ([`Error::from_guest_failure`] and the
//! constructors below), so no wasmtime type crosses this crate's boundary.

/// The bound a request in flight counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightScope {
    /// The function's own `max_inflight`.
    Function,
    /// The runtime's `max_inflight`, shared by all functions.
    Runtime,
}

/// Why a function could not be loaded or could not answer a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No function of that name is loaded.
    #[error("function {0:?} not found")]
    NotFound(String),

    /// The function is made of parts and none of them serves this path (see `app.rs`).
    #[error("no route of {function:?} matches {path}")]
    NoRoute {
        /// The function asked for.
        function: String,
        /// The path nothing matched.
        path: String,
    },

    /// The bytes given are not a component this runtime can run; `reason` says what to do about it.
    #[error("invalid component: {reason}")]
    InvalidComponent {
        /// What is wrong, in words a person can act on (for example, the import that is missing).
        reason: String,
    },

    /// The guest trapped (a panic, an out-of-bounds access, an interrupt...) before it answered.
    #[error("function {function:?} failed: {message}")]
    Trap {
        /// The function that trapped.
        function: String,
        /// The trap and, where known, the guest backtrace.
        message: String,
    },

    /// The guest returned without ever setting a response.
    #[error("function {function:?} returned without sending a response")]
    NoResponse {
        /// The function that did not answer.
        function: String,
    },

    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("function {function:?} answered with an error: {code}")]
    GuestError {
        /// The function that answered.
        function: String,
        /// The `wasi:http/types.error-code` it chose, formatted.
        code: String,
    },

    /// The request ran past its time limit; the guest was interrupted and its instance dropped.
    #[error("function {function:?} timed out after {limit:?}")]
    Timeout {
        /// The function that ran too long.
        function: String,
        /// The limit it reached.
        limit: std::time::Duration,
    },

    /// The guest tried to grow its memory past its limit, and failed because of it.
    #[error(
        "function {function:?} exceeded its memory limit of {limit} bytes (it asked for {wanted})"
    )]
    MemoryLimit {
        /// The function that ran out of memory.
        function: String,
        /// Its limit in bytes.
        limit: u64,
        /// The memory size, in bytes, that was refused.
        wanted: u64,
    },

    /// Too many requests at once, of this function or of the whole runtime.
    #[error("too many requests in flight ({scope:?} limit {limit}) for {function:?}")]
    TooManyRequests {
        /// The function asked for.
        function: String,
        /// Which bound was reached.
        scope: InflightScope,
        /// The bound.
        limit: u32,
    },

    /// Every instance slot of the pool is taken; try again shortly.
    #[error("no instance slot free for {function:?}: {reason}")]
    Busy {
        /// The function asked for.
        function: String,
        /// wasmtime's words for the limit reached.
        reason: String,
    },

    /// The host could not set up what the request needed (engine, pool, store).
    #[error("the runtime could not run the request: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidComponent {
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(context: &str, error: &wasmtime::Error) -> Self {
        Error::Internal(format!("{context}: {error:#}"))
    }

    /// A guest call that failed: a trap, or something the host hit while serving it.
    ///
    /// The message is one line (the trap, or the error chain); the guest's backtrace, which spans many
    /// lines, is logged separately at debug level.
    pub(crate) fn from_guest_failure(function: &str, error: &wasmtime::Error) -> Self {
        if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
            tracing::debug!(function, %backtrace, "guest backtrace");
        }
        if let Some(limit) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return Error::Busy {
                function: function.to_string(),
                reason: limit.to_string(),
            };
        }
        let message = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        };
        Error::Trap {
            function: function.to_string(),
            message,
        }
    }
}
