//! The control plane: the function registry, namespaces and secrets, and the one way they change.
//!
//! [`Functions`] (`registry.rs`) holds the records and answers questions. Every write is a
//! [`Change`] (`change.rs`) made by [`Functions::apply`] (`apply.rs`), whether this node's API asked
//! for it or another node of the cluster made it; a change made here is then published through the
//! [`Replicator`] (`replication.rs`), and the other nodes' arrive as [`Replicated`] at
//! [`Functions::apply_replicated`]. Each noun keeps its rules in a file of its own: `deploy.rs`
//! (deploy, scale, remove), `namespaces.rs`, `secrets.rs` (and each function's secrets directory),
//! `artifacts.rs` (images, uploads, the artifact store), `collector.rs` (unreferenced components removed
//! after a grace period), `spec.rs` (labels and annotations, and the
//! runtime's `FunctionSpec`), `spin.rs` (Spin apps: their deploy and their router), `spin_files.rs` (their components' static files), `spin_router.rs` (their routing), `sweeper.rs` (scale to zero), `peers.rs` (the other nodes, for replica
//! counts). Failures are an [`Error`] (`error.rs`).

mod apply;
mod artifacts;
mod change;
mod collector;
mod deploy;
mod error;
mod namespaces;
mod peers;
mod registry;
mod replication;
mod secrets;
mod spec;
pub mod spin;
mod spin_files;
mod spin_router;
mod sweeper;

pub use artifacts::DEFAULT_MAX_ARTIFACT_BYTES;
pub use change::{Change, Component, Origin, PutMode, SecretChange};
pub use collector::DEFAULT_ARTIFACT_GRACE;
pub use error::Error;
pub use peers::Peers;
pub use registry::Functions;
pub use replication::{Replicated, Replicator};
