//! The control plane's errors: the cases a caller must tell apart (the request is wrong, what it
//! names is missing, what it would create exists, or this side failed), each with a reason a person
//! can act on. The management API turns them into HTTP statuses in one place
//! ([`crate::http::error`]); the cluster, the queue and the start-up path show their text.

use wasmgate_openfaas::names::NameError;
use wasmgate_runtime::Error as RuntimeError;

use crate::storage::state::StateError;

/// Why a change to, or a question of, the control plane failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is wrong: a bad name, a namespace or secret that does not exist, an invalid
    /// component or setting. The text says what to fix.
    #[error("{0}")]
    InvalidInput(String),
    /// What the request names does not exist; the text is what it names (`function hello.openfaas-fn`).
    #[error("{0} not found")]
    NotFound(String),
    /// What the request would create exists already; the text is what it names.
    #[error("{0} already exists")]
    Conflict(String),
    /// The state directory's disk is full, or its quota is reached, while writing what the text
    /// says. Nothing was changed (every write is whole or absent: `storage/state.rs`), and the same
    /// request works once space is freed.
    #[error(
        "no space left in the state directory ({0}); nothing was changed: free some space and try again"
    )]
    NoSpace(String),
    /// This side failed while doing `context` (logged when the error was made).
    #[error("{context}: {detail}")]
    Internal {
        /// What was being done.
        context: &'static str,
        /// What went wrong.
        detail: String,
    },
}

impl Error {
    /// The request is wrong, for `reason`.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidInput(reason.into())
    }

    /// This side failed while doing `context`; logged at once, since the caller only shows the text.
    pub fn internal(context: &'static str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Error::Internal {
            context,
            detail: error.to_string(),
        }
    }

    /// The same error, its text prefixed with what it was about (`component front: ...`).
    pub(crate) fn context(self, about: &str) -> Self {
        match self {
            Error::InvalidInput(text) => Error::InvalidInput(format!("{about}: {text}")),
            Error::NotFound(text) => Error::NotFound(format!("{about}: {text}")),
            Error::Conflict(text) => Error::Conflict(format!("{about}: {text}")),
            other => other,
        }
    }

    /// The runtime's answer to validating or compiling a component: an invalid component is the
    /// client's mistake, anything else is this side's.
    pub(crate) fn compiling(error: RuntimeError) -> Self {
        match error {
            RuntimeError::InvalidComponent { reason } => {
                Error::InvalidInput(format!("invalid component: {reason}"))
            }
            other => Error::internal("compiling the component", other),
        }
    }
}

impl From<NameError> for Error {
    fn from(error: NameError) -> Self {
        Error::InvalidInput(error.to_string())
    }
}

impl From<StateError> for Error {
    fn from(error: StateError) -> Self {
        match error {
            StateError::InvalidName(name) => Error::InvalidInput(format!("invalid name {name:?}")),
            StateError::Exists(what) => Error::Conflict(what),
            StateError::NotFound(what) => Error::NotFound(what),
            StateError::Io { context, source } if is_no_space(&source) => {
                tracing::warn!(%context, error = %source, "the state directory is full");
                Error::NoSpace(format!("{context}: {source}"))
            }
            other => Error::internal("state directory", format!("{other:#}")),
        }
    }
}

/// Whether an I/O error says the disk (or the quota) is full.
pub(crate) fn is_no_space(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_s_refusals_keep_their_kind_and_text() {
        let cases = [
            (
                StateError::InvalidName("namespace \"a/b\"".into()),
                Error::InvalidInput(r#"invalid name "namespace \"a/b\"""#.into()),
                r#"invalid name "namespace \"a/b\"""#,
            ),
            (
                StateError::Exists("x".into()),
                Error::Conflict("x".into()),
                "x already exists",
            ),
            (
                StateError::NotFound("y".into()),
                Error::NotFound("y".into()),
                "y not found",
            ),
            (
                StateError::Io {
                    context: "writing f".into(),
                    source: std::io::Error::other("disk full"),
                },
                Error::Internal {
                    context: "state directory",
                    detail: "writing f".into(),
                },
                "state directory: writing f",
            ),
            (
                StateError::Io {
                    context: "writing f".into(),
                    source: std::io::Error::from_raw_os_error(28),
                },
                Error::NoSpace("writing f: No space left on device (os error 28)".into()),
                "no space left in the state directory (writing f: No space left on device (os \
                 error 28)); nothing was changed: free some space and try again",
            ),
        ];
        for (state, expected, text) in cases {
            let error = Error::from(state);
            assert_eq!(error, expected);
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn an_invalid_component_is_the_client_s_mistake() {
        let invalid = Error::compiling(RuntimeError::InvalidComponent {
            reason: "not a component".into(),
        });
        assert_eq!(
            invalid,
            Error::InvalidInput("invalid component: not a component".into())
        );
        let ours = Error::compiling(RuntimeError::NotFound("f".into()));
        assert!(
            matches!(
                &ours,
                Error::Internal {
                    context: "compiling the component",
                    ..
                }
            ),
            "{ours:?}"
        );
        assert_eq!(
            ours.to_string(),
            "compiling the component: function \"f\" not found"
        );
    }
}
