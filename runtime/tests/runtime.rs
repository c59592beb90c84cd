//! The runtime against real components from `guests/`: one fresh instance per request, the errors a
//! caller must tell apart, and captured output.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmgate_runtime::logs::LogStream;
use wasmgate_runtime::{Allocator, Error, FunctionSpec, GuestDir, Runtime, RuntimeConfig};

#[path = "runtime/p3.rs"]
mod p3;

fn runtime(allocator: Allocator) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 16,
        allocator,
        ..RuntimeConfig::default()
    })
    .expect("runtime starts")
}

async fn load(runtime: &Runtime, name: &str, path: &str) {
    let wasm = std::fs::read(path).expect("guest is built");
    runtime
        .load(name, wasm, FunctionSpec::default())
        .await
        .expect("guest loads");
}

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

async fn body_text(response: http::Response<wasmgate_runtime::ResponseBody>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body completes")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance() {
    let runtime = runtime(Allocator::Auto);
    load(&runtime, "counter", wasmgate_guests::COUNTER).await;
    for _ in 0..5 {
        let response = runtime.invoke("counter", get("/")).await.expect("answers");
        assert_eq!(
            body_text(response).await,
            "1",
            "a global survived from an earlier request"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_answers_and_its_output_is_captured() {
    let runtime = runtime(Allocator::Auto);
    load(&runtime, "hello", wasmgate_guests::HELLO).await;
    let response = runtime
        .invoke("hello", get("/a/b?c=d"))
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        body_text(response).await,
        "Hello from wasmgate! You asked for /a/b?c=d\n"
    );

    let logs = runtime.logs("hello").expect("hello has logs").recent();
    let line = logs.last().expect("hello printed a line");
    assert_eq!(line.text, "hello called for /a/b?c=d");
    assert_eq!(line.stream, LogStream::Stdout);
    assert_eq!(&*line.function, "hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_is_reported_and_the_runtime_keeps_serving() {
    let runtime = runtime(Allocator::Auto);
    load(&runtime, "trap", wasmgate_guests::TRAP).await;
    load(&runtime, "hello", wasmgate_guests::HELLO).await;
    match runtime.invoke("trap", get("/")).await {
        Err(Error::Trap { function, message }) => {
            assert_eq!(function, "trap");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // The panic message went to the guest's stderr.
    let stderr: Vec<String> = runtime
        .logs("trap")
        .expect("logs")
        .recent()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("this function always panics")),
        "{stderr:?}"
    );
    let response = runtime
        .invoke("hello", get("/"))
        .await
        .expect("still serving");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_never_answers_is_reported() {
    let runtime = runtime(Allocator::Auto);
    load(&runtime, "silent", wasmgate_guests::SILENT).await;
    match runtime.invoke("silent", get("/")).await {
        Err(Error::NoResponse { function }) => assert_eq!(function, "silent"),
        other => panic!("expected no response, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_functions_are_not_found() {
    let runtime = runtime(Allocator::Auto);
    assert!(
        matches!(runtime.invoke("nope", get("/")).await, Err(Error::NotFound(name)) if name == "nope")
    );
    assert!(!runtime.remove("nope"));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_components_are_refused_with_a_reason() {
    let runtime = runtime(Allocator::Auto);
    let missing_import = wat::parse_str(r#"(component (import "wasmgate:missing/thing" (func)))"#)
        .expect("valid wat");
    let core_module = wat::parse_str("(module)").expect("valid wat");
    let empty_component = wat::parse_str("(component)").expect("valid wat");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "text",
            b"not wasm at all".to_vec(),
            "not a WebAssembly binary",
        ),
        ("core", core_module, "core WebAssembly module"),
        ("empty", empty_component, "wasi:http/incoming-handler"),
        ("import", missing_import, "wasmgate:missing/thing"),
    ];
    for (name, wasm, expected) in cases {
        match runtime.load(name, wasm, FunctionSpec::default()).await {
            Err(Error::InvalidComponent { reason }) => {
                assert!(reason.contains(expected), "{name}: {reason}")
            }
            other => panic!("{name}: expected an invalid component, got {other:?}"),
        }
        assert!(!runtime.contains(name), "{name} must not be loaded");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loading_a_name_again_replaces_the_function() {
    let runtime = runtime(Allocator::Auto);
    load(&runtime, "f", wasmgate_guests::HELLO).await;
    let first = body_text(runtime.invoke("f", get("/")).await.expect("answers")).await;
    assert!(first.starts_with("Hello"), "{first}");
    load(&runtime, "f", wasmgate_guests::COUNTER).await;
    assert_eq!(
        body_text(runtime.invoke("f", get("/")).await.expect("answers")).await,
        "1"
    );
    assert_eq!(runtime.function_names(), ["f"]);
    assert!(runtime.remove("f"));
    assert!(matches!(
        runtime.invoke("f", get("/")).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn on_demand_allocation_serves_too() {
    let runtime = runtime(Allocator::OnDemand);
    assert_eq!(
        runtime.allocator(),
        wasmgate_runtime::AllocatorKind::OnDemand
    );
    load(&runtime, "counter", wasmgate_guests::COUNTER).await;
    let response = runtime.invoke("counter", get("/")).await.expect("answers");
    assert_eq!(body_text(response).await, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_stream_to_the_guest_and_back() {
    let runtime = runtime(Allocator::Auto);
    load(&runtime, "echo", wasmgate_guests::ECHO).await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let request = http::Request::post("http://localhost/x?y=1")
        .header("x-test", "yes")
        .body(Full::new(Bytes::from(body.clone())))
        .expect("valid request");
    let response = runtime.invoke("echo", request).await.expect("answers");
    assert_eq!(response.headers()["x-echo-method"], "POST");
    assert_eq!(response.headers()["x-echo-path"], "/x");
    assert_eq!(response.headers()["x-echo-query"], "y=1");
    assert_eq!(response.headers()["x-echo-x-test"], "yes");
    let echoed = response
        .into_body()
        .collect()
        .await
        .expect("body completes")
        .to_bytes();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the body came back changed");
}

#[derive(Default)]
struct Counts {
    cold_starts: std::sync::atomic::AtomicUsize,
    compiles: std::sync::atomic::AtomicUsize,
    in_use: std::sync::atomic::AtomicIsize,
    instantiations: std::sync::atomic::AtomicUsize,
}

impl wasmgate_runtime::Observer for Counts {
    fn cold_start(&self, _function: &str) {
        self.cold_starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn compiled(&self, _function: &str, _seconds: f64) {
        self.compiles
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn instance_acquired(&self) {
        self.in_use
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn instantiated(&self, _seconds: f64) {
        self.instantiations
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn instance_released(&self) {
        self.in_use
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn observed_runtime() -> (Runtime, std::sync::Arc<Counts>) {
    let counts = std::sync::Arc::new(Counts::default());
    let config = RuntimeConfig {
        max_instances: 32,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::with_observer(config, counts.clone()).expect("runtime starts");
    (runtime, counts)
}

#[tokio::test(flavor = "multi_thread")]
async fn unloaded_functions_load_again_on_the_next_request() {
    use std::sync::atomic::Ordering::SeqCst;
    let (runtime, counts) = observed_runtime();
    load(&runtime, "hello", wasmgate_guests::HELLO).await;
    assert_eq!(runtime.is_loaded("hello"), Some(true));
    assert_eq!(counts.compiles.load(SeqCst), 1);

    assert!(runtime.unload("hello"));
    assert!(!runtime.unload("hello"), "already unloaded");
    assert_eq!(runtime.is_loaded("hello"), Some(false));
    assert_eq!(runtime.loaded_count(), 0);
    let response = runtime
        .invoke("hello", get("/"))
        .await
        .expect("answers after a cold start");
    assert_eq!(response.status(), 200);
    drop(response);
    assert_eq!(counts.cold_starts.load(SeqCst), 1);
    assert_eq!(counts.compiles.load(SeqCst), 2);
    assert_eq!(runtime.is_loaded("hello"), Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cold_starts_share_one_load() {
    use std::sync::atomic::Ordering::SeqCst;
    let (runtime, counts) = observed_runtime();
    let wasm: std::sync::Arc<[u8]> = std::fs::read(wasmgate_guests::COUNTER)
        .expect("built")
        .into();
    runtime.register(
        "counter",
        wasmgate_runtime::WasmSource::bytes(wasm),
        FunctionSpec::default(),
    );
    assert_eq!(runtime.is_loaded("counter"), Some(false));
    let calls = (0..12).map(|_| {
        let runtime = runtime.clone();
        async move { body_text(runtime.invoke("counter", get("/")).await.expect("answers")).await }
    });
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a == "1"), "{answers:?}");
    assert_eq!(counts.cold_starts.load(SeqCst), 1, "one load for all");
    assert_eq!(counts.compiles.load(SeqCst), 1);
    // Every store is dropped once its guest returns, which may be just after its body ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while counts.in_use.load(SeqCst) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "instances still in use: {}",
            counts.in_use.load(SeqCst)
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_sees_its_environment_and_secrets_only() {
    let secrets =
        std::env::temp_dir().join(format!("wasmgate-runtime-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(secrets.join("api-key"), b"s3cret").expect("write");
    let runtime = runtime(Allocator::Auto);
    let wasm = std::fs::read(wasmgate_guests::INSPECT).expect("built");
    let spec = FunctionSpec {
        env: vec![("GREETING".into(), "hi".into())],
        secrets: Some(GuestDir {
            host: secrets.clone(),
            guest: "/var/openfaas/secrets".into(),
        }),
        ..FunctionSpec::default()
    };
    runtime.load("inspect", wasm, spec).await.expect("loads");

    let env = body_text(
        runtime
            .invoke("inspect", get("/env"))
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!(
        env, "GREETING=hi\n",
        "nothing of the host's environment leaks in"
    );

    let secret = runtime
        .invoke("inspect", get("/file?/var/openfaas/secrets/api-key"))
        .await
        .expect("answers");
    assert_eq!(secret.status(), 200);
    assert_eq!(body_text(secret).await, "s3cret");

    let put = http::Request::put("http://localhost/file?/var/openfaas/secrets/api-key")
        .body(Full::new(Bytes::from_static(b"changed")))
        .expect("request");
    let write = runtime.invoke("inspect", put).await.expect("answers");
    assert_eq!(write.status(), 403, "secrets are read-only");
    assert_eq!(
        std::fs::read(secrets.join("api-key")).expect("read"),
        b"s3cret"
    );

    for path in [
        "/etc/passwd",
        "/var/openfaas/secrets/../../../etc/passwd",
        "/proc/self/environ",
    ] {
        let answer = runtime
            .invoke("inspect", get(&format!("/file?{path}")))
            .await
            .expect("answers");
        assert_eq!(answer.status(), 404, "{path} must not be readable");
    }
    let _ = std::fs::remove_dir_all(secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_code_is_cached_on_disk_across_runtimes() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = std::env::temp_dir().join(format!("wasmgate-code-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let wasm: std::sync::Arc<[u8]> = std::fs::read(wasmgate_guests::HELLO).expect("built").into();
    let start = || {
        let counts = std::sync::Arc::new(Counts::default());
        let config = RuntimeConfig {
            max_instances: 8,
            cache_dir: Some(dir.clone()),
            ..RuntimeConfig::default()
        };
        (
            Runtime::with_observer(config, counts.clone()).expect("runtime"),
            counts,
        )
    };
    let source = || wasmgate_runtime::WasmSource::bytes(wasm.clone()).with_cache_key("hello-key");

    let (first, counts) = start();
    first
        .deploy(
            "hello",
            wasm.to_vec(),
            source(),
            FunctionSpec::default(),
            true,
        )
        .await
        .expect("deploys");
    assert_eq!(counts.compiles.load(SeqCst), 1);
    drop(first);

    // A new runtime (a restart) loads the compiled code instead of compiling.
    let (second, counts) = start();
    second.register("hello", source(), FunctionSpec::default());
    let response = second.invoke("hello", get("/")).await.expect("answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        counts.compiles.load(SeqCst),
        0,
        "compiled again despite the cache"
    );
    drop(second);

    // A damaged cache file is dropped and the component compiled again.
    for entry in walk(&dir) {
        if entry.extension().is_some_and(|e| e == "cwasm") {
            std::fs::write(&entry, b"garbage").expect("damage");
        }
    }
    let (third, counts) = start();
    third.register("hello", source(), FunctionSpec::default());
    assert_eq!(
        third
            .invoke("hello", get("/"))
            .await
            .expect("answers")
            .status(),
        200
    );
    assert_eq!(counts.compiles.load(SeqCst), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn opted_in_functions_reuse_instances_up_to_their_limit() {
    let runtime = runtime(Allocator::Auto);
    let wasm = std::fs::read(wasmgate_guests::COUNTER).expect("built");
    let spec = FunctionSpec {
        max_instance_reuse: 3,
        ..FunctionSpec::default()
    };
    runtime.load("counter", wasm, spec).await.expect("loads");
    let mut answers = Vec::new();
    for _ in 0..7 {
        let response = runtime.invoke("counter", get("/")).await.expect("answers");
        answers.push(body_text(response).await);
        // The instance goes back to the idle list when the guest returns, just after its body ends.
        tokio::task::yield_now().await;
    }
    assert_eq!(
        answers,
        ["1", "2", "3", "1", "2", "3", "1"],
        "three requests per instance, then a fresh one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loaded_functions_stay_within_the_memory_budget() {
    use std::sync::atomic::Ordering::SeqCst;
    let counts = std::sync::Arc::new(Counts::default());
    let budget = 2 * wasmgate_runtime::LOADED_FUNCTION_OVERHEAD as u64 + 512 * 1024;
    let config = RuntimeConfig {
        max_instances: 8,
        loaded_memory_budget: budget,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::with_observer(config, counts.clone()).expect("runtime");
    let wasm = std::fs::read(wasmgate_guests::HELLO).expect("built");
    for n in 0..6 {
        runtime
            .load(&format!("f{n}"), wasm.clone(), FunctionSpec::default())
            .await
            .expect("loads");
    }
    let loaded = runtime.loaded_count();
    assert!(
        (1..=2).contains(&loaded),
        "{loaded} functions loaded within a budget for two"
    );
    // Every function still answers: the evicted ones load again.
    for n in 0..6 {
        let response = runtime
            .invoke(&format!("f{n}"), get("/"))
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
    }
    assert!(
        counts.cold_starts.load(SeqCst) >= 4,
        "evicted functions were loaded again"
    );
    assert!(runtime.loaded_count() <= 2);
}
