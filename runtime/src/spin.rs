//! Spin's host interfaces, for components built with Spin's SDKs (the `spin` world in
//! `wit/world.wit`), and the refusal of those wasmgate does not provide.
//!
//! - **Variables** (`fermyon:spin/variables@2.0.0`, and `spin:variables@3.0.0` of `spin-sdk` 7,
//!   whose `get` is async): the values the embedder resolved
//!   ([`crate::FunctionSpec::spin_variables`]); a name that is not lower snake case is
//!   `invalid-name`, one without a value `undefined`, as in Spin.
//! - **Key-value** (`fermyon:spin/key-value@2.0.0`, and `spin:key-value@3.0.0` of `spin-sdk` 7, async,
//!   its `get-keys` a stream): a store opens only when its label is listed
//!   ([`crate::FunctionSpec::spin_key_value_stores`], else `access-denied`, as Spin answers) and is
//!   the key-value bucket of that name in the function's namespace: the same data `wasi:keyvalue`
//!   sees, with the same bounds on keys and values, in the embedder's [`KeyValueStore`].
//! - **SQLite** (`fermyon:spin/sqlite@2.0.0`, and `spin:sqlite@3.1.0` of `spin-sdk` 7, in
//!   `spin/sqlite.rs`): a database opens only when its label is listed
//!   ([`crate::FunctionSpec::spin_sqlite_databases`], else `access-denied`); its statements run in
//!   the embedder's [`crate::services::SqliteStore`], which holds the bounds.
//! - **Every other Spin interface** (`fermyon:spin/redis`, `postgres`, `mysql`, `mqtt`, `llm`,
//!   `sqlite`, and the other `spin:*` packages) is refused when the component is loaded, naming it:
//!   [`check_spin_imports`].

use wasmtime::component::{Component, Linker, Resource};

use crate::Error;
use crate::services::{
    HasServices, KeyValueStore, MAX_BATCH_KEYS, Services, ServicesCtx, bucket_delete,
    bucket_exists, bucket_get, bucket_set, on_store,
};

/// Keys `get-keys` returns at most; a store with more answers an error rather than an unbounded
/// list.
pub const MAX_LISTED_KEYS: usize = 10_000;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasmgate:function/spin",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": super::SpinStore,
            "spin:key-value/key-value.store": super::SpinStore,
            "fermyon:spin/sqlite.connection": super::SpinConnection,
            "spin:sqlite/sqlite.connection": super::SpinConnection,
        },
    });
}

use bindings::fermyon::spin::key_value;
mod sqlite;

use bindings::fermyon::spin::variables;
use bindings::spin::key_value::key_value as key_value3;
use bindings::spin::variables::variables as variables3;

/// The Spin interfaces wasmgate provides.
pub const PROVIDED: [&str; 6] = [
    "fermyon:spin/variables@2.0.0",
    "fermyon:spin/key-value@2.0.0",
    "fermyon:spin/sqlite@2.0.0",
    "spin:variables/variables@3.0.0",
    "spin:key-value/key-value@3.0.0",
    "spin:sqlite/sqlite@3.1.0",
];

/// A database a guest opened, and what its statements told of its last insert and changes.
#[derive(Debug)]
pub struct SpinConnection {
    database: String,
    last_insert_rowid: i64,
    changes: u64,
}

impl SpinConnection {
    fn new(database: String) -> SpinConnection {
        SpinConnection {
            database,
            last_insert_rowid: 0,
            changes: 0,
        }
    }
}

/// A store a guest opened.
#[derive(Debug)]
pub struct SpinStore {
    bucket: String,
}

/// Adds Spin's interfaces to the linker.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> Services<'_>,
) -> Result<(), Error> {
    let fail = |e: wasmtime::Error| Error::internal("adding Spin's interfaces to the linker", &e);
    variables::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    key_value::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    bindings::fermyon::spin::sqlite::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    bindings::spin::sqlite::sqlite::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    variables3::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    key_value3::add_to_linker::<_, HasServices>(linker, view).map_err(fail)?;
    Ok(())
}

/// What a Spin interface is, for a person: `Redis` for `fermyon:spin/redis@2.0.0`.
fn what(interface: &str) -> &'static str {
    let name = interface
        .split_once('/')
        .map_or(interface, |(_, rest)| rest)
        .split('@')
        .next()
        .unwrap_or_default();
    match name {
        "redis" => "Spin's Redis client",
        "postgres" => "Spin's PostgreSQL client",
        "mysql" => "Spin's MySQL client",
        "mqtt" => "Spin's MQTT client",
        "llm" => "Spin's LLM inferencing",
        "sqlite" => "Spin's SQLite",
        "key-value" => "Spin's key-value store (this version)",
        "variables" => "Spin's variables (this version)",
        _ => "a Spin interface",
    }
}

/// Refuses a component that imports a Spin interface wasmgate does not provide, naming it (and
/// each other one it imports), before linking would fail with a less direct message.
pub(crate) fn check_spin_imports(
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<(), Error> {
    let missing: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| {
            (name.starts_with("fermyon:spin/") || name.starts_with("spin:"))
                && !PROVIDED.contains(name)
        })
        .map(|name| format!("{name} ({})", what(name)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the component imports {}, which wasmgate does not provide; of Spin's interfaces it \
         provides {}",
        missing.join(", "),
        PROVIDED.join(" and "),
    )))
}

/// Spin's rule for a variable name: lower snake case.
fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('_').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Why a variable has no value, in both generations' terms.
enum Missing {
    InvalidName(String),
    Undefined(String),
}

/// The value of the component variable `name`.
fn variable(ctx: &ServicesCtx, name: &str) -> Result<String, Missing> {
    if !is_variable_name(name) {
        return Err(Missing::InvalidName(format!(
            "{name:?} is not a variable name (lower snake case)"
        )));
    }
    ctx.spin_variables
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.clone())
        .ok_or_else(|| Missing::Undefined(format!("the component has no variable {name:?}")))
}

impl variables::Host for Services<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(variable(self.ctx, &name).map_err(|missing| match missing {
            Missing::InvalidName(why) => variables::Error::InvalidName(why),
            Missing::Undefined(why) => variables::Error::Undefined(why),
        }))
    }
}

impl variables3::Host for Services<'_> {}

impl<U> variables3::HostWithStore<U> for HasServices {
    async fn get(
        store: &wasmtime::component::Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables3::Error>> {
        let found = store.with(|mut view| variable(view.get().ctx, &name));
        Ok(found.map_err(|missing| match missing {
            Missing::InvalidName(why) => variables3::Error::InvalidName(why),
            Missing::Undefined(why) => variables3::Error::Undefined(why),
        }))
    }
}

type KvResult<T> = wasmtime::Result<Result<T, key_value::Error>>;

impl Services<'_> {
    fn spin_bucket(&self, store: &Resource<SpinStore>) -> wasmtime::Result<String> {
        Ok(self.table.get(store)?.bucket.clone())
    }
}

impl key_value::Host for Services<'_> {}

impl key_value::HostStore for Services<'_> {
    async fn open(&mut self, label: String) -> KvResult<Resource<SpinStore>> {
        if !self.ctx.spin_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        Ok(Ok(self.table.push(SpinStore { bucket: label })?))
    }

    async fn get(&mut self, store: Resource<SpinStore>, key: String) -> KvResult<Option<Vec<u8>>> {
        let bucket = self.spin_bucket(&store)?;
        Ok(bucket_get(self.ctx, bucket, key).await.map_err(v2))
    }

    async fn set(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
        value: Vec<u8>,
    ) -> KvResult<()> {
        let bucket = self.spin_bucket(&store)?;
        Ok(bucket_set(self.ctx, bucket, key, value).await.map_err(v2))
    }

    async fn delete(&mut self, store: Resource<SpinStore>, key: String) -> KvResult<()> {
        let bucket = self.spin_bucket(&store)?;
        Ok(bucket_delete(self.ctx, bucket, key).await.map_err(v2))
    }

    async fn exists(&mut self, store: Resource<SpinStore>, key: String) -> KvResult<bool> {
        let bucket = self.spin_bucket(&store)?;
        Ok(bucket_exists(self.ctx, bucket, key).await.map_err(v2))
    }

    async fn get_keys(&mut self, store: Resource<SpinStore>) -> KvResult<Vec<String>> {
        let bucket = self.spin_bucket(&store)?;
        Ok(on_store(self.ctx, move |kv, ns| all_keys(kv, ns, &bucket))
            .await
            .map_err(v2))
    }

    async fn drop(&mut self, store: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

/// The keys of a bucket, at most [`MAX_LISTED_KEYS`].
fn all_keys(kv: &dyn KeyValueStore, namespace: &str, bucket: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    loop {
        let (page, more) = kv.keys(namespace, bucket, keys.len() as u64, MAX_BATCH_KEYS)?;
        keys.extend(page);
        if keys.len() > MAX_LISTED_KEYS {
            return Err(format!(
                "the store has more than {MAX_LISTED_KEYS} keys, more than get-keys lists"
            ));
        }
        if !more {
            return Ok(keys);
        }
    }
}

/// A store's failure (its text) in the 0.2 generation's terms.
fn v2(why: String) -> key_value::Error {
    key_value::Error::Other(why)
}

/// A store's failure (its text) in the 0.3 generation's terms.
fn v3(why: String) -> key_value3::Error {
    key_value3::Error::Other(why)
}

type Kv3Result<T> = wasmtime::Result<Result<T, key_value3::Error>>;

/// What a 0.3 call needs from the request's state, taken without holding it across the wait: the
/// services' context and the bucket of `store`.
fn context_of<U>(
    accessor: &wasmtime::component::Accessor<U, HasServices>,
    store: &Resource<SpinStore>,
) -> wasmtime::Result<(ServicesCtx, String)> {
    accessor.with(|mut view| {
        let services = view.get();
        let bucket = services.table.get(store)?.bucket.clone();
        Ok((services.ctx.clone(), bucket))
    })
}

impl key_value3::Host for Services<'_> {}

impl key_value3::HostStore for Services<'_> {
    async fn drop(&mut self, store: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl<U> key_value3::HostStoreWithStore<U> for HasServices {
    async fn open(
        accessor: &wasmtime::component::Accessor<U, Self>,
        label: String,
    ) -> Kv3Result<Resource<SpinStore>> {
        accessor.with(|mut view| {
            let services = view.get();
            if !services.ctx.spin_stores.contains(&label) {
                return Ok(Err(key_value3::Error::AccessDenied));
            }
            Ok(Ok(services.table.push(SpinStore { bucket: label })?))
        })
    }

    async fn get(
        accessor: &wasmtime::component::Accessor<U, Self>,
        store: Resource<SpinStore>,
        key: String,
    ) -> Kv3Result<Option<Vec<u8>>> {
        let (ctx, bucket) = context_of(accessor, &store)?;
        Ok(bucket_get(&ctx, bucket, key).await.map_err(v3))
    }

    async fn set(
        accessor: &wasmtime::component::Accessor<U, Self>,
        store: Resource<SpinStore>,
        key: String,
        value: Vec<u8>,
    ) -> Kv3Result<()> {
        let (ctx, bucket) = context_of(accessor, &store)?;
        Ok(bucket_set(&ctx, bucket, key, value).await.map_err(v3))
    }

    async fn delete(
        accessor: &wasmtime::component::Accessor<U, Self>,
        store: Resource<SpinStore>,
        key: String,
    ) -> Kv3Result<()> {
        let (ctx, bucket) = context_of(accessor, &store)?;
        Ok(bucket_delete(&ctx, bucket, key).await.map_err(v3))
    }

    async fn exists(
        accessor: &wasmtime::component::Accessor<U, Self>,
        store: Resource<SpinStore>,
        key: String,
    ) -> Kv3Result<bool> {
        let (ctx, bucket) = context_of(accessor, &store)?;
        Ok(bucket_exists(&ctx, bucket, key).await.map_err(v3))
    }

    async fn get_keys(
        accessor: &wasmtime::component::Accessor<U, Self>,
        store: Resource<SpinStore>,
    ) -> wasmtime::Result<(
        wasmtime::component::StreamReader<String>,
        wasmtime::component::FutureReader<Result<(), key_value3::Error>>,
    )> {
        let (ctx, bucket) = context_of(accessor, &store)?;
        // Listed whole first (bounded), then handed to the guest as a stream; a failure is an
        // empty stream and the error in the future.
        let listed = on_store(&ctx, move |kv, ns| all_keys(kv, ns, &bucket)).await;
        let (keys, outcome) = match listed {
            Ok(keys) => (keys, Ok(())),
            Err(error) => (Vec::new(), Err(v3(error))),
        };
        accessor.with(|mut view| {
            let stream = wasmtime::component::StreamReader::new(&mut view, keys)?;
            let future = wasmtime::component::FutureReader::new(&mut view, async move {
                Ok::<_, wasmtime::Error>(outcome)
            })?;
            Ok((stream, future))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprovided_interfaces_are_described() {
        assert_eq!(what("fermyon:spin/redis@2.0.0"), "Spin's Redis client");
        assert_eq!(
            what("spin:postgres/postgres@4.2.0"),
            "Spin's PostgreSQL client"
        );
        assert_eq!(what("spin:sqlite/sqlite@3.1.0"), "Spin's SQLite");
        assert_eq!(what("fermyon:spin/other@2.0.0"), "a Spin interface");
    }

    #[test]
    fn variable_names_are_lower_snake_case() {
        for good in ["a", "api_key", "v2"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "A", "a-b", "_a", "a__b", "2a"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}
