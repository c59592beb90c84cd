//! The errors of the runtime: exactly the cases a caller must tell apart.
//!
//! Wasmtime's own errors are turned into these in one place ([`Error::from_guest_failure`] and the
//! constructors below), so no wasmtime type crosses this crate's boundary.

/// Why a function could not be loaded or could not answer a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No function of that name is loaded.
    #[error("function {0:?} not found")]
    NotFound(String),

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
        let message = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("wasm trap: {trap}"),
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
