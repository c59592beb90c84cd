//! The one write path. [`Functions::apply`] makes every [`Change`]: it checks what needs nothing but
//! the change itself, reads a deploy's component (a pull from a registry holds no lock), takes the
//! write lock (one change at a time, so records, secrets directories
//! and the runtime move together), has the noun make it (`deploy.rs`, `namespaces.rs`,
//! `secrets.rs`), and then, for a change made here and in cluster mode, publishes what it left
//! ([`Replicated`]) to the other nodes while still holding the lock, so that they see this node's
//! changes in the order it made them.
//!
//! [`Functions::apply_replicated`] is the way in for the other nodes' changes: it works out the
//! [`Change`] (if any) that brings this node to the state another node published, and makes it
//! through the same [`Functions::apply`], as [`Origin::Remote`].

use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::types::Namespace;

use super::change::function_of;
use super::change::{Change, Component, Origin, PutMode, SecretChange};
use super::error::Error;
use super::registry::Functions;
use super::replication::{Replicated, Replicator};
use super::{namespaces, secrets};

/// The checks that need nothing but the change, made before waiting for the lock.
fn check(change: &Change) -> Result<(), Error> {
    match change {
        Change::Deploy { deployment, .. } => {
            function_of(deployment)?;
            if deployment.image.trim().is_empty() {
                return Err(Error::invalid("image is required"));
            }
            Ok(())
        }
        Change::PutNamespace { namespace, .. } => namespaces::check_name(&namespace.name),
        Change::Secret { name, .. } => secrets::check_name(name),
        Change::Scale { .. } | Change::Remove { .. } | Change::DeleteNamespace { .. } => Ok(()),
    }
}

impl Functions {
    /// Makes `change`, and publishes it to the other nodes when it was made here
    /// ([`Origin::Local`]) in cluster mode. A change that fails leaves nothing behind; one that
    /// fails to be published is in effect on this node (the error says so).
    pub async fn apply(&self, change: Change, origin: Origin) -> Result<(), Error> {
        check(&change)?;
        if origin == Origin::Local
            && matches!(change, Change::Secret { .. })
            && let Some(replicator) = self.replicator.get()
        {
            replicator.shares_secrets().map_err(Error::invalid)?;
        }
        // The component is read before the lock: an OCI pull may take minutes, and no other change
        // (another deploy, a scale, another node's change) should wait for it.
        let change = match change {
            // A Spin app's components are read under the lock (`spin.rs`).
            Change::Deploy {
                deployment,
                mode,
                component: Component::Image,
            } if !super::spin::is_spin(&deployment) => {
                let (bytes, digest) = self.resolve_image(&deployment.image).await?;
                let digest = digest.unwrap_or_else(|| Digest::of(&bytes));
                Change::Deploy {
                    deployment,
                    mode,
                    component: Component::Fetched { bytes, digest },
                }
            }
            other => other,
        };
        let _writes = self.writes.lock().await;
        let left = match change {
            Change::Deploy {
                deployment,
                mode,
                component,
            } => Some(
                self.deploy_locked(deployment, mode, component, origin)
                    .await?,
            ),
            Change::Scale { function, replicas } => Some(self.scale_locked(&function, replicas)?),
            Change::Remove { function } => Some(self.remove_locked(&function, origin)?),
            Change::PutNamespace { namespace, mode } => {
                Some(self.put_namespace_locked(namespace, mode)?)
            }
            Change::DeleteNamespace { name } => Some(self.delete_namespace_locked(&name)?),
            Change::Secret {
                namespace,
                name,
                change,
            } => Some(self.change_secret_locked(&namespace, &name, change)?),
        };
        // Before publishing: a failure to publish leaves the change in effect here.
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        if origin == Origin::Local
            && let Some(replicator) = self.replicator.get()
            && let Some(left) = left
        {
            self.publish(replicator.as_ref(), left).await?;
        }
        Ok(())
    }

    /// Tells the other nodes what a change made here left.
    async fn publish(&self, replicator: &dyn Replicator, left: Replicated) -> Result<(), Error> {
        let (context, published) = match left {
            Replicated::FunctionPut(record) => {
                let digest = Digest::parse(&record.digest)
                    .ok_or_else(|| Error::internal("publishing", "a bad digest"))?;
                let wasm = self.state.read_artifact(&digest)?.unwrap_or_default();
                (
                    "publishing the deploy to the cluster (it is live on this node)",
                    replicator.function_put(record, wasm),
                )
            }
            Replicated::FunctionScaled(record) => (
                "publishing the scale to the cluster (it is in effect on this node)",
                replicator.function_scaled(record),
            ),
            Replicated::FunctionRemoved(function) => (
                "publishing the removal to the cluster (it is gone from this node)",
                replicator.function_removed(function.key()),
            ),
            Replicated::NamespacePut(namespace) => (
                "publishing the namespace to the cluster",
                replicator.namespace_put(namespace),
            ),
            Replicated::NamespaceRemoved(name) => (
                "publishing the namespace's removal to the cluster",
                replicator.namespace_removed(name),
            ),
            Replicated::SecretChanged {
                namespace,
                name,
                value,
            } => (
                "publishing the secret to the cluster",
                replicator.secret_changed(namespace, name, value),
            ),
        };
        published
            .await
            .map_err(|e| Error::internal(context, format!("{e:#}")))
    }

    /// Brings this node to the state another node published, unless it is there already; returns
    /// whether anything changed. A function's component must be in the artifact store already (see
    /// [`Functions::store_artifact`]); a namespace that a function or a secret names is created here
    /// if missing. Nothing is published again.
    pub async fn apply_replicated(&self, replicated: Replicated) -> Result<bool, Error> {
        let change = match replicated {
            Replicated::FunctionPut(record) | Replicated::FunctionScaled(record) => {
                let function = function_of(&record.deployment)?;
                let local = self.read_records().get(&function.key()).cloned();
                if let Some(local) = local
                    && local.digest == record.digest
                    && serde_json::to_value(&local.deployment).ok()
                        == serde_json::to_value(&record.deployment).ok()
                {
                    // The same deployment: only its replicas may differ (a scale).
                    if local.replicas == record.replicas {
                        return Ok(false);
                    }
                    let scale = Change::Scale {
                        function,
                        replicas: record.replicas,
                    };
                    self.apply(scale, Origin::Remote).await?;
                    return Ok(true);
                }
                self.ensure_namespace(&function.namespace).await;
                let digest = Digest::parse(&record.digest).ok_or_else(|| {
                    Error::invalid(format!("a record with a bad digest {:?}", record.digest))
                })?;
                Change::Deploy {
                    deployment: record.deployment,
                    mode: PutMode::Upsert,
                    component: Component::Stored(digest),
                }
            }
            Replicated::FunctionRemoved(function) => {
                return match self
                    .apply(Change::Remove { function }, Origin::Remote)
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(Error::NotFound(_)) => Ok(false),
                    Err(error) => Err(error),
                };
            }
            Replicated::NamespacePut(namespace) => {
                if self.namespace(&namespace.name).as_ref() == Some(&namespace) {
                    return Ok(false);
                }
                Change::PutNamespace {
                    namespace,
                    mode: PutMode::Upsert,
                }
            }
            Replicated::NamespaceRemoved(name) => {
                if !self.namespace_exists(&name) {
                    return Ok(false);
                }
                Change::DeleteNamespace { name }
            }
            Replicated::SecretChanged {
                namespace,
                name,
                value,
            } => {
                let current = self.state.read_secret(&namespace, &name)?;
                let change = match (value, current) {
                    (None, None) => return Ok(false),
                    (None, Some(_)) => SecretChange::Delete,
                    (Some(value), Some(current)) if value == current => return Ok(false),
                    (Some(value), Some(_)) => SecretChange::Update(value),
                    (Some(value), None) => SecretChange::Create(value),
                };
                self.ensure_namespace(&namespace).await;
                Change::Secret {
                    namespace,
                    name,
                    change,
                }
            }
        };
        self.apply(change, Origin::Remote).await?;
        Ok(true)
    }

    /// Creates the namespace `name`, empty, if it is missing: another node's function or secret
    /// may arrive before its namespace does.
    async fn ensure_namespace(&self, name: &str) {
        if self.namespace_exists(name) {
            return;
        }
        let namespace = Namespace {
            name: name.to_string(),
            ..Namespace::default()
        };
        // Another change may have created it meanwhile; then it stays as it is.
        let _ = self
            .apply(
                Change::PutNamespace {
                    namespace,
                    mode: PutMode::Create,
                },
                Origin::Remote,
            )
            .await;
    }
}
