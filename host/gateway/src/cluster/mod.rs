//! Cluster mode (`wasmgate serve --nats nats://...`): nodes share their functions through NATS
//! JetStream, with no cluster code of our own.
//!
//! - **Function records** live in the key-value bucket `wasmgate-functions`, one key per function
//!   (`name.namespace`), the JSON of its [`FunctionRecord`]. A deploy on any node is applied and
//!   persisted there first, then put in the bucket with a compare-and-set on the revision it read
//!   (a concurrent change makes it read and try again); a removal writes a delete marker.
//! - **Components** live in the object store `wasmgate-artifacts`, named by digest, uploaded once. A
//!   node that learns of a function downloads its component only if its own artifact store lacks
//!   that digest, checks the digest, and keeps its own compiled-code cache: compiled code never
//!   travels.
//! - **Every node watches** the bucket and applies what changes (deploy, update, removal). The watch
//!   starts with the current value of every key, so a node that was down, or new, catches up; a
//!   change it made itself is recognised (same record) and skipped. Every [`RESYNC_EVERY`], or less
//!   often for a large bucket (at most 20 direct gets a second on average), and whenever a watch
//!   cannot be started, the node also reads each bucket whole with direct gets, which need no
//!   consumer: a watch that went quiet when its NATS server died delays a change by at most that
//!   long. Each key's revisions are applied once and in order, whichever path brings them; one that
//!   fails here is tried again with backoff (`watch.rs`). The first catch-up decides readiness.
//! - Debian's nats-server 2.9 lacks the account information async-nats 0.51 asks for when it creates
//!   a key-value bucket, so the bucket's backing stream is created here with the settings the client
//!   would use.
//!
//! - **Namespaces and secrets** live in the buckets `wasmgate-namespaces` and `wasmgate-secrets`
//!   (key `namespace.name`, value the secret's bytes), watched and applied the same way. A function
//!   record that arrives before its namespace or secret waits and is applied when they arrive.
//!   Secret values are sealed with the key of `--secrets-key-file` (`seal.rs`); a node without it
//!   neither writes nor reads them.
//!
//! - **Heartbeats**: each node writes its name to `wasmgate-nodes` every [`HEARTBEAT`], with the
//!   functions that can sleep (scale to zero) it has awake; entries expire after [`HEARTBEAT_EXPIRY`].
//!   The live nodes are counted from the entries left. Every live node is a replica of every
//!   function, except of one that can sleep, whose replicas are the nodes that have it awake
//!   (`control/peers.rs`). A scale (`/system/scale-function`) is a record change like a deploy.
//!
//! - **The async queue** is shared too: see `queue/jetstream.rs`.
//!
//! Files: this one connects and creates the buckets; `watch.rs` applies what other nodes change;
//! `publish.rs` puts this node's changes in the buckets (the [`Replicator`] side); `heartbeat.rs`
//! counts the live nodes and what they have awake; `calls.rs` is the async queue's store.

pub mod calls;
mod heartbeat;
mod publish;
pub mod seal;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::{self, kv, object_store, stream};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::control::{Functions, Peers};
use crate::observe::readiness::Readiness;
use wasmgate_openfaas::types::FunctionRecord;

/// The key-value bucket of function records.
pub const FUNCTIONS_BUCKET: &str = "wasmgate-functions";
/// The object store of components.
pub const ARTIFACTS_BUCKET: &str = "wasmgate-artifacts";
/// The key-value bucket of namespaces (key: the name; value: its JSON).
pub const NAMESPACES_BUCKET: &str = "wasmgate-namespaces";
/// The key-value bucket of secrets (key: `namespace.name`; value: the secret's bytes).
pub const SECRETS_BUCKET: &str = "wasmgate-secrets";
/// The key-value bucket of node heartbeats (key: the node's name); entries expire.
pub const NODES_BUCKET: &str = "wasmgate-nodes";
/// How often a node writes its heartbeat and counts the live nodes.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node whose last heartbeat is older than this is gone.
pub const HEARTBEAT_EXPIRY: Duration = Duration::from_secs(6);
/// Revisions kept per function record.
const HISTORY: i64 = 5;
/// Tries of a compare-and-set put before giving up.
const CAS_TRIES: usize = 5;
/// How often each bucket is also read whole, in case its watch went quiet, at the most (a large
/// bucket is read less often: `watch.rs`).
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// A NATS server's largest message when its configuration does not say (`max_payload`, 1 MiB).
const DEFAULT_NATS_MAX_PAYLOAD: usize = 1024 * 1024;
/// How long joining the cluster at start may take by default (`--nats-connect-timeout`).
pub const DEFAULT_NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages the NATS client buffers per subscription before it drops them as a slow consumer
/// (async-nats' default, named here because the topics' delivery depends on it).
pub const SUBSCRIPTION_CAPACITY: usize = 64 * 1024;
/// How long starting a watch may take.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before watching again after the watch ended (a leader election, a lost connection).
const REWATCH_PAUSE: Duration = Duration::from_millis(500);

/// What a node puts in the bucket for a function.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    /// The node that made the change (for logs).
    node: String,
    record: FunctionRecord,
}

/// This node's connection to the cluster.
pub struct Cluster {
    node: String,
    js: jetstream::Context,
    functions_kv: kv::Store,
    namespaces_kv: kv::Store,
    secrets_kv: kv::Store,
    artifacts: object_store::ObjectStore,
    max_artifact_bytes: usize,
    /// Function records that could not be applied yet (their secret or namespace had not arrived);
    /// tried again after each secret or namespace applied.
    pending: Arc<std::sync::Mutex<HashMap<String, FunctionRecord>>>,
    nodes_kv: kv::Store,
    /// The other nodes, from their heartbeats: how many are live, which sleepers they have awake.
    peers: Arc<Peers>,
    /// Copies of each stream and bucket on the NATS servers.
    replicas: usize,
    /// The largest message the NATS server takes.
    max_payload: usize,
    /// The last revision applied, per bucket and key.
    applied: Arc<std::sync::Mutex<HashMap<(&'static str, String), u64>>>,
    /// Seals and opens secret values (`--secrets-key-file`); without it secrets are not shared.
    keyring: Option<Arc<seal::Keyring>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to NATS at `urls` (comma-separated: the client fails over between them and learns
    /// the rest of a NATS cluster from the server) and makes sure the buckets, streams and object
    /// store exist, each with `replicas` copies on the NATS servers. A server that is not up yet is
    /// waited for, but all of it must be done within `timeout`: past it (no server, wrong
    /// credentials, a JetStream that never answers) the error names the last thing NATS said.
    pub async fn connect(
        urls: &str,
        node: String,
        max_artifact_bytes: usize,
        replicas: usize,
        timeout: Duration,
        keyring: Option<Arc<seal::Keyring>>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let last_event = Arc::new(std::sync::Mutex::new(None::<String>));
        let joined = tokio::time::timeout(
            timeout,
            Cluster::join(
                urls,
                node,
                max_artifact_bytes,
                replicas,
                last_event.clone(),
                keyring,
            ),
        )
        .await;
        match joined {
            Ok(joined) => joined,
            Err(_) => {
                let said = last_event
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                match said {
                    Some(said) => bail!(
                        "could not join the NATS cluster at {urls} within {timeout:?} \
                         (--nats-connect-timeout): the last thing NATS said was: {said}"
                    ),
                    None => bail!(
                        "could not join the NATS cluster at {urls} within {timeout:?} \
                         (--nats-connect-timeout): no NATS server answered"
                    ),
                }
            }
        }
    }

    async fn join(
        urls: &str,
        node: String,
        max_artifact_bytes: usize,
        replicas: usize,
        last_event: Arc<std::sync::Mutex<Option<String>>>,
        keyring: Option<Arc<seal::Keyring>>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let addresses = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                u.parse::<async_nats::ServerAddr>()
                    .with_context(|| format!("{u:?} is not a NATS server address"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("wasmgate {node}"))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let last_event = last_event.clone();
                async move {
                    if matches!(
                        event,
                        async_nats::Event::ServerError(_) | async_nats::Event::ClientError(_)
                    ) {
                        tracing::warn!(%event, "NATS");
                        *last_event
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(event.to_string());
                    }
                }
            });
        // Credentials in a URL (nats://user:password@host, or nats://token@host) log in.
        if let Some(first) = addresses.first() {
            match (first.username(), first.password()) {
                (Some(user), Some(password)) => {
                    options = options.user_and_password(user.to_string(), password.to_string());
                }
                (Some(token), None) if !token.is_empty() => {
                    options = options.token(token.to_string());
                }
                _ => {}
            }
        }
        let client = options
            .connect(addresses)
            .await
            .with_context(|| format!("connecting to NATS at {urls}"))?;
        let js = jetstream::new(client.clone());
        let replicas = replicas.max(1);
        // A NATS cluster that is still electing its leaders refuses for a moment: try again.
        let functions_kv = retrying("creating buckets", || {
            key_value(&js, FUNCTIONS_BUCKET, replicas)
        })
        .await?;
        let namespaces_kv = retrying("creating buckets", || {
            key_value(&js, NAMESPACES_BUCKET, replicas)
        })
        .await?;
        let secrets_kv = retrying("creating buckets", || {
            key_value(&js, SECRETS_BUCKET, replicas)
        })
        .await?;
        let nodes_kv = retrying("creating buckets", || {
            key_value_with(
                &js,
                NODES_BUCKET,
                "wasmgate node heartbeats",
                HEARTBEAT_EXPIRY,
                stream::StorageType::File,
                replicas,
            )
        })
        .await?;
        let artifacts = retrying("creating the artifacts object store", || async {
            match js.get_object_store(ARTIFACTS_BUCKET).await {
                Ok(store) => Ok(store),
                Err(_) => js
                    .create_object_store(object_store::Config {
                        bucket: ARTIFACTS_BUCKET.to_string(),
                        description: Some("wasmgate components, by digest".into()),
                        num_replicas: replicas,
                        ..Default::default()
                    })
                    .await
                    .context("creating the artifacts object store"),
            }
        })
        .await?;
        // Read only now: with `retry_on_initial_connect`, `connect` returns before the server has
        // sent its INFO, and the buckets above are the first round trips that prove it has.
        let max_payload = match client.server_info().max_payload {
            0 => {
                tracing::warn!(
                    default = DEFAULT_NATS_MAX_PAYLOAD,
                    "the NATS server did not say its max_payload; assuming its default"
                );
                DEFAULT_NATS_MAX_PAYLOAD
            }
            known => known,
        };
        tracing::info!(%node, "joined the cluster");
        Ok(Arc::new(Cluster {
            node,
            js: js.clone(),
            functions_kv,
            namespaces_kv,
            secrets_kv,
            artifacts,
            max_artifact_bytes,
            pending: Arc::default(),
            nodes_kv,
            peers: Arc::default(),
            replicas,
            max_payload,
            applied: Arc::default(),
            keyring,
        }))
    }

    /// Watches the function records and applies every change to `functions`, until the process ends.
    ///
    /// Changes to different functions are applied side by side (a large component that compiles for
    /// seconds does not hold up the others); changes to one function in the order they were made.
    /// The watches and the heartbeat run until `stop` is cancelled.
    /// `readiness` waits for each bucket's first catch-up.
    pub fn start(
        self: &Arc<Self>,
        functions: Arc<Functions>,
        stop: CancellationToken,
        readiness: &Readiness,
    ) {
        for bucket in [NAMESPACES_BUCKET, SECRETS_BUCKET, FUNCTIONS_BUCKET] {
            let catch_up = readiness.catch_up(bucket);
            self.watch(bucket, functions.clone(), stop.clone(), catch_up);
        }
        functions.set_peers(self.peers.clone());
        self.heartbeat(functions, stop);
    }

    /// The JetStream context, for the async queue.
    pub fn jetstream(&self) -> jetstream::Context {
        self.js.clone()
    }

    /// The NATS connection, for the event connectors' subscriptions.
    pub fn client(&self) -> async_nats::Client {
        self.js.client()
    }

    /// This node's name in the cluster.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The largest message the NATS server takes (a reply to a topic's request must fit).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Copies of each stream and bucket on the NATS servers.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The largest async request body a call message can carry: the server's largest message, less
    /// the base64 and JSON of the message around it.
    pub fn max_async_body(&self) -> u64 {
        (self.max_payload as u64 * 3 / 4).saturating_sub(64 * 1024)
    }

    /// Live nodes, as last counted.
    pub fn live_nodes(&self) -> u64 {
        self.peers.live()
    }
}

impl Cluster {
    /// A copy sharing the same connections (the handles are reference-counted).
    fn clone_handles(&self) -> Cluster {
        Cluster {
            node: self.node.clone(),
            js: self.js.clone(),
            functions_kv: self.functions_kv.clone(),
            namespaces_kv: self.namespaces_kv.clone(),
            secrets_kv: self.secrets_kv.clone(),
            artifacts: self.artifacts.clone(),
            max_artifact_bytes: self.max_artifact_bytes,
            pending: self.pending.clone(),
            nodes_kv: self.nodes_kv.clone(),
            peers: self.peers.clone(),
            replicas: self.replicas,
            max_payload: self.max_payload,
            applied: self.applied.clone(),
            keyring: self.keyring.clone(),
        }
    }
}

/// Object names cannot hold ':'.
fn object_name(digest: &str) -> String {
    digest.replace(':', "-")
}

/// A key-value bucket, created as async-nats would create it (see the module documentation): with
/// a `ttl`, one value per key kept that long after its last write; with `Duration::ZERO`, [`HISTORY`]
/// revisions per key kept until deleted.
pub(crate) async fn key_value_with(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    ttl: Duration,
    storage: stream::StorageType,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: if ttl.is_zero() { HISTORY } else { 1 },
        max_age: ttl,
        storage,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the stream of the {bucket} bucket"))?;
    js.get_key_value(bucket)
        .await
        .with_context(|| format!("opening the {bucket} bucket"))
}

/// The key-value bucket `bucket` of records kept until deleted ([`HISTORY`] revisions of each),
/// creating its backing stream as async-nats would (see the module documentation).
async fn key_value(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    key_value_with(
        js,
        bucket,
        "wasmgate records",
        Duration::ZERO,
        stream::StorageType::File,
        replicas,
    )
    .await
}

/// How long a JetStream operation is tried again while the NATS cluster elects a leader or a server
/// comes back.
pub const RETRY_FOR: Duration = Duration::from_secs(20);

/// Runs `operation` until it succeeds or [`RETRY_FOR`] has passed, waiting 100 ms, then twice as long
/// each time (at most 2 s), between tries.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut operation: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() < RETRY_FOR => {
                tracing::debug!(what, error = %format!("{error:#}"), ?wait, "a JetStream operation failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error.context(format!("{what} (tried for {RETRY_FOR:?})"))),
        }
    }
}

/// Runs `task` on its own until it ends or `stop` is cancelled, whichever comes first.
fn spawn_until(stop: CancellationToken, task: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = task => {}
        }
    });
}
