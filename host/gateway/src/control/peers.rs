//! What this node knows of the other nodes of its cluster, for the replica counts: how many nodes
//! are live, and which of the functions that can sleep each of them has awake (its code loaded).
//!
//! A function *can sleep* when it opted into scale to zero (`com.openfaas.scale.zero`) or was scaled
//! to 0 (its record says `replicas: 0`): each node unloads it on its own when idle (`sweeper.rs`) and
//! loads it again on its own next request. Its replicas are then the nodes that have it awake, this
//! one included, so that every node reports the same count. Any other function is served by every
//! live node, so each live node is one of its replicas.
//!
//! The cluster's heartbeat (`cluster/heartbeat.rs`) asks [`crate::control::Functions::awake_sleepers`]
//! what to tell the others, and after each round puts what it read from the others here.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The other nodes, as last read from their heartbeats.
#[derive(Debug)]
pub struct Peers {
    /// Live nodes, this one included.
    live: AtomicU64,
    /// Per function (`name.namespace`) that can sleep: how many other live nodes have it awake.
    awake_elsewhere: RwLock<HashMap<String, u64>>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            live: AtomicU64::new(1),
            awake_elsewhere: RwLock::default(),
        }
    }
}

impl Peers {
    /// Puts what a round of heartbeats said: `live` nodes (at least this one), and, per function,
    /// how many other nodes have it awake.
    pub fn update(&self, live: u64, awake_elsewhere: HashMap<String, u64>) {
        self.live.store(live.max(1), Ordering::Relaxed);
        *self
            .awake_elsewhere
            .write()
            .unwrap_or_else(|e| e.into_inner()) = awake_elsewhere;
    }

    /// Live nodes, this one included.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// How many other nodes have the function `key` awake.
    pub fn awake_elsewhere(&self, key: &str) -> u64 {
        self.awake_elsewhere
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_replaces_the_last_one() {
        let peers = Peers::default();
        assert_eq!(peers.live(), 1);
        assert_eq!(peers.awake_elsewhere("hello.openfaas-fn"), 0);
        peers.update(3, HashMap::from([("hello.openfaas-fn".to_string(), 2)]));
        assert_eq!(
            (peers.live(), peers.awake_elsewhere("hello.openfaas-fn")),
            (3, 2)
        );
        // No node left but this one, and none has it awake any more.
        peers.update(0, HashMap::new());
        assert_eq!(
            (peers.live(), peers.awake_elsewhere("hello.openfaas-fn")),
            (1, 0)
        );
    }
}
