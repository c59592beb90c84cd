//! What one request costs inside the process, without HTTP: `Runtime::invoke` of the `hello` guest,
//! with the pooling allocator, with on-demand allocation, and with instance reuse; one at a time and
//! 16 at once.
//!
//! Run: `cargo bench -p wasmgate-benches --bench invoke`

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use http_body_util::{BodyExt, Empty};
use wasmgate_runtime::{Allocator, FunctionSpec, Runtime, RuntimeConfig};

fn runtime(tokio: &tokio::runtime::Runtime, allocator: Allocator, reuse: u32) -> Runtime {
    let runtime = Runtime::new(RuntimeConfig {
        allocator,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let wasm = std::fs::read(wasmgate_guests::HELLO).expect("hello is built");
    tokio
        .block_on(runtime.load(
            "hello",
            wasm,
            FunctionSpec {
                max_instance_reuse: reuse,
                ..FunctionSpec::default()
            },
        ))
        .expect("hello loads");
    runtime
}

async fn one(runtime: &Runtime) {
    let request = http::Request::get("http://localhost/bench")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = runtime
        .invoke("hello", request)
        .await
        .expect("hello answers");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(!body.is_empty());
}

fn invoke(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut group = c.benchmark_group("invoke_hello");
    let modes = [
        ("pooling", Allocator::Pooling, 0),
        ("on_demand", Allocator::OnDemand, 0),
        ("pooling_reuse", Allocator::Pooling, 128),
    ];
    for (label, allocator, reuse) in modes {
        let runtime = runtime(&tokio, allocator, reuse);
        for parallel in [1usize, 16] {
            group.throughput(Throughput::Elements(parallel as u64));
            group.bench_with_input(
                BenchmarkId::new(label, parallel),
                &parallel,
                |b, &parallel| {
                    b.to_async(&tokio)
                        .iter(|| join_all((0..parallel).map(|_| one(&runtime))));
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, invoke);
criterion_main!(benches);
