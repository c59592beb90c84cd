//! The changes of the control plane, as data. Every write to the registry is a [`Change`], and
//! [`crate::control::Functions::apply`] (in `apply.rs`) is the one function that makes it, whether a
//! client of this node asked for it ([`Origin::Local`]) or another node of the cluster made it
//! ([`Origin::Remote`]). Also which function a deployment names, and whether its mode allows it.

use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::{FunctionDeployment, Namespace};

use super::error::Error;

/// A change to the functions, namespaces or secrets of the gateway.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one is made per API call or replicated change and moved twice; a box would only add noise"
)]
pub enum Change {
    /// Deploys or updates a function.
    Deploy {
        /// What to deploy; its namespace, when absent, is the default one.
        deployment: FunctionDeployment,
        /// Whether the function must be new, must exist, or either.
        mode: PutMode,
        /// Where its component comes from.
        component: Component,
    },
    /// Sets a function's replicas: 0 unloads its compiled code, more loads it. Published: every
    /// node of a cluster sets the same.
    Scale {
        /// The function.
        function: FunctionRef,
        /// The replicas it should have.
        replicas: u64,
    },
    /// Removes a function.
    Remove {
        /// The function.
        function: FunctionRef,
    },
    /// Creates or updates a namespace.
    PutNamespace {
        /// The namespace, whole.
        namespace: Namespace,
        /// Whether it must be new, must exist, or either.
        mode: PutMode,
    },
    /// Deletes an empty namespace (never the default one).
    DeleteNamespace {
        /// Its name.
        name: String,
    },
    /// Creates, updates or deletes a secret, then refreshes the functions that use it.
    Secret {
        /// The secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What happens to it.
        change: SecretChange,
    },
}

impl Change {
    /// A deploy whose component is read from the deployment's `image`.
    pub fn deploy(deployment: FunctionDeployment, mode: PutMode) -> Change {
        Change::Deploy {
            deployment,
            mode,
            component: Component::Image,
        }
    }
}

/// Whether a put creates or updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// It must not exist (POST).
    Create,
    /// It must exist (PUT).
    Update,
    /// Either: create or update (a stack file at start-up, a change from another node).
    Upsert,
}

/// Where a deployed function's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// Read from the deployment's `image`: an uploaded artifact (`sha256:...`), an OCI reference, or
    /// a `.wasm` path.
    Image,
    /// Already in this node's artifact store under this digest (another node read the image).
    Stored(Digest),
    /// Read from the deployment's `image` already, before the write lock was taken (`apply.rs`),
    /// so that a slow registry holds up no other change.
    Fetched {
        /// The component.
        bytes: Vec<u8>,
        /// Its digest.
        digest: Digest,
    },
}

/// A change to a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    /// Create with this value; a conflict if it exists.
    Create(Vec<u8>),
    /// Replace the value; not found if absent.
    Update(Vec<u8>),
    /// Delete; not found if absent.
    Delete,
}

/// Where a change comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client of this node: published to the other nodes after it is applied.
    Local,
    /// Another node: applied only (its component is already in the artifact store).
    Remote,
}

/// Whether a deploy in `mode` may go ahead, given whether the function `exists`.
pub(super) fn check_mode(function: &FunctionRef, mode: PutMode, exists: bool) -> Result<(), Error> {
    match (mode, exists) {
        (PutMode::Update, false) => Err(Error::NotFound(format!("function {function}"))),
        (PutMode::Create, true) => Err(Error::invalid(format!(
            "function {function} already exists; update it with PUT"
        ))),
        _ => Ok(()),
    }
}

/// The function a deployment names; its namespace, when absent, is the default one.
pub(super) fn function_of(deployment: &FunctionDeployment) -> Result<FunctionRef, Error> {
    Ok(FunctionRef::new(
        &deployment.service,
        deployment.namespace.as_deref(),
    )?)
}
