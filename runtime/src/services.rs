//! The services a function may import beyond WASI 0.2 (the `services` world in `wit/world.wit`):
//! `wasi:keyvalue` (store, atomics, batch), `wasi:config/store` and `wasi:logging/logging`.
//!
//! - **Key-value.** Buckets are scoped to the function's namespace: the same bucket name in two
//!   namespaces is two buckets. `default` opens in every namespace; any other name opens only when the
//!   function lists it ([`crate::FunctionSpec::keyvalue_buckets`]), else `access-denied`. Keys are at
//!   most [`MAX_KEY_BYTES`], values at most [`MAX_VALUE_BYTES`], a batch at most [`MAX_BATCH_KEYS`]
//!   keys. `increment` keeps the value as decimal text (as wasmtime's own implementation does) and is
//!   atomic in the store. Storage is a [`KeyValueStore`] the embedder provides (the gateway's is
//!   SQLite); [`MemoryKeyValue`] when it provides none. Calls into the store run on the blocking pool.
//! - **Configuration.** The function's [`crate::FunctionSpec::config`] values, read-only.
//! - **Logging.** Each call is a line in the function's log (and `tracing`), with its level and context.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::Error;
use crate::logs::FunctionLogs;

mod sql;
pub use sql::{NoSqlite, SqlError, SqlRows, SqlValue, SqliteStore};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Keys in one batch call, and in one page of `list-keys`.
pub const MAX_BATCH_KEYS: usize = 1000;
/// The bucket every namespace has.
pub const DEFAULT_BUCKET: &str = "default";
/// Longest log message kept from one `wasi:logging` call.
const MAX_LOG_MESSAGE_BYTES: usize = 16 * 1024;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasmgate:function/services",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use bindings::wasi::config::store as config;
use bindings::wasi::keyvalue::{atomics, batch, store};
use bindings::wasi::logging::logging;

/// Where key-value data lives. Every method blocks; the runtime calls them on the blocking pool.
/// `namespace` and `bucket` together name a bucket; keys and values are already within bounds.
pub trait KeyValueStore: Send + Sync + std::fmt::Debug + 'static {
    /// The value of `key`, if any.
    fn get(&self, namespace: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Sets `key` to `value`.
    fn set(&self, namespace: &str, bucket: &str, key: &str, value: &[u8]) -> Result<(), String>;
    /// Deletes `key` (nothing if absent).
    fn delete(&self, namespace: &str, bucket: &str, key: &str) -> Result<(), String>;
    /// Up to `limit` keys in order, starting after the first `offset`; and whether more follow.
    fn keys(
        &self,
        namespace: &str,
        bucket: &str,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String>;
    /// Adds `delta` to the decimal number in `key` (0 when absent) atomically; the new value.
    fn increment(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, String>;
    /// Sets several keys in one step.
    fn set_many(
        &self,
        namespace: &str,
        bucket: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), String>;
    /// Deletes several keys in one step.
    fn delete_many(&self, namespace: &str, bucket: &str, keys: &[String]) -> Result<(), String>;
}

/// The embedder's storage behind the services.
#[derive(Debug, Clone)]
pub(crate) struct Stores {
    pub(crate) keyvalue: Arc<dyn KeyValueStore>,
    pub(crate) sqlite: Arc<dyn SqliteStore>,
}

/// One bucket's keys and values, in key order.
type BucketData = BTreeMap<String, Vec<u8>>;

/// A [`KeyValueStore`] in memory: gone when the process ends. For tests and embedders without storage.
#[derive(Debug, Default)]
pub struct MemoryKeyValue {
    /// By namespace and bucket name.
    buckets: Mutex<BTreeMap<(String, String), BucketData>>,
}

impl MemoryKeyValue {
    fn with<T>(&self, namespace: &str, bucket: &str, f: impl FnOnce(&mut BucketData) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        f(buckets
            .entry((namespace.to_string(), bucket.to_string()))
            .or_default())
    }
}

impl KeyValueStore for MemoryKeyValue {
    fn get(&self, namespace: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.with(namespace, bucket, |b| b.get(key).cloned()))
    }

    fn set(&self, namespace: &str, bucket: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.with(namespace, bucket, |b| {
            b.insert(key.to_string(), value.to_vec())
        });
        Ok(())
    }

    fn delete(&self, namespace: &str, bucket: &str, key: &str) -> Result<(), String> {
        self.with(namespace, bucket, |b| b.remove(key));
        Ok(())
    }

    fn keys(
        &self,
        namespace: &str,
        bucket: &str,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        Ok(self.with(namespace, bucket, |b| {
            let skip = usize::try_from(offset).unwrap_or(usize::MAX);
            let keys: Vec<String> = b.keys().skip(skip).take(limit + 1).cloned().collect();
            let more = keys.len() > limit;
            (keys.into_iter().take(limit).collect(), more)
        }))
    }

    fn increment(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, String> {
        self.with(namespace, bucket, |b| {
            let next = add_to_counter(b.get(key).map(Vec::as_slice), key, delta)?;
            b.insert(key.to_string(), next.to_string().into_bytes());
            Ok(next)
        })
    }

    fn set_many(
        &self,
        namespace: &str,
        bucket: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        self.with(namespace, bucket, |b| {
            for (key, value) in entries {
                b.insert(key.clone(), value.clone());
            }
        });
        Ok(())
    }

    fn delete_many(&self, namespace: &str, bucket: &str, keys: &[String]) -> Result<(), String> {
        self.with(namespace, bucket, |b| {
            for key in keys {
                b.remove(key);
            }
        });
        Ok(())
    }
}

/// What `increment` stores in `key` after adding `delta` to its `current` value (none: 0). A counter
/// is kept as decimal text; another value, or an overflow, is an error.
pub fn add_to_counter(current: Option<&[u8]>, key: &str, delta: u64) -> Result<u64, String> {
    let current = match current {
        None => 0,
        Some(value) => std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("{key:?} does not hold a decimal counter"))?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| format!("incrementing {key:?} overflows"))
}

/// An open bucket, as the guest holds it.
#[derive(Debug)]
pub struct Bucket {
    name: String,
}

/// What one request's services need; built per request from the function and the runtime.
#[derive(Debug, Clone)]
pub(crate) struct ServicesCtx {
    pub(crate) keyvalue: Arc<dyn KeyValueStore>,
    pub(crate) namespace: Arc<str>,
    pub(crate) buckets: Arc<[String]>,
    pub(crate) config: Arc<[(String, String)]>,
    pub(crate) logs: Arc<FunctionLogs>,
    /// The trace of the request these services serve, for its `wasi:logging` lines.
    pub(crate) trace_id: Option<Arc<str>>,
    /// Spin's variables and the labels of the Spin stores it may open (see `spin.rs`).
    pub(crate) spin_variables: Arc<[(String, String)]>,
    pub(crate) spin_stores: Arc<[String]>,
    /// Where Spin's SQLite databases live, and the labels it may open.
    pub(crate) sqlite: Arc<dyn SqliteStore>,
    pub(crate) spin_databases: Arc<[String]>,
}

/// The services' view of a request's store.
pub(crate) struct Services<'a> {
    pub(crate) ctx: &'a ServicesCtx,
    pub(crate) table: &'a mut ResourceTable,
}

pub(crate) struct HasServices;

impl HasData for HasServices {
    type Data<'a> = Services<'a>;
}

/// Adds every service to the linker; `view` finds them in a request's state.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> Services<'_>,
) -> Result<(), Error> {
    let fail = |e: wasmtime::Error| Error::internal("adding the services to the linker", &e);
    store::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    atomics::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    batch::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    config::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    logging::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    Ok(())
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

/// A key within [`MAX_KEY_BYTES`], or why not (every key-value interface's bound).
fn checked_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key is at most {MAX_KEY_BYTES} bytes; this one has {}",
            key.len()
        ));
    }
    Ok(())
}

/// A value within [`MAX_VALUE_BYTES`], or why not.
fn checked_value(value: &[u8]) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "a value is at most {MAX_VALUE_BYTES} bytes; this one has {}",
            value.len()
        ));
    }
    Ok(())
}

/// Runs `f` on the store off the async threads, in the function's namespace; an error is its text,
/// which each key-value interface (here, and Spin's in `spin.rs`) wraps in its own `other`. The
/// future owns what it needs, so no borrow of the request's state lives across the wait.
pub(crate) fn on_store<T: Send + 'static>(
    ctx: &ServicesCtx,
    f: impl FnOnce(&dyn KeyValueStore, &str) -> Result<T, String> + Send + 'static,
) -> impl Future<Output = Result<T, String>> + Send + 'static {
    let store = ctx.keyvalue.clone();
    let namespace = ctx.namespace.clone();
    async move {
        match tokio::task::spawn_blocking(move || f(store.as_ref(), &namespace)).await {
            Ok(result) => result,
            Err(error) => Err(format!("the store failed: {error}")),
        }
    }
}

/// `get` of `key` in `bucket`, as every key-value interface has it: the key's bound, then the
/// store.
pub(crate) fn bucket_get(
    ctx: &ServicesCtx,
    bucket: String,
    key: String,
) -> impl Future<Output = Result<Option<Vec<u8>>, String>> + Send + 'static {
    let checked = checked_key(&key);
    let run = on_store(ctx, move |kv, ns| kv.get(ns, &bucket, &key));
    async move { checked.map(|()| run)?.await }
}

/// `set`: the key's and the value's bounds, then the store.
pub(crate) fn bucket_set(
    ctx: &ServicesCtx,
    bucket: String,
    key: String,
    value: Vec<u8>,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let checked = checked_key(&key).and_then(|()| checked_value(&value));
    let run = on_store(ctx, move |kv, ns| kv.set(ns, &bucket, &key, &value));
    async move { checked.map(|()| run)?.await }
}

/// `delete`: the key's bound, then the store.
pub(crate) fn bucket_delete(
    ctx: &ServicesCtx,
    bucket: String,
    key: String,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let checked = checked_key(&key);
    let run = on_store(ctx, move |kv, ns| kv.delete(ns, &bucket, &key));
    async move { checked.map(|()| run)?.await }
}

/// `exists`: a `get` that keeps only whether there is a value.
pub(crate) fn bucket_exists(
    ctx: &ServicesCtx,
    bucket: String,
    key: String,
) -> impl Future<Output = Result<bool, String>> + Send + 'static {
    let get = bucket_get(ctx, bucket, key);
    async move { Ok(get.await?.is_some()) }
}

fn check_key(key: &str) -> Result<(), store::Error> {
    checked_key(key).map_err(store::Error::Other)
}

fn check_value(value: &[u8]) -> Result<(), store::Error> {
    checked_value(value).map_err(store::Error::Other)
}

fn check_batch(count: usize) -> Result<(), store::Error> {
    if count > MAX_BATCH_KEYS {
        return Err(store::Error::Other(format!(
            "a batch is at most {MAX_BATCH_KEYS} keys; this one has {count}"
        )));
    }
    Ok(())
}

impl Services<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }
}

/// [`on_store`] with `wasi:keyvalue`'s error.
fn blocking<T: Send + 'static>(
    ctx: &ServicesCtx,
    f: impl FnOnce(&dyn KeyValueStore, &str) -> Result<T, String> + Send + 'static,
) -> impl Future<Output = Result<T, store::Error>> + Send + 'static {
    let run = on_store(ctx, f);
    async move { run.await.map_err(store::Error::Other) }
}

impl store::Host for Services<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let name = if identifier.is_empty() {
            DEFAULT_BUCKET.to_string()
        } else {
            identifier
        };
        if name != DEFAULT_BUCKET && !self.ctx.buckets.contains(&name) {
            return Ok(Err(store::Error::AccessDenied));
        }
        if name.len() > MAX_KEY_BYTES {
            return Ok(Err(store::Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(Bucket { name })?))
    }
}

impl store::HostBucket for Services<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let name = self.bucket(&bucket)?;
        Ok(bucket_get(self.ctx, name, key)
            .await
            .map_err(store::Error::Other))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let name = self.bucket(&bucket)?;
        Ok(bucket_set(self.ctx, name, key, value)
            .await
            .map_err(store::Error::Other))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let name = self.bucket(&bucket)?;
        Ok(bucket_delete(self.ctx, name, key)
            .await
            .map_err(store::Error::Other))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let name = self.bucket(&bucket)?;
        Ok(bucket_exists(self.ctx, name, key)
            .await
            .map_err(store::Error::Other))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let name = self.bucket(&bucket)?;
        let offset = cursor.unwrap_or(0);
        Ok(blocking(self.ctx, move |kv, ns| {
            kv.keys(ns, &name, offset, MAX_BATCH_KEYS)
        })
        .await
        .map(|(keys, more)| store::KeyResponse {
            cursor: more.then(|| offset + keys.len() as u64),
            keys,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for Services<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let name = self.bucket(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(blocking(self.ctx, move |kv, ns| kv.increment(ns, &name, &key, delta)).await)
    }
}

impl batch::Host for Services<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let name = self.bucket(&bucket)?;
        if let Err(e) =
            check_batch(keys.len()).and_then(|()| keys.iter().try_for_each(|k| check_key(k)))
        {
            return Ok(Err(e));
        }
        Ok(blocking(self.ctx, move |kv, ns| {
            keys.into_iter()
                .map(|key| Ok(kv.get(ns, &name, &key)?.map(|value| (key, value))))
                .collect()
        })
        .await)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let name = self.bucket(&bucket)?;
        if let Err(e) = check_batch(key_values.len()).and_then(|()| {
            key_values
                .iter()
                .try_for_each(|(k, v)| check_key(k).and_then(|()| check_value(v)))
        }) {
            return Ok(Err(e));
        }
        Ok(blocking(self.ctx, move |kv, ns| kv.set_many(ns, &name, &key_values)).await)
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let name = self.bucket(&bucket)?;
        if let Err(e) =
            check_batch(keys.len()).and_then(|()| keys.iter().try_for_each(|k| check_key(k)))
        {
            return Ok(Err(e));
        }
        Ok(blocking(self.ctx, move |kv, ns| kv.delete_many(ns, &name, &keys)).await)
    }
}

impl config::Host for Services<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config::Error>> {
        Ok(Ok(self
            .ctx
            .config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config::Error>> {
        Ok(Ok(self.ctx.config.to_vec()))
    }
}

impl logging::Host for Services<'_> {
    async fn log(
        &mut self,
        level: logging::Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let level = match level {
            logging::Level::Trace => crate::logs::Level::Trace,
            logging::Level::Debug => crate::logs::Level::Debug,
            logging::Level::Info => crate::logs::Level::Info,
            logging::Level::Warn => crate::logs::Level::Warn,
            logging::Level::Error => crate::logs::Level::Error,
            logging::Level::Critical => crate::logs::Level::Critical,
        };
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE_BYTES {
            let mut cut = MAX_LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.ctx
            .logs
            .log(level, &context, &message, self.ctx.trace_id.as_ref());
        Ok(())
    }
}
