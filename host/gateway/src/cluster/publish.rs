//! This node's changes, put in the cluster's buckets and object store: the [`Replicator`] the
//! control plane calls after it applied a change locally.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;

use super::{CAS_TRIES, Cluster, FUNCTIONS_BUCKET, Published, object_name, retrying};
use crate::control::Replicator;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::FunctionRecord;

/// Why a node without `--secrets-key-file` shares no secret.
const NO_KEY: &str = "in cluster mode secrets are shared sealed: start every node with \
     --secrets-key-file (one key per line, 64 hex digits, for example from `openssl rand -hex 32`)";

impl Cluster {
    /// Puts a function's record, after its component (`wasm`, unless it is known to be shared
    /// already).
    async fn put_record(
        &self,
        key: String,
        record: FunctionRecord,
        wasm: Option<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let name = object_name(&record.digest);
        if let Some(wasm) = wasm
            && self.artifacts.info(&name).await.is_err()
        {
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

impl Cluster {
    /// Puts `record` (after its component, `wasm`, when given), retrying as `what`.
    fn publish_record(
        &self,
        what: &'static str,
        record: FunctionRecord,
        wasm: Option<Vec<u8>>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let this = self.clone_handles();
        Box::pin(async move {
            let key = FunctionRef::new(
                &record.deployment.service,
                record.deployment.namespace.as_deref(),
            )?
            .key();
            retrying(what, || {
                this.put_record(key.clone(), record.clone(), wasm.clone())
            })
            .await
        })
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

    fn collect_artifacts(&self, grace: Duration) -> BoxFuture<'static, anyhow::Result<usize>> {
        let (functions_kv, artifacts) = (self.functions_kv.clone(), self.artifacts.clone());
        Box::pin(async move {
            // Every artifact a function record of the cluster names. A record this node cannot
            // read (a newer gateway's) might name any: then nothing is collected.
            // Listed from the stream's subjects and read with direct gets, as the periodic read of
            // the watch does (no consumer to create).
            let mut referenced = HashSet::new();
            let prefix = format!("$KV.{FUNCTIONS_BUCKET}.");
            let mut info = functions_kv
                .stream
                .info_with_subjects(format!("{prefix}>"))
                .await
                .context("listing the cluster's functions")?;
            let mut subjects = Vec::new();
            while let Some(subject) = info.next().await {
                subjects.push(subject.context("listing the cluster's functions")?.0);
            }
            for subject in subjects {
                let Some(key) = subject.strip_prefix(&prefix) else {
                    continue;
                };
                let Some(entry) = functions_kv
                    .entry(key)
                    .await
                    .context("reading a function record")?
                else {
                    continue;
                };
                if entry.operation != kv::Operation::Put {
                    continue;
                }
                let published: Published =
                    serde_json::from_slice(&entry.value).with_context(|| {
                        format!("the record of {key} cannot be read here; collecting nothing")
                    })?;
                // A Spin app's components and files archives, not only its first component.
                for digest in crate::control::spin::record_digests(&published.record) {
                    referenced.insert(object_name(&digest));
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            let mut stale = Vec::new();
            let mut list = artifacts.list().await.context("listing the object store")?;
            while let Some(info) = list.next().await {
                let info = info.context("listing the object store")?;
                let age = info
                    .modified
                    .map_or(0, |modified| now.saturating_sub(modified.unix_timestamp()));
                if !info.deleted
                    && !referenced.contains(&info.name)
                    && age >= grace.as_secs() as i64
                {
                    stale.push(info.name);
                }
            }
            for name in &stale {
                artifacts
                    .delete(name)
                    .await
                    .with_context(|| format!("removing {name} from the object store"))?;
            }
            Ok(stale.len())
        })
    }

    fn shares_secrets(&self) -> Result<(), String> {
        match self.keyring {
            Some(_) => Ok(()),
            None => Err(NO_KEY.to_string()),
        }
    }

    fn secret_changed(
        &self,
        namespace: String,
        name: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let store = self.secrets_kv.clone();
        let keyring = self.keyring.clone();
        Box::pin(async move {
            let key = format!("{namespace}.{name}");
            // Sealed once, so every retry writes the same bytes.
            let value = match (value, keyring) {
                (Some(value), Some(keyring)) => {
                    Some(keyring.seal(&key, &value).map_err(anyhow::Error::msg)?)
                }
                (Some(_), None) => bail!(NO_KEY),
                (None, _) => None,
            };
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
        self.publish_record("publishing a deploy", record, Some(wasm))
    }

    fn function_scaled(&self, record: FunctionRecord) -> BoxFuture<'static, anyhow::Result<()>> {
        self.publish_record("publishing a scale", record, None)
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
