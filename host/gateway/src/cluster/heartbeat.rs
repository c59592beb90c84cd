//! Each node's heartbeat in the `wasmgate-nodes` bucket: its name, when it started, and the
//! functions that can sleep (scale to zero) it has awake. After writing its own, a node reads the
//! others' and puts what they say in its [`Peers`] (`control/peers.rs`), from which the replica
//! counts come.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Cluster, HEARTBEAT, spawn_until};
use crate::control::Functions;

/// What a node writes for itself.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Beat {
    node: String,
    started_at: String,
    /// The functions (`name.namespace`) that can sleep and are awake on the node.
    #[serde(default)]
    awake: Vec<String>,
}

impl Cluster {
    /// Writes this node's heartbeat every [`HEARTBEAT`], then reads the live nodes' heartbeats
    /// (the entries that have not expired) into [`Peers`]. Stops when `stop` is cancelled.
    pub(super) fn heartbeat(self: &Arc<Self>, functions: Arc<Functions>, stop: CancellationToken) {
        let cluster = self.clone();
        spawn_until(stop, async move {
            let started_at =
                wasmgate_openfaas::time::format_rfc3339(std::time::SystemTime::now(), false);
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                let beat = Beat {
                    node: cluster.node.clone(),
                    started_at: started_at.clone(),
                    awake: fitting(functions.awake_sleepers(), cluster.max_payload / 2),
                };
                let value = match serde_json::to_vec(&beat) {
                    Ok(value) => Bytes::from(value),
                    Err(error) => {
                        tracing::warn!(%error, "cannot write this node's heartbeat");
                        continue;
                    }
                };
                if let Err(error) = cluster.nodes_kv.put(&cluster.node, value).await {
                    tracing::warn!(%error, "cannot write this node's heartbeat");
                    continue;
                }
                match cluster.read_peers().await {
                    Ok((live, awake_elsewhere)) => cluster.peers.update(live, awake_elsewhere),
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "cannot read the other nodes' heartbeats")
                    }
                }
            }
        });
    }

    /// The live nodes (this one included) and, per function, how many other nodes have it awake.
    async fn read_peers(&self) -> anyhow::Result<(u64, HashMap<String, u64>)> {
        let keys: Vec<String> = self
            .nodes_kv
            .keys()
            .await?
            .filter_map(|k| async move { k.ok() })
            .collect()
            .await;
        let mut live = 1;
        let mut awake_elsewhere: HashMap<String, u64> = HashMap::new();
        for key in keys.iter().filter(|k| **k != self.node) {
            // Gone since it was listed: not live.
            let Some(value) = self.nodes_kv.get(key).await? else {
                continue;
            };
            live += 1;
            // An older node writes no `awake`; one whose beat does not parse has nothing awake.
            let beat: Beat = serde_json::from_slice(&value).unwrap_or_default();
            for function in beat.awake {
                *awake_elsewhere.entry(function).or_default() += 1;
            }
        }
        Ok((live, awake_elsewhere))
    }
}

/// The first of `keys` that fit in `budget` bytes of a heartbeat, so that it stays well inside the
/// NATS server's largest message; a function left out counts as asleep on this node for the others.
fn fitting(mut keys: Vec<String>, budget: usize) -> Vec<String> {
    let mut used = 0;
    let fit = keys
        .iter()
        .take_while(|k| {
            used += k.len() + 3;
            used <= budget
        })
        .count();
    if fit < keys.len() {
        tracing::debug!(
            awake = keys.len(),
            listed = fit,
            "more functions awake than a heartbeat lists"
        );
        keys.truncate(fit);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_lists_what_fits() {
        let keys = vec!["a.openfaas-fn".to_string(), "b.openfaas-fn".to_string()];
        assert_eq!(fitting(keys.clone(), 1024), keys);
        assert_eq!(fitting(keys.clone(), 20), keys[..1].to_vec());
        assert!(fitting(keys, 3).is_empty());
    }

    #[test]
    fn a_beat_without_awake_functions_reads_as_none() {
        let old: Beat = serde_json::from_str(r#"{"node":"a","startedAt":"2026-12-01T00:00:00Z"}"#)
            .expect("an older beat");
        assert!(old.awake.is_empty());
    }
}
