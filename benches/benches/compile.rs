//! What a function costs before its first request: compiling a component (a deploy of new bytes) and
//! loading its compiled code from the disk cache (a restart, or a scale from zero). For a small
//! component (`hello`) and a larger one (`markdown`, which carries a real Markdown library).
//!
//! Run: `cargo bench -p wasmgate-benches --bench compile`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wasmgate_runtime::{FunctionSpec, Runtime, RuntimeConfig, WasmSource};

fn components() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("hello", wasmgate_guests::HELLO),
        ("markdown", wasmgate_guests::MARKDOWN),
    ]
    .into_iter()
    .map(|(name, path)| (name, std::fs::read(path).expect("the guests are built")))
    .collect()
}

fn compile(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for (name, wasm) in components() {
        let label = format!("{name} ({} KB)", wasm.len() / 1000);
        group.bench_with_input(BenchmarkId::from_parameter(label), &wasm, |b, wasm| {
            // Without a cache key nothing is cached: every iteration compiles and pre-instantiates.
            b.to_async(&tokio)
                .iter(|| async { runtime.validate(wasm.clone(), None).await.expect("valid") });
        });
    }
    group.finish();
}

fn load_from_disk_cache(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let cache = std::env::temp_dir().join(format!("wasmgate-bench-cache-{}", std::process::id()));
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let mut group = c.benchmark_group("load_from_disk_cache");
    for (name, wasm) in components() {
        let source = WasmSource::bytes(wasm.clone().into()).with_cache_key(name);
        // The deploy compiles once and fills the cache; every load after it maps the cached code.
        tokio
            .block_on(runtime.deploy(name, wasm.clone(), source, FunctionSpec::default(), false))
            .expect("deploys");
        let label = format!("{name} ({} KB)", wasm.len() / 1000);
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.to_async(&tokio).iter(|| async {
                runtime.unload(name);
                runtime.warm(name).await.expect("loads");
            });
        });
    }
    group.finish();
    drop(runtime);
    let _ = std::fs::remove_dir_all(&cache);
}

criterion_group!(benches, compile, load_from_disk_cache);
criterion_main!(benches);
