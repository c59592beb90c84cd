//! Cold start: the first request to a function that is deployed but not loaded, with its compiled
//! code in the disk cache (what a restart, or scale from zero, costs). Also compile time and
//! deploy throughput for comparison.
//!
//! Run: `cargo bench -p wasmgate-benches --bench cold_start` (`COLD_START_FUNCTIONS=N`, default 200).
//! Every function is a distinct component: `hello` with a custom section that makes its bytes (and so
//! its digest and cache entry) unique.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use wasmgate_runtime::{FunctionSpec, Runtime, RuntimeConfig, WasmSource};

/// Appends a custom section named `wasmgate-variant` holding `n`, giving a distinct, valid component.
fn variant(base: &[u8], n: usize) -> Vec<u8> {
    fn leb(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"wasmgate-variant";
    let payload = n.to_le_bytes();
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(&payload);
    let mut out = base.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn first_request(runtime: &Runtime, name: &str) -> Duration {
    let request = http::Request::get("http://localhost/")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let started = Instant::now();
    let response = runtime.invoke(name, request).await.expect("answers");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let elapsed = started.elapsed();
    assert!(!body.is_empty());
    elapsed
}

fn main() {
    let count: usize = std::env::var("COLD_START_FUNCTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let cache = std::env::temp_dir().join(format!("wasmgate-cold-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let base = std::fs::read(wasmgate_guests::HELLO).expect("hello is built");
    let config = RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    };

    tokio.block_on(async {
        let runtime = Runtime::new(config.clone()).expect("runtime");
        let started = Instant::now();
        let mut compiles = Vec::with_capacity(count);
        for n in 0..count {
            let wasm = variant(&base, n);
            let source =
                WasmSource::bytes(wasm.clone().into()).with_cache_key(&format!("variant-{n}"));
            let t = Instant::now();
            runtime
                .deploy(
                    &format!("f{n}"),
                    wasm,
                    source,
                    FunctionSpec::default(),
                    false,
                )
                .await
                .expect("deploys");
            compiles.push(t.elapsed());
        }
        let deploy_total = started.elapsed();
        drop(runtime);

        // A fresh runtime, as after a restart: everything registered, nothing loaded, cache warm.
        let runtime = Runtime::new(config).expect("runtime");
        for n in 0..count {
            let wasm = variant(&base, n);
            let source = WasmSource::bytes(wasm.into()).with_cache_key(&format!("variant-{n}"));
            runtime.register(&format!("f{n}"), source, FunctionSpec::default());
        }
        let mut cold = Vec::with_capacity(count);
        for n in 0..count {
            cold.push(first_request(&runtime, &format!("f{n}")).await);
        }
        let mut warm = Vec::with_capacity(count);
        for n in 0..count {
            warm.push(first_request(&runtime, &format!("f{n}")).await);
        }
        // Deploy to first response: new bytes (a cache miss), deployed and then called at once, as
        // `faas-cli up` followed by a request would.
        let fresh = count.min(50);
        let mut deploy_to_answer = Vec::with_capacity(fresh);
        for n in count..count + fresh {
            let wasm = variant(&base, n);
            let source =
                WasmSource::bytes(wasm.clone().into()).with_cache_key(&format!("variant-{n}"));
            let name = format!("f{n}");
            let t = Instant::now();
            runtime
                .deploy(&name, wasm, source, FunctionSpec::default(), true)
                .await
                .expect("deploys");
            first_request(&runtime, &name).await;
            deploy_to_answer.push(t.elapsed());
        }
        compiles.sort();
        cold.sort();
        warm.sort();
        deploy_to_answer.sort();
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
        println!(
            "cold start, {count} distinct hello components, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "  compile + deploy        p50 {}  p99 {}  ({:.0} deploys/s)",
            ms(percentile(&compiles, 0.5)),
            ms(percentile(&compiles, 0.99)),
            count as f64 / deploy_total.as_secs_f64()
        );
        println!(
            "  first request (cached)  p50 {}  p99 {}",
            ms(percentile(&cold, 0.5)),
            ms(percentile(&cold, 0.99))
        );
        println!(
            "  next request (loaded)   p50 {}  p99 {}",
            ms(percentile(&warm, 0.5)),
            ms(percentile(&warm, 0.99))
        );
        println!(
            "  deploy to first answer  p50 {}  p99 {}  ({fresh} new components)",
            ms(percentile(&deploy_to_answer, 0.5)),
            ms(percentile(&deploy_to_answer, 0.99))
        );
        println!(
            "  cold / warm (p50)       {:.1}x",
            percentile(&cold, 0.5).as_secs_f64() / percentile(&warm, 0.5).as_secs_f64()
        );
    });
    let _ = std::fs::remove_dir_all(&cache);
}
