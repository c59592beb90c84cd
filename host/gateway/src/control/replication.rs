//! What the nodes of a cluster tell each other: [`Replicated`], the state a change leaves (not the
//! request that made it), and [`Replicator`], through which this node publishes its own. The
//! cluster (`cluster/mod.rs`) implements the one and delivers the other nodes' changes as the other,
//! which [`crate::control::Functions::apply_replicated`] turns into changes of its own.

use futures::future::BoxFuture;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::{FunctionRecord, Namespace};

/// A change as a node publishes it: what it leaves, so that applying it twice changes nothing more.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one is made per change and moved twice; a box would only add noise"
)]
pub enum Replicated {
    /// A function was deployed or updated: its record. Its component is in the artifact store by
    /// the record's digest.
    FunctionPut(FunctionRecord),
    /// A function's replicas were set (`/system/scale-function`): its record, whose component is
    /// unchanged. Another node applies it as it applies [`Replicated::FunctionPut`].
    FunctionScaled(FunctionRecord),
    /// A function was removed.
    FunctionRemoved(FunctionRef),
    /// A namespace was created or updated.
    NamespacePut(Namespace),
    /// A namespace (by name) was deleted.
    NamespaceRemoved(String),
    /// A secret was set (`Some`) or deleted (`None`).
    SecretChanged {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its value, if it has one now.
        value: Option<Vec<u8>>,
    },
}

/// Publishes the changes made on this node so that other nodes apply them (see `cluster/mod.rs`).
pub trait Replicator: Send + Sync + 'static {
    /// A function was deployed here: its record, and its component (stored by digest).
    fn function_put(
        &self,
        record: FunctionRecord,
        wasm: Vec<u8>,
    ) -> BoxFuture<'static, anyhow::Result<()>>;
    /// A function's replicas were set here: its record (its component is already shared).
    fn function_scaled(&self, record: FunctionRecord) -> BoxFuture<'static, anyhow::Result<()>>;
    /// A function (`name.namespace`) was removed here.
    fn function_removed(&self, key: String) -> BoxFuture<'static, anyhow::Result<()>>;
    /// A namespace was created or updated here.
    fn namespace_put(&self, namespace: Namespace) -> BoxFuture<'static, anyhow::Result<()>>;
    /// A namespace was deleted here.
    fn namespace_removed(&self, name: String) -> BoxFuture<'static, anyhow::Result<()>>;
    /// A component was uploaded here (`digest` is `sha256:<hex>`).
    fn artifact_put(&self, digest: String, wasm: Vec<u8>)
    -> BoxFuture<'static, anyhow::Result<()>>;
    /// A component some node has (`None` when no node has it).
    fn artifact_get(&self, digest: String) -> BoxFuture<'static, anyhow::Result<Option<Vec<u8>>>>;
    /// Removes the components of the cluster's object store that no function record of the cluster
    /// names and that were stored more than `grace` ago; returns how many it removed.
    fn collect_artifacts(
        &self,
        grace: std::time::Duration,
    ) -> BoxFuture<'static, anyhow::Result<usize>>;
    /// Whether secret values can be shared (sealed) at all; why not, for a 400, when they cannot.
    fn shares_secrets(&self) -> Result<(), String> {
        Ok(())
    }
    /// A secret was set (`Some`) or deleted (`None`) here.
    fn secret_changed(
        &self,
        namespace: String,
        name: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'static, anyhow::Result<()>>;
}
