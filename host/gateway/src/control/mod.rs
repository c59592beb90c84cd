//! The control plane: the function registry, namespaces and secrets ([`functions`]).

pub mod functions;
