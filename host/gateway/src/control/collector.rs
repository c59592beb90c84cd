//! Collection of components no function references: after an update or a removal, the old
//! component (and its compiled code) is removed from the artifact store, and in cluster mode from
//! the object store, once it is older than a grace period. The grace keeps an upload that its deploy
//! has not named yet (`wasmgate deploy` and `faas-cli` upload first, then deploy); storing the same
//! bytes again starts its grace again.
//!
//! Locally the check runs under the registry's write lock, so no deploy can name a component
//! between the check and the removal. Across a cluster, a component uploaded more than the grace
//! period ago and never deployed may be removed while another node deploys it: that deploy then
//! fails to fetch it on the other nodes until it is uploaded again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmgate_openfaas::digest::Digest;

use super::registry::Functions;

/// How long one collection of the cluster's object store may take.
const CLUSTER_COLLECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a component no function references is kept (`--artifact-grace`).
pub const DEFAULT_ARTIFACT_GRACE: Duration = Duration::from_secs(60 * 60);

impl Functions {
    /// Collects unreferenced components every half `grace` (between 1 s and 10 min) until `stop`.
    pub fn collect_in_background(self: &Arc<Self>, grace: Duration, stop: CancellationToken) {
        let every = (grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(600));
        let functions = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => functions.collect_artifacts(grace).await,
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// Removes the components that no function references and that were stored more than `grace`
    /// ago, with their compiled code; in cluster mode, from the object store too.
    pub async fn collect_artifacts(&self, grace: Duration) {
        let removed = {
            let _writes = self.writes.lock().await;
            let referenced: HashSet<String> = self
                .read_records()
                .values()
                .flat_map(super::spin::record_digests)
                .collect();
            let state = self.state.clone();
            let collected = tokio::task::spawn_blocking(move || {
                let mut removed: Vec<Digest> = Vec::new();
                for digest in state.list_artifacts()? {
                    let unused = !referenced.contains(&digest.to_string());
                    let old = state.artifact_age(&digest).is_some_and(|age| age >= grace);
                    if unused && old && state.delete_artifact(&digest)? {
                        removed.push(digest);
                    }
                }
                Ok::<_, crate::storage::state::StateError>(removed)
            })
            .await;
            match collected {
                Ok(Ok(removed)) => removed,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "collecting unreferenced components failed");
                    Vec::new()
                }
                Err(error) => {
                    tracing::warn!(%error, "collecting unreferenced components failed");
                    Vec::new()
                }
            }
        };
        tracing::debug!(
            removed = removed.len(),
            "collected this node's unreferenced components"
        );
        for digest in &removed {
            self.runtime.forget_compiled(digest.hex());
            self.spin_files.remove(digest);
            tracing::info!(%digest, "removed a component no function references");
        }
        if let Some(replicator) = self.replicator.get() {
            // A NATS that does not answer must not hold up the next round's local collection.
            match tokio::time::timeout(CLUSTER_COLLECT_TIMEOUT, replicator.collect_artifacts(grace))
                .await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(
                    removed = n,
                    "removed components no function of the cluster references from the object store"
                ),
                Ok(Err(error)) => tracing::warn!(error = %format!("{error:#}"),
                    "collecting the cluster's unreferenced components failed"),
                Err(_) => {
                    tracing::warn!("collecting the cluster's unreferenced components timed out")
                }
            }
        }
    }
}
