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
//!   change it made itself is recognised (same record) and skipped. Every [`RESYNC_EVERY`] (and
//!   whenever a watch cannot be started) the node also reads each bucket whole with direct gets, which
//!   need no consumer: a watch that went quiet when its NATS server died delays a change by at most
//!   that long. Each key's revisions are applied once and in order, whichever path brings them.
//! - Debian's nats-server 2.9 lacks the account information async-nats 0.51 asks for when it creates
//!   a key-value bucket, so the bucket's backing stream is created here with the settings the client
//!   would use.
//!
//! - **Namespaces and secrets** live in the buckets `wasmgate-namespaces` and `wasmgate-secrets`
//!   (key `namespace.name`, value the secret's bytes), watched and applied the same way. A function
//!   record that arrives before its namespace or secret waits and is applied when they arrive.
//!   Secrets are stored in JetStream as they are: secure the NATS server (TLS, accounts).
//!
//! - **Heartbeats**: each node writes its name to `wasmgate-nodes` every [`HEARTBEAT`]; entries expire
//!   after [`HEARTBEAT_EXPIRY`]. The live nodes are counted from the keys left, and every live node is
//!   a replica of every function.
//!
//! - **The async queue** is shared too: see `queue/jetstream.rs`.
//!
//! Not yet shared: scaling to zero.
//!
//! Over 600 lines, to be split: the connection, replication, the watches and the heartbeat are one
//! `Cluster`; issue 15 splits them by noun.

pub mod calls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::{self, kv, object_store, stream};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::control::{Functions, Replicated, Replicator};
use wasmgate_openfaas::names::FunctionRef;
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
/// How often each bucket is also read whole, in case its watch went quiet.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// A NATS server's largest message when its configuration does not say (`max_payload`, 1 MiB).
const DEFAULT_NATS_MAX_PAYLOAD: usize = 1024 * 1024;
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
    /// Live nodes, counted from the heartbeats.
    live: Arc<std::sync::atomic::AtomicU64>,
    /// Copies of each stream and bucket on the NATS servers.
    replicas: usize,
    /// The largest message the NATS server takes.
    max_payload: usize,
    /// The last revision applied, per bucket and key.
    applied: Arc<std::sync::Mutex<HashMap<(&'static str, String), u64>>>,
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
    /// store exist, each with `replicas` copies on the NATS servers.
    pub async fn connect(
        urls: &str,
        node: String,
        max_artifact_bytes: usize,
        replicas: usize,
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
            .retry_on_initial_connect();
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
            live: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            replicas,
            max_payload,
            applied: Arc::default(),
        }))
    }

    /// Watches the function records and applies every change to `functions`, until the process ends.
    ///
    /// Changes to different functions are applied side by side (a large component that compiles for
    /// seconds does not hold up the others); changes to one function in the order they were made.
    /// The watches and the heartbeat run until `stop` is cancelled.
    pub fn start(self: &Arc<Self>, functions: Arc<Functions>, stop: CancellationToken) {
        for bucket in [NAMESPACES_BUCKET, SECRETS_BUCKET, FUNCTIONS_BUCKET] {
            self.watch(bucket, functions.clone(), stop.clone());
        }
        functions.set_live_nodes(self.live.clone());
        self.heartbeat(stop);
    }

    /// Writes this node's heartbeat every [`HEARTBEAT`] and counts the nodes whose heartbeat has not
    /// expired.
    fn heartbeat(self: &Arc<Self>, stop: CancellationToken) {
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
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn watch(
        self: &Arc<Self>,
        bucket: &'static str,
        functions: Arc<Functions>,
        stop: CancellationToken,
    ) {
        let cluster = self.clone();
        let store = match bucket {
            NAMESPACES_BUCKET => self.namespaces_kv.clone(),
            SECRETS_BUCKET => self.secrets_kv.clone(),
            _ => self.functions_kv.clone(),
        };
        spawn_until(stop, async move {
            let mut per_key: HashMap<String, Arc<tokio::sync::Mutex<()>>> = HashMap::new();
            let mut resync = tokio::time::interval(RESYNC_EVERY);
            resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            resync.tick().await;
            loop {
                // Asked while the NATS cluster elects a leader, the request may go unanswered.
                let watch = tokio::time::timeout(WATCH_TIMEOUT, store.watch_with_history(">"))
                    .await
                    .unwrap_or_else(|_| Err(kv::WatchError::new(kv::WatchErrorKind::TimedOut)));
                match watch {
                    Ok(mut watch) => loop {
                        tokio::select! {
                            entry = watch.next() => match entry {
                                Some(Ok(entry)) => {
                                    cluster
                                        .dispatch(bucket, &functions, &mut per_key, entry)
                                        .await;
                                }
                                Some(Err(error)) => {
                                    tracing::warn!(%error, bucket, "the cluster watch failed");
                                    break;
                                }
                                None => break,
                            },
                            // A watch can also go quiet without failing (its server went away); a
                            // periodic read of the bucket bounds how long a change can be missed.
                            _ = resync.tick() => {
                                cluster.resync(bucket, &store, &functions, &mut per_key).await;
                            }
                        }
                    },
                    Err(error) => {
                        // A NATS server that went away may leave new watches failing for a while
                        // (their consumers cannot be created); read the bucket directly meanwhile.
                        tracing::warn!(%error, bucket, "cannot watch the cluster; reading it directly");
                        cluster
                            .resync(bucket, &store, &functions, &mut per_key)
                            .await;
                    }
                }
                tokio::time::sleep(REWATCH_PAUSE).await;
            }
        });
    }

    /// Applies one entry of `bucket`, after the changes to the same key that came before it.
    async fn dispatch(
        self: &Arc<Self>,
        bucket: &'static str,
        functions: &Arc<Functions>,
        per_key: &mut HashMap<String, Arc<tokio::sync::Mutex<()>>>,
        entry: kv::Entry,
    ) {
        // The watch and the periodic read may both bring a change: apply each revision once, and
        // never an older one after a newer.
        {
            let mut applied = self
                .applied
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let last = applied.entry((bucket, entry.key.clone())).or_insert(0);
            if entry.revision <= *last {
                return;
            }
            *last = entry.revision;
        }
        let lock = per_key.entry(entry.key.clone()).or_default().clone();
        // Taken here, in order; released when applied.
        let turn = lock.lock_owned().await;
        let (cluster, functions) = (self.clone(), functions.clone());
        tokio::spawn(async move {
            match bucket {
                FUNCTIONS_BUCKET => cluster.apply(&functions, entry).await,
                NAMESPACES_BUCKET => cluster.apply_namespace(&functions, entry).await,
                _ => cluster.apply_secret(&functions, entry).await,
            }
            drop(turn);
        });
    }

    /// Reads every key of `bucket` with direct gets (no consumer needed) and applies what changed.
    async fn resync(
        self: &Arc<Self>,
        bucket: &'static str,
        store: &kv::Store,
        functions: &Arc<Functions>,
        per_key: &mut HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    ) {
        let prefix = format!("$KV.{bucket}.");
        let subjects = async {
            let mut info = store
                .stream
                .info_with_subjects(format!("{prefix}>"))
                .await?;
            let mut subjects = Vec::new();
            while let Some(entry) = info.next().await {
                subjects.push(entry?.0);
            }
            Ok::<_, anyhow::Error>(subjects)
        };
        let subjects = match tokio::time::timeout(WATCH_TIMEOUT, subjects).await {
            Ok(Ok(subjects)) => subjects,
            Ok(Err(error)) => {
                tracing::warn!(error = %format!("{error:#}"), bucket, "cannot list the bucket's keys");
                return;
            }
            Err(_) => {
                tracing::warn!(bucket, "listing the bucket's keys timed out");
                return;
            }
        };
        for subject in subjects {
            let Some(key) = subject.strip_prefix(&prefix) else {
                continue;
            };
            match tokio::time::timeout(WATCH_TIMEOUT, store.entry(key)).await {
                Ok(Ok(Some(entry))) => self.dispatch(bucket, functions, per_key, entry).await,
                Ok(Ok(None)) => {}
                Ok(Err(error)) => tracing::warn!(%error, key, "cannot read a key"),
                Err(_) => tracing::warn!(key, "reading a key timed out"),
            }
        }
    }

    async fn apply_namespace(&self, functions: &Functions, entry: kv::Entry) {
        let result = match entry.operation {
            kv::Operation::Put => {
                match serde_json::from_slice::<wasmgate_openfaas::types::Namespace>(&entry.value) {
                    Ok(namespace) => {
                        functions
                            .apply_replicated(Replicated::NamespacePut(namespace))
                            .await
                    }
                    Err(error) => {
                        tracing::warn!(key = %entry.key, %error, "a namespace record this node cannot read");
                        return;
                    }
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                functions
                    .apply_replicated(Replicated::NamespaceRemoved(entry.key.clone()))
                    .await
            }
        };
        if let Err(error) = result {
            tracing::warn!(key = %entry.key, %error, "cannot apply a namespace from the cluster");
        }
        self.retry_pending(functions).await;
    }

    async fn apply_secret(&self, functions: &Functions, entry: kv::Entry) {
        let Some((namespace, name)) = entry.key.split_once('.') else {
            return;
        };
        let value = (entry.operation == kv::Operation::Put).then(|| entry.value.to_vec());
        let secret = Replicated::SecretChanged {
            namespace: namespace.to_string(),
            name: name.to_string(),
            value,
        };
        if let Err(error) = functions.apply_replicated(secret).await {
            tracing::warn!(key = %entry.key, %error, "cannot apply a secret from the cluster");
        }
        self.retry_pending(functions).await;
    }

    /// Applies again the function records that waited for a namespace or a secret.
    async fn retry_pending(&self, functions: &Functions) {
        let pending: Vec<(String, FunctionRecord)> = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pending.drain().collect()
        };
        for (key, record) in pending {
            self.apply_record(functions, key, record, "pending").await;
        }
    }

    async fn apply_record(
        &self,
        functions: &Functions,
        key: String,
        record: FunctionRecord,
        from: &str,
    ) {
        match functions
            .apply_replicated(Replicated::FunctionPut(record.clone()))
            .await
        {
            Ok(true) => tracing::info!(%key, from, "applied a deploy from the cluster"),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%key, from, %error,
                    "cannot apply a deploy from the cluster yet; trying again when a namespace or secret arrives");
                self.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, record);
            }
        }
    }

    async fn apply(&self, functions: &Functions, entry: kv::Entry) {
        match entry.operation {
            kv::Operation::Put => {
                let published: Published = match serde_json::from_slice(&entry.value) {
                    Ok(published) => published,
                    Err(error) => {
                        tracing::warn!(key = %entry.key, %error, "a function record this node cannot read");
                        return;
                    }
                };
                let digest = published.record.digest.clone();
                if let Err(error) = retrying("fetching a component", || {
                    self.fetch_artifact(functions, &digest)
                })
                .await
                {
                    tracing::error!(key = %entry.key, %digest, error = %format!("{error:#}"),
                        "cannot get the component of a function deployed elsewhere");
                    return;
                }
                self.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&entry.key);
                self.apply_record(
                    functions,
                    entry.key.clone(),
                    published.record,
                    &published.node,
                )
                .await;
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&entry.key);
                let Ok(function) = FunctionRef::parse(&entry.key) else {
                    return;
                };
                match functions
                    .apply_replicated(Replicated::FunctionRemoved(function))
                    .await
                {
                    Ok(true) => {
                        tracing::info!(key = %entry.key, "applied a removal from the cluster")
                    }
                    Ok(false) => {}
                    Err(error) => tracing::error!(key = %entry.key, %error,
                        "cannot apply a removal from the cluster"),
                }
            }
        }
    }

    /// Makes sure this node's artifact store has `digest` (`sha256:<hex>`), from the object store.
    async fn fetch_artifact(&self, functions: &Functions, digest: &str) -> anyhow::Result<()> {
        let parsed = wasmgate_openfaas::digest::Digest::parse(digest).context("a bad digest")?;
        if functions.has_artifact(&parsed) {
            return Ok(());
        }
        let mut object = self
            .artifacts
            .get(object_name(digest))
            .await
            .with_context(|| format!("reading {digest} from the object store"))?;
        let mut bytes = Vec::new();
        let limit = u64::try_from(self.max_artifact_bytes).unwrap_or(u64::MAX) + 1;
        (&mut object)
            .take(limit)
            .read_to_end(&mut bytes)
            .await
            .context("downloading the component")?;
        if bytes.len() > self.max_artifact_bytes {
            bail!(
                "the component is over the {} byte limit",
                self.max_artifact_bytes
            );
        }
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest {
            bail!("the object store's {digest} holds {actual}");
        }
        functions.store_artifact(bytes).await?;
        Ok(())
    }

    async fn put_record(
        &self,
        key: String,
        record: FunctionRecord,
        wasm: Vec<u8>,
    ) -> anyhow::Result<()> {
        let name = object_name(&record.digest);
        if self.artifacts.info(&name).await.is_err() {
            let mut reader = wasm.as_slice();
            self.artifacts
                .put(name.as_str(), &mut reader)
                .await
                .context("uploading the component to the object store")?;
        }
        let value = Bytes::from(serde_json::to_vec(&Published {
            node: self.node.clone(),
            record,
        })?);
        // Compare-and-set on the revision read: a concurrent change means read again and retry.
        for _ in 0..CAS_TRIES {
            let current = self
                .functions_kv
                .entry(&key)
                .await
                .context("reading the function's record")?;
            let written = match current {
                Some(entry) => self
                    .functions_kv
                    .update(&key, value.clone(), entry.revision)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from),
                None => self
                    .functions_kv
                    .create(&key, value.clone())
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from),
            };
            match written {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::debug!(%key, error = %format!("{error:#}"), "record changed meanwhile; trying again")
                }
            }
        }
        bail!("the function's record kept changing; gave up after {CAS_TRIES} tries")
    }
}

impl Replicator for Cluster {
    fn artifact_put(
        &self,
        digest: String,
        wasm: Vec<u8>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let artifacts = self.artifacts.clone();
        Box::pin(async move {
            let name = object_name(&digest);
            retrying("sharing an artifact", || async {
                if artifacts.info(&name).await.is_ok() {
                    return Ok(());
                }
                let mut reader = wasm.as_slice();
                artifacts
                    .put(name.as_str(), &mut reader)
                    .await
                    .map(drop)
                    .context("uploading the component to the object store")
            })
            .await
        })
    }

    fn artifact_get(&self, digest: String) -> BoxFuture<'static, anyhow::Result<Option<Vec<u8>>>> {
        let artifacts = self.artifacts.clone();
        let limit = self.max_artifact_bytes;
        Box::pin(async move {
            let name = object_name(&digest);
            if artifacts.info(&name).await.is_err() {
                return Ok(None);
            }
            let mut object = artifacts
                .get(&name)
                .await
                .with_context(|| format!("reading {digest} from the object store"))?;
            let mut bytes = Vec::new();
            (&mut object)
                .take(u64::try_from(limit).unwrap_or(u64::MAX) + 1)
                .read_to_end(&mut bytes)
                .await
                .context("downloading the component")?;
            if bytes.len() > limit {
                bail!("{digest} is over the {limit} byte limit");
            }
            Ok(Some(bytes))
        })
    }

    fn namespace_put(
        &self,
        namespace: wasmgate_openfaas::types::Namespace,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let store = self.namespaces_kv.clone();
        Box::pin(async move {
            let value = Bytes::from(serde_json::to_vec(&namespace)?);
            retrying("publishing a namespace", || async {
                store
                    .put(&namespace.name, value.clone())
                    .await
                    .context("writing the namespace to the cluster")
            })
            .await?;
            Ok(())
        })
    }

    fn namespace_removed(&self, name: String) -> BoxFuture<'static, anyhow::Result<()>> {
        let store = self.namespaces_kv.clone();
        Box::pin(async move {
            retrying("publishing a namespace's removal", || async {
                store
                    .delete(&name)
                    .await
                    .context("writing the namespace's removal to the cluster")
            })
            .await
        })
    }

    fn secret_changed(
        &self,
        namespace: String,
        name: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let store = self.secrets_kv.clone();
        Box::pin(async move {
            let key = format!("{namespace}.{name}");
            retrying("publishing a secret", || async { match value.clone() {
                Some(value) => store
                    .put(&key, Bytes::from(value))
                    .await
                    .map(drop)
                    .with_context(|| format!("writing the secret {key} to the cluster (its name must be letters, digits, '-', '_', '=', '.')")),
                None => store
                    .delete(&key)
                    .await
                    .context("writing the secret's removal to the cluster"),
            } })
            .await
        })
    }

    fn function_put(
        &self,
        record: FunctionRecord,
        wasm: Vec<u8>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let this = self.clone_handles();
        Box::pin(async move {
            let key = FunctionRef::new(
                &record.deployment.service,
                record.deployment.namespace.as_deref(),
            )?
            .key();
            retrying("publishing a deploy", || {
                this.put_record(key.clone(), record.clone(), wasm.clone())
            })
            .await
        })
    }

    fn function_removed(&self, key: String) -> BoxFuture<'static, anyhow::Result<()>> {
        let this = self.clone_handles();
        Box::pin(async move {
            retrying("publishing a removal", || async {
                this.functions_kv
                    .delete(&key)
                    .await
                    .context("writing the removal to the cluster")
            })
            .await
        })
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
            live: self.live.clone(),
            replicas: self.replicas,
            max_payload: self.max_payload,
            applied: self.applied.clone(),
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
