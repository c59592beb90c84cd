//! The control plane: the function registry, namespaces and secrets ([`functions`]), and what goes
//! wrong in it ([`error`]).

pub mod error;
pub mod functions;

pub use error::Error;
