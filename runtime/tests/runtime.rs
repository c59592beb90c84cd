//! The runtime against real components from `guests/`: one fresh instance per request, the errors a
//! caller must tell apart, and captured output.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmgate_runtime::logs::LogStream;
use wasmgate_runtime::{Allocator, Error, FunctionSpec, Runtime, RuntimeConfig};

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
