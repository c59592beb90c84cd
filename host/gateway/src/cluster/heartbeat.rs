//! Each node's heartbeat in the `wasmgate-nodes` bucket, and the count of live nodes.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Cluster, HEARTBEAT, spawn_until};

impl Cluster {
    /// Writes this node's heartbeat every [`HEARTBEAT`] and counts the nodes whose heartbeat has not
    /// expired.
    pub(super) fn heartbeat(self: &Arc<Self>, stop: CancellationToken) {
        let cluster = self.clone();
        spawn_until(stop, async move {
            let started =
                wasmgate_openfaas::time::format_rfc3339(std::time::SystemTime::now(), false);
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                let beat = serde_json::json!({"node": cluster.node, "startedAt": started});
                if let Err(error) = cluster
                    .nodes_kv
                    .put(&cluster.node, Bytes::from(beat.to_string()))
                    .await
                {
                    tracing::warn!(%error, "cannot write this node's heartbeat");
                    continue;
                }
                match cluster.nodes_kv.keys().await {
                    Ok(keys) => {
                        let live = keys.filter_map(|k| async move { k.ok() }).count().await;
                        cluster
                            .live
                            .store(live.max(1) as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "cannot count the live nodes"),
                }
            }
        });
    }
}
