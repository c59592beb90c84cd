//! What other nodes change: each bucket watched (and read whole every [`RESYNC_EVERY`]), each key's
//! revisions applied once and in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::kv;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::{
    Cluster, FUNCTIONS_BUCKET, NAMESPACES_BUCKET, Published, RESYNC_EVERY, REWATCH_PAUSE,
    SECRETS_BUCKET, WATCH_TIMEOUT, object_name, retrying, spawn_until,
};
use crate::control::{Functions, Replicated};
use crate::observe::readiness::{Applied, CatchUp};
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::FunctionRecord;

impl Cluster {
    /// Watches `bucket` and applies what changes, until `stop`; `catch_up` counts the records the
    /// bucket held at the start until each is applied (see `observe/readiness.rs`).
    pub(super) fn watch(
        self: &Arc<Self>,
        bucket: &'static str,
        functions: Arc<Functions>,
        stop: CancellationToken,
        catch_up: Arc<CatchUp>,
    ) {
        let cluster = self.clone();
        let store = match bucket {
            NAMESPACES_BUCKET => self.namespaces_kv.clone(),
            SECRETS_BUCKET => self.secrets_kv.clone(),
            _ => self.functions_kv.clone(),
        };
        let retries_stop = stop.clone();
        spawn_until(stop, async move {
            let stop = retries_stop;
            // An empty bucket has nothing to catch up on (and its watch brings nothing to say so).
            if let Ok(Ok(status)) = tokio::time::timeout(WATCH_TIMEOUT, store.status()).await
                && status.values() == 0
            {
                catch_up.read_all();
            }
            let mut per_key: HashMap<String, Arc<tokio::sync::Mutex<()>>> = HashMap::new();
            let mut next_resync = tokio::time::Instant::now() + RESYNC_EVERY;
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
                                    // The watch starts with every key's current value; `delta`
                                    // counts those still to come.
                                    let last_of_catch_up = catch_up.reading() && entry.delta == 0;
                                    cluster
                                        .dispatch(bucket, &functions, &mut per_key, entry, &stop, &catch_up)
                                        .await;
                                    if last_of_catch_up {
                                        catch_up.read_all();
                                    }
                                }
                                Some(Err(error)) => {
                                    tracing::warn!(%error, bucket, "the cluster watch failed");
                                    break;
                                }
                                None => break,
                            },
                            // A watch can also go quiet without failing (its server went away); a
                            // periodic read of the bucket bounds how long a change can be missed,
                            // less often the more keys it has (see `resync_interval`).
                            () = tokio::time::sleep_until(next_resync) => {
                                let keys = cluster.resync(bucket, &store, &functions, &mut per_key, &stop, &catch_up).await;
                                next_resync = tokio::time::Instant::now() + resync_interval(keys.unwrap_or(0));
                            }
                        }
                    },
                    Err(error) => {
                        // A NATS server that went away may leave new watches failing for a while
                        // (their consumers cannot be created); read the bucket directly meanwhile.
                        tracing::warn!(%error, bucket, "cannot watch the cluster; reading it directly");
                        cluster
                            .resync(bucket, &store, &functions, &mut per_key, &stop, &catch_up)
                            .await;
                    }
                }
                tokio::time::sleep(REWATCH_PAUSE).await;
            }
        });
    }

    /// Applies one entry of `bucket`, after the changes to the same key that came before it. A change
    /// that fails (its component cannot be fetched yet, its secret has not arrived) is tried again,
    /// [`APPLY_RETRY_FIRST`] later and then twice as long each time up to [`APPLY_RETRY_MAX`], until it
    /// succeeds, a newer revision of the key supersedes it, or `stop` is cancelled.
    async fn dispatch(
        self: &Arc<Self>,
        bucket: &'static str,
        functions: &Arc<Functions>,
        per_key: &mut HashMap<String, Arc<tokio::sync::Mutex<()>>>,
        entry: kv::Entry,
        stop: &CancellationToken,
        catch_up: &Arc<CatchUp>,
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
        let applied = if catch_up.reading() {
            catch_up.counted()
        } else {
            Applied::none()
        };
        let lock = per_key.entry(entry.key.clone()).or_default().clone();
        // Taken here, in order; released when applied.
        let first_turn = lock.clone().lock_owned().await;
        let (cluster, functions, stop) = (self.clone(), functions.clone(), stop.clone());
        tokio::spawn(async move {
            let mut first_turn = Some(first_turn);
            let attempt = || {
                let (cluster, functions, entry, lock) = (&cluster, &functions, &entry, &lock);
                let turn = first_turn.take();
                async move {
                    // A retry waits its turn like a new change, and gives way to a newer revision.
                    let _turn = match turn {
                        Some(turn) => turn,
                        None => lock.clone().lock_owned().await,
                    };
                    if !cluster.is_latest(bucket, entry) {
                        return Attempt::Superseded;
                    }
                    let done = match bucket {
                        FUNCTIONS_BUCKET => cluster.apply(functions, entry.clone()).await,
                        NAMESPACES_BUCKET => {
                            cluster.apply_namespace(functions, entry.clone()).await
                        }
                        _ => cluster.apply_secret(functions, entry.clone()).await,
                    };
                    if done { Attempt::Done } else { Attempt::Failed }
                }
            };
            let retries =
                until_applied(attempt, APPLY_RETRY_FIRST, APPLY_RETRY_MAX, &stop, |wait| {
                    tracing::warn!(bucket, key = %entry.key, revision = entry.revision, ?wait,
                        "a change from the cluster failed; trying it again");
                })
                .await;
            applied.done();
            if retries > 0 {
                tracing::info!(bucket, key = %entry.key, revision = entry.revision, retries,
                    "a change from the cluster that had failed is no longer pending");
            }
        });
    }

    /// Whether `entry` is still the newest revision of its key this node has seen.
    fn is_latest(&self, bucket: &'static str, entry: &kv::Entry) -> bool {
        self.applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(bucket, entry.key.clone()))
            .is_none_or(|last| *last == entry.revision)
    }

    /// Reads every key of `bucket` with direct gets (no consumer needed) and applies what changed;
    /// returns how many keys it read, `None` when it could not list them.
    async fn resync(
        self: &Arc<Self>,
        bucket: &'static str,
        store: &kv::Store,
        functions: &Arc<Functions>,
        per_key: &mut HashMap<String, Arc<tokio::sync::Mutex<()>>>,
        stop: &CancellationToken,
        catch_up: &Arc<CatchUp>,
    ) -> Option<usize> {
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
                return None;
            }
            Err(_) => {
                tracing::warn!(bucket, "listing the bucket's keys timed out");
                return None;
            }
        };
        let keys = subjects.len();
        let mut read_all = true;
        for subject in subjects {
            let Some(key) = subject.strip_prefix(&prefix) else {
                continue;
            };
            match tokio::time::timeout(WATCH_TIMEOUT, store.entry(key)).await {
                Ok(Ok(Some(entry))) => {
                    self.dispatch(bucket, functions, per_key, entry, stop, catch_up)
                        .await
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    read_all = false;
                    tracing::warn!(%error, key, "cannot read a key")
                }
                Err(_) => {
                    read_all = false;
                    tracing::warn!(key, "reading a key timed out")
                }
            }
        }
        if read_all {
            catch_up.read_all();
        }
        Some(keys)
    }

    /// Applies a namespace change; false when it failed and should be tried again.
    async fn apply_namespace(&self, functions: &Functions, entry: kv::Entry) -> bool {
        let result = match entry.operation {
            kv::Operation::Put => {
                match serde_json::from_slice::<wasmgate_openfaas::types::Namespace>(&entry.value) {
                    Ok(namespace) => {
                        functions
                            .apply_replicated(Replicated::NamespacePut(namespace))
                            .await
                    }
                    Err(error) => {
                        // Trying again cannot help: a newer record (or a newer node) will.
                        tracing::warn!(key = %entry.key, %error, "a namespace record this node cannot read");
                        return true;
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
            return false;
        }
        self.retry_pending(functions).await;
        true
    }

    /// Applies a secret change; false when it failed and should be tried again.
    async fn apply_secret(&self, functions: &Functions, entry: kv::Entry) -> bool {
        let Some((namespace, name)) = entry.key.split_once('.') else {
            return true;
        };
        let value = match entry.operation {
            kv::Operation::Put => {
                let opened = match &self.keyring {
                    Some(keyring) => keyring.open(&entry.key, &entry.value),
                    None => Err(format!(
                        "the secret {} cannot be read: this node has no --secrets-key-file",
                        entry.key
                    )),
                };
                match opened {
                    Ok(value) => Some(value),
                    Err(reason) => {
                        tracing::error!(key = %entry.key, %reason, "refusing a secret from the cluster");
                        return false;
                    }
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        let secret = Replicated::SecretChanged {
            namespace: namespace.to_string(),
            name: name.to_string(),
            value,
        };
        if let Err(error) = functions.apply_replicated(secret).await {
            tracing::warn!(key = %entry.key, %error, "cannot apply a secret from the cluster");
            return false;
        }
        self.retry_pending(functions).await;
        true
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
            // A failure puts it back in `pending`.
            self.apply_record(functions, key, record, "pending").await;
        }
    }

    /// Applies a function record; false when it failed (it is then also tried again as soon as a
    /// namespace or a secret arrives, which is what it usually waits for).
    async fn apply_record(
        &self,
        functions: &Functions,
        key: String,
        record: FunctionRecord,
        from: &str,
    ) -> bool {
        match functions
            .apply_replicated(Replicated::FunctionPut(record.clone()))
            .await
        {
            Ok(true) => {
                tracing::info!(%key, from, "applied a deploy from the cluster");
                true
            }
            Ok(false) => true,
            Err(error) => {
                tracing::warn!(%key, from, %error,
                    "cannot apply a deploy from the cluster yet; trying again when a namespace or secret arrives, and later");
                self.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, record);
                false
            }
        }
    }

    /// Applies a function record or its removal; false when it failed and should be tried again.
    async fn apply(&self, functions: &Functions, entry: kv::Entry) -> bool {
        match entry.operation {
            kv::Operation::Put => {
                let published: Published = match serde_json::from_slice(&entry.value) {
                    Ok(published) => published,
                    Err(error) => {
                        tracing::warn!(key = %entry.key, %error, "a function record this node cannot read");
                        return true;
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
                    return false;
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
                .await
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&entry.key);
                let Ok(function) = FunctionRef::parse(&entry.key) else {
                    return true;
                };
                match functions
                    .apply_replicated(Replicated::FunctionRemoved(function))
                    .await
                {
                    Ok(true) => {
                        tracing::info!(key = %entry.key, "applied a removal from the cluster");
                        true
                    }
                    Ok(false) => true,
                    Err(error) => {
                        tracing::error!(key = %entry.key, %error,
                            "cannot apply a removal from the cluster");
                        false
                    }
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
}

/// Direct gets per second a healthy watch's periodic read of a bucket may cost on average.
const RESYNC_GETS_PER_SECOND: usize = 20;

/// How long after a periodic read of a bucket of `keys` keys the next one comes while the watch is
/// healthy: [`RESYNC_EVERY`], or longer for a large bucket, so that a gateway spends at most
/// [`RESYNC_GETS_PER_SECOND`] gets a second on it (10,000 functions: every 500 s). While a watch
/// cannot be started, the bucket is read directly at every try instead.
fn resync_interval(keys: usize) -> Duration {
    RESYNC_EVERY.max(Duration::from_secs((keys / RESYNC_GETS_PER_SECOND) as u64))
}

/// The first pause before a failed change from the cluster is tried again.
pub const APPLY_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between tries of a failed change: it keeps being tried at this interval until
/// it succeeds or a newer revision of its key replaces it.
pub const APPLY_RETRY_MAX: Duration = Duration::from_secs(60);

/// What one try of a change from the cluster came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Applied, or nothing to apply.
    Done,
    /// Failed; worth trying again.
    Failed,
    /// A newer revision of the key arrived: this one is not applied any more.
    Superseded,
}

/// Runs `attempt` until it is done or superseded, pausing `first`, then twice as long each time up
/// to `max`, after each failure (calling `on_retry` with the pause), or until `stop` is cancelled.
/// Returns how many times it tried again.
async fn until_applied<F, Fut>(
    mut attempt: F,
    first: Duration,
    max: Duration,
    stop: &CancellationToken,
    mut on_retry: impl FnMut(Duration),
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let mut wait = first;
    let mut retries = 0;
    loop {
        match attempt().await {
            Attempt::Done | Attempt::Superseded => return retries,
            Attempt::Failed => {}
        }
        on_retry(wait);
        tokio::select! {
            () = stop.cancelled() => return retries,
            () = tokio::time::sleep(wait) => {}
        }
        retries += 1;
        wait = (wait * 2).min(max);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const TICK: Duration = Duration::from_millis(1);

    #[test]
    fn large_buckets_are_read_less_often() {
        assert_eq!(resync_interval(0), RESYNC_EVERY);
        assert_eq!(resync_interval(150), RESYNC_EVERY);
        assert_eq!(resync_interval(1_000), Duration::from_secs(50));
        assert_eq!(resync_interval(10_000), Duration::from_secs(500));
    }

    #[tokio::test]
    async fn a_failed_change_is_tried_until_it_is_applied() {
        let tries = AtomicU32::new(0);
        let mut waits = Vec::new();
        let retries = until_applied(
            || async {
                if tries.fetch_add(1, Ordering::Relaxed) < 4 {
                    Attempt::Failed
                } else {
                    Attempt::Done
                }
            },
            TICK,
            4 * TICK,
            &CancellationToken::new(),
            |wait| waits.push(wait),
        )
        .await;
        assert_eq!(tries.load(Ordering::Relaxed), 5);
        assert_eq!(retries, 4);
        assert_eq!(waits, [TICK, 2 * TICK, 4 * TICK, 4 * TICK]);
    }

    #[tokio::test]
    async fn a_newer_revision_ends_the_retries() {
        let tries = AtomicU32::new(0);
        let retries = until_applied(
            || async {
                if tries.fetch_add(1, Ordering::Relaxed) < 2 {
                    Attempt::Failed
                } else {
                    Attempt::Superseded
                }
            },
            TICK,
            TICK,
            &CancellationToken::new(),
            |_| {},
        )
        .await;
        assert_eq!((tries.load(Ordering::Relaxed), retries), (3, 2));
    }

    #[tokio::test]
    async fn shutdown_ends_the_retries() {
        let stop = CancellationToken::new();
        let tries = AtomicU32::new(0);
        let retries = until_applied(
            || async {
                tries.fetch_add(1, Ordering::Relaxed);
                Attempt::Failed
            },
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            &stop,
            |_| stop.cancel(),
        )
        .await;
        assert_eq!((tries.load(Ordering::Relaxed), retries), (1, 0));
    }
}
