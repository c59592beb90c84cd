//! A loaded function: its compiled component, pre-instantiated against the host's imports.

use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::Engine;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use crate::Error;
use crate::invoke::{GuestSetup, RequestState};
use crate::logs::FunctionLogs;
use crate::shared::Pool;
use crate::spec::{FunctionSpec, World};

/// The first eight bytes of a core module: magic and version 1.
const CORE_MODULE_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";
/// The magic shared by every WebAssembly binary.
const WASM_MAGIC: [u8; 4] = *b"\0asm";

/// Instances kept idle per function for reuse. Each holds a slot of the pool while idle, so the number
/// is small; more concurrent requests than this simply create more instances.
const MAX_IDLE_REUSABLE: usize = 16;

/// A function's pre-instance, by the world it exports.
pub(crate) enum Pre {
    P2(ProxyPre<RequestState>),
    P3(ServicePre<RequestState>),
}

/// A live instance of either world.
pub(crate) enum Instance {
    P2(Proxy),
    P3(Service),
}

impl Pre {
    pub(crate) fn world(&self) -> World {
        match self {
            Pre::P2(_) => World::P2,
            Pre::P3(_) => World::P3,
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<RequestState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::P2(pre) => Instance::P2(pre.instantiate_async(store).await?),
            Pre::P3(pre) => Instance::P3(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance that served requests and may serve more.
pub(crate) struct Warm {
    pub(crate) store: Store<RequestState>,
    pub(crate) instance: Instance,
    /// Requests it has served.
    pub(crate) served: u32,
}

/// Where to find a function's component again when its compiled code was unloaded (scale to zero).
#[derive(Clone)]
pub struct WasmSource {
    read: Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>,
    cache_key: Option<Arc<str>>,
}

impl WasmSource {
    /// A source that reads the bytes with `read` (for example from an artifact store).
    pub fn new(read: impl Fn() -> Result<Vec<u8>, String> + Send + Sync + 'static) -> Self {
        WasmSource {
            read: Arc::new(read),
            cache_key: None,
        }
    }

    /// Names the bytes for the compiled-code cache (for example their SHA-256 in hex). The same key
    /// must always mean the same bytes. Without a key, nothing is cached.
    pub fn with_cache_key(mut self, key: &str) -> Self {
        self.cache_key = Some(key.into());
        self
    }

    pub(crate) fn cache_key(&self) -> Option<&str> {
        self.cache_key.as_deref()
    }

    /// A source that keeps the bytes in memory.
    pub fn bytes(wasm: Arc<[u8]>) -> Self {
        WasmSource::new(move || Ok(wasm.to_vec()))
    }

    pub(crate) fn read(&self) -> Result<Vec<u8>, String> {
        (self.read)()
    }
}

impl std::fmt::Debug for WasmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WasmSource(..)")
    }
}

/// A function ready to serve: everything that does not change from one request to the next.
pub(crate) struct Function {
    /// Its name, spec and logs, from which each request's state is made (shared with the pool of
    /// its shared instances).
    pub(crate) guest: Arc<GuestSetup>,
    pub(crate) pre: Pre,
    /// Idle instances, when the function opted into reuse.
    idle: Mutex<Vec<Warm>>,
    /// Instances shared by concurrent requests, when a 0.3 function opted into concurrency; made on
    /// its first request.
    pub(crate) shared: OnceLock<Pool>,
    /// What keeping it loaded costs, in KiB, for the loaded-function budget.
    pub(crate) weight_kib: u32,
}

/// Memory a loaded function takes besides its machine code (type information, the pre-instance,
/// wasmtime's registrations), estimated from measurement: about 0.35 MiB resident per loaded `hello`
/// (86 KB component) in `benches/density.sh`, of which the machine code is the smaller part.
pub const LOADED_FUNCTION_OVERHEAD: usize = 256 * 1024;

impl Function {
    /// Whether its requests go to instances shared by concurrent requests (see `shared.rs`).
    pub(crate) fn shares_instances(&self) -> bool {
        matches!(self.pre, Pre::P3(_))
            && self.guest.spec.max_instance_reuse > 1
            && self.guest.spec.max_instance_concurrency > 1
    }

    /// An idle instance to serve the next request, if reuse is on and one is free.
    pub(crate) fn take_warm(&self) -> Option<Warm> {
        if self.guest.spec.max_instance_reuse <= 1 {
            return None;
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Drops one of its idle instances, freeing its pool slot; false when it has none.
    pub(crate) fn evict_idle(&self) -> bool {
        let evicted = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        evicted.is_some()
    }

    /// Offers an instance that finished a request; kept only if it may serve more and there is room.
    pub(crate) fn give_back(&self, warm: Warm) {
        if warm.served >= self.guest.spec.max_instance_reuse {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_REUSABLE {
            idle.push(warm);
        }
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.guest.name)
            .finish_non_exhaustive()
    }
}

/// Tells a person what is wrong with bytes that are not a component, before handing them to the
/// compiler whose messages are less direct.
fn check_header(wasm: &[u8]) -> Result<(), Error> {
    if wasm.len() < 8 || wasm[..4] != WASM_MAGIC {
        return Err(Error::invalid(
            "not a WebAssembly binary (it does not start with \\0asm)",
        ));
    }
    if wasm[..8] == CORE_MODULE_HEADER {
        return Err(Error::invalid(
            "this is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target \
             (or wrap it with `wasm-tools component new`) so that it exports wasi:http/incoming-handler \
             (WASI 0.2) or wasi:http/handler (WASI 0.3)",
        ));
    }
    Ok(())
}

fn weight_kib(component: &Component) -> u32 {
    let range = component.image_range();
    let code = (range.end as usize).saturating_sub(range.start as usize);
    u32::try_from((code + LOADED_FUNCTION_OVERHEAD) / 1024).unwrap_or(u32::MAX)
}

/// Compiles `wasm` into a component, after checking its header. CPU-heavy: call it from a blocking
/// thread.
pub(crate) fn compile_component(engine: &Engine, wasm: &[u8]) -> Result<Component, Error> {
    check_header(wasm)?;
    Component::new(engine, wasm).map_err(|e| Error::invalid(format!("{e:#}")))
}

/// Pre-instantiates a compiled component against the host's imports.
pub(crate) fn pre_instantiate(
    linker: &Linker<RequestState>,
    name: &str,
    component: &Component,
    spec: Arc<FunctionSpec>,
    logs: Arc<FunctionLogs>,
) -> Result<Function, Error> {
    // A Spin interface wasmgate does not provide is named with what it is; any other import the
    // host lacks fails below, where wasmtime's message names it.
    crate::spin::check_spin_imports(linker.engine(), component)?;
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| Error::invalid(format!("{e:#}")))?;
    // A component may only export one of the two handlers in practice; the 0.3 one is tried first,
    // as `wasmtime serve` does.
    let pre = match ServicePre::new(instance_pre.clone()) {
        Ok(pre) => Pre::P3(pre),
        Err(p3) => Pre::P2(ProxyPre::new(instance_pre).map_err(|p2| {
            Error::invalid(format!(
                "the component exports neither wasi:http/incoming-handler@0.2 (the wasi:http/proxy \
                 world of WASI 0.2) nor wasi:http/handler@0.3 (the wasi:http/service world of WASI \
                 0.3): as 0.2: {p2:#}; as 0.3: {p3:#}"
            ))
        })?),
    };
    Ok(Function {
        guest: Arc::new(GuestSetup {
            name: name.into(),
            allowed_hosts: spec.allowed_hosts.clone().into(),
            namespace: spec.namespace.as_str().into(),
            keyvalue_buckets: spec.keyvalue_buckets.clone().into(),
            config: spec.config.clone().into(),
            spin_variables: spec.spin_variables.clone().into(),
            spin_stores: spec.spin_key_value_stores.clone().into(),
            spin_databases: spec.spin_sqlite_databases.clone().into(),
            spec,
            logs,
        }),
        pre,
        idle: Mutex::new(Vec::new()),
        shared: OnceLock::new(),
        weight_kib: weight_kib(component),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked_before_compiling() {
        let cases: [(&[u8], Option<&str>); 4] = [
            (b"", Some("not a WebAssembly binary")),
            (b"hello world", Some("not a WebAssembly binary")),
            (b"\0asm\x01\0\0\0", Some("core WebAssembly module")),
            (b"\0asm\x0d\0\x01\0", None),
        ];
        for (bytes, expected) in cases {
            let result = check_header(bytes);
            match expected {
                None => assert!(result.is_ok(), "{bytes:?}"),
                Some(text) => {
                    let message = result.expect_err("should be rejected").to_string();
                    assert!(message.contains(text), "{bytes:?}: {message}");
                }
            }
        }
    }
}
