//! WASI 0.3 (`wasi:http/handler@0.3`) functions, served beside 0.2 ones by the same runtime: each
//! thing a 0.2 function gets, shown with a 0.3 guest from `guests/functions/p3-*` (and one built by a
//! third-party SDK, `spin7-hello`).

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmgate_runtime::{Error, FunctionSpec, HostPattern, Limits, Runtime, RuntimeConfig, World};

use super::{Counts, body_text, get};

fn runtime_with(counts: Arc<Counts>) -> Runtime {
    let config = RuntimeConfig {
        max_instances: 16,
        ..RuntimeConfig::default()
    };
    Runtime::with_observer(config, counts).expect("runtime starts")
}

async fn load_with(runtime: &Runtime, name: &str, path: &str, spec: FunctionSpec) {
    let wasm = std::fs::read(path).expect("guest is built");
    runtime.load(name, wasm, spec).await.expect("guest loads");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_world_is_recognised_and_served_side_by_side() {
    let counts = Arc::new(Counts::default());
    let runtime = runtime_with(counts.clone());
    for (path, world) in [
        (wasmgate_guests::HELLO, World::P2),
        (wasmgate_guests::P3_HELLO, World::P3),
        (wasmgate_guests::SPIN7_HELLO, World::P3),
    ] {
        let wasm = std::fs::read(path).expect("built");
        assert_eq!(runtime.validate(wasm, None).await.expect("valid"), world);
    }
    load_with(
        &runtime,
        "hello",
        wasmgate_guests::HELLO,
        FunctionSpec::default(),
    )
    .await;
    load_with(
        &runtime,
        "p3-hello",
        wasmgate_guests::P3_HELLO,
        FunctionSpec::default(),
    )
    .await;
    load_with(
        &runtime,
        "spin7",
        wasmgate_guests::SPIN7_HELLO,
        FunctionSpec::default(),
    )
    .await;
    assert_eq!(runtime.world("hello"), Some(World::P2));
    assert_eq!(runtime.world("p3-hello"), Some(World::P3));

    let before = counts.instantiations.load(SeqCst);
    for _ in 0..3 {
        let response = runtime
            .invoke("p3-hello", get("/a?b=c"))
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        assert_eq!(
            body_text(response).await,
            "Hello from wasmgate (wasi:http 0.3)!\n/a?b=c\n"
        );
    }
    assert_eq!(
        counts.instantiations.load(SeqCst) - before,
        3,
        "a fresh instance for every request by default"
    );
    let lines: Vec<String> = runtime
        .logs("p3-hello")
        .expect("logs")
        .recent()
        .into_iter()
        .map(|line| line.text)
        .collect();
    assert!(
        lines.contains(&"p3-hello called for /a?b=c".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"p3-hello wrote this line in three pieces".to_string()),
        "{lines:?}"
    );

    let spin = runtime.invoke("spin7", get("/x")).await.expect("answers");
    assert_eq!(spin.status(), 200);
    assert_eq!(body_text(spin).await, "Hello from spin-sdk 7\n/x\n");
    let hello = runtime.invoke("hello", get("/y")).await.expect("answers");
    assert_eq!(hello.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_p3_function_is_held_to_its_memory_limit() {
    let runtime = runtime_with(Arc::default());
    let spec = FunctionSpec {
        limits: Limits {
            memory_bytes: Some(16 * 1024 * 1024),
            ..Limits::default()
        },
        ..FunctionSpec::default()
    };
    load_with(&runtime, "memhog", wasmgate_guests::P3_MEMHOG, spec).await;
    let small = runtime.invoke("memhog", get("/?mb=2")).await.expect("fits");
    assert_eq!(body_text(small).await, "held 2 MiB\n");
    match runtime.invoke("memhog", get("/?mb=64")).await {
        Err(Error::MemoryLimit { limit, .. }) => assert_eq!(limit, 16 * 1024 * 1024),
        other => panic!("expected the memory limit, got {other:?}"),
    }
    let again = runtime
        .invoke("memhog", get("/?mb=1"))
        .await
        .expect("serves on");
    assert_eq!(again.status(), 200);
}

/// The time limit reaches a guest that spins without calling the host, one that awaits forever, and
/// one that streams forever (after its head: its body is cut).
#[tokio::test(flavor = "multi_thread")]
async fn a_p3_function_is_held_to_its_time_limit() {
    let runtime = runtime_with(Arc::default());
    let spec = || FunctionSpec {
        limits: Limits {
            timeout: Some(Duration::from_millis(300)),
            ..Limits::default()
        },
        ..FunctionSpec::default()
    };
    load_with(&runtime, "spin", wasmgate_guests::P3_SPIN, spec()).await;
    load_with(&runtime, "sleep", wasmgate_guests::P3_SLEEP, spec()).await;
    load_with(
        &runtime,
        "stream",
        wasmgate_guests::P3_STREAM_FOREVER,
        spec(),
    )
    .await;
    for name in ["spin", "sleep"] {
        match runtime.invoke(name, get("/")).await {
            Err(Error::Timeout { limit, .. }) => assert_eq!(limit, Duration::from_millis(300)),
            other => panic!("{name}: expected a timeout, got {other:?}"),
        }
    }
    let short = runtime
        .invoke("sleep", get("/?ms=5"))
        .await
        .expect("answers");
    assert_eq!(body_text(short).await, "slept 5 ms\n");
    let spun = runtime
        .invoke("spin", get("/?ms=5"))
        .await
        .expect("answers");
    assert_eq!(body_text(spun).await, "spun 5 ms\n");

    let streaming = runtime.invoke("stream", get("/")).await.expect("head");
    assert_eq!(streaming.status(), 200);
    let mut body = streaming.into_body();
    let mut received = 0;
    let cut = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(error)) => break error.to_string(),
            None => panic!("an endless body ended cleanly"),
        }
    };
    assert!(received > 0, "ticks arrived before the deadline");
    assert!(cut.contains("timed out"), "{cut}");
    let finite = runtime.invoke("stream", get("/?n=3")).await.expect("head");
    assert_eq!(body_text(finite).await, "tick 1\ntick 2\ntick 3\n");
    assert_eq!(runtime.in_flight(), 0, "every instance ended");
}

/// The body streams both ways: the head comes back before the request body is complete, and each
/// chunk comes back before the next is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_p3_request_body_streams_to_the_guest_and_back() {
    let runtime = runtime_with(Arc::default());
    load_with(
        &runtime,
        "echo",
        wasmgate_guests::P3_ECHO,
        FunctionSpec::default(),
    )
    .await;
    let (mut sender, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let request = http::Request::post("http://localhost/p?q=1")
        .header("x-test", "yes")
        .body(body)
        .expect("request");
    let response = runtime.invoke("echo", request).await.expect("head first");
    assert_eq!(response.headers()["x-echo-method"], "POST");
    assert_eq!(response.headers()["x-echo-path"], "/p");
    assert_eq!(response.headers()["x-echo-query"], "q=1");
    assert_eq!(response.headers()["x-echo-x-test"], "yes");
    let mut body = response.into_body();
    for i in 0..20u8 {
        let chunk = Bytes::from(vec![i; 1000]);
        sender.send_data(chunk.clone()).await.expect("guest reads");
        let mut echoed = Vec::new();
        while echoed.len() < chunk.len() {
            let frame = body.frame().await.expect("more").expect("no error");
            echoed.extend_from_slice(frame.data_ref().expect("data"));
        }
        assert_eq!(echoed, chunk, "chunk {i}");
    }
    drop(sender);
    assert!(
        body.frame().await.is_none(),
        "the body ends with the request's"
    );

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let request = http::Request::post("http://localhost/")
        .body(Full::new(Bytes::from(big.clone())))
        .expect("request");
    let response = runtime.invoke("echo", request).await.expect("answers");
    let echoed = response
        .into_body()
        .collect()
        .await
        .expect("whole")
        .to_bytes();
    assert!(echoed == big, "the body came back changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn trailers_pass_both_ways() {
    let runtime = runtime_with(Arc::default());
    load_with(
        &runtime,
        "trailers",
        wasmgate_guests::P3_TRAILERS,
        FunctionSpec::default(),
    )
    .await;
    let (mut sender, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
    let request = http::Request::post("http://localhost/")
        .body(body)
        .expect("request");
    let feed = tokio::spawn(async move {
        sender
            .send_data(Bytes::from_static(b"12345"))
            .await
            .expect("data");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
        sender.send_trailers(trailers).await.expect("trailers");
    });
    let response = runtime.invoke("trailers", request).await.expect("answers");
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.expect("whole");
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(&collected.to_bytes()[..], b"5 bytes\n");
    assert_eq!(trailers["x-request-bytes"], "5");
    assert_eq!(trailers["x-echo-x-checksum"], "abc");
    feed.await.expect("fed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_p3_function_sees_its_environment_and_secrets_only() {
    let secrets = std::env::temp_dir().join(format!("wasmgate-p3-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(secrets.join("token"), b"t0ken").expect("write");
    let runtime = runtime_with(Arc::default());
    let spec = FunctionSpec {
        env: vec![("MODE".into(), "p3".into())],
        secrets: Some(wasmgate_runtime::GuestDir {
            host: secrets.clone(),
            guest: "/var/openfaas/secrets".into(),
        }),
        ..FunctionSpec::default()
    };
    load_with(&runtime, "inspect", wasmgate_guests::P3_INSPECT, spec).await;
    let env = runtime
        .invoke("inspect", get("/env"))
        .await
        .expect("answers");
    assert_eq!(body_text(env).await, "MODE=p3\n");
    let secret = runtime
        .invoke("inspect", get("/file?/var/openfaas/secrets/token"))
        .await
        .expect("answers");
    assert_eq!(secret.status(), 200);
    assert_eq!(body_text(secret).await, "t0ken");
    let denied = runtime
        .invoke("inspect", get("/file?/etc/passwd"))
        .await
        .expect("answers");
    assert_eq!(denied.status(), 404);
    let logs = runtime.logs("inspect").expect("logs").recent();
    assert!(logs.iter().any(|l| l.text == "p3-inspect /env"), "{logs:?}");
    let _ = std::fs::remove_dir_all(secrets);
}

/// A plain HTTP server on loopback answering `upstream says hi`.
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"upstream says hi"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn p3_outbound_requests_follow_the_allow_list() {
    let addr = upstream().await;
    let runtime = runtime_with(Arc::default());
    let allowed = FunctionSpec {
        allowed_hosts: vec![
            HostPattern::parse(&format!("127.0.0.1:{}", addr.port())).expect("pattern"),
        ],
        ..FunctionSpec::default()
    };
    load_with(&runtime, "out", wasmgate_guests::P3_OUTBOUND, allowed).await;
    load_with(
        &runtime,
        "closed",
        wasmgate_guests::P3_OUTBOUND,
        FunctionSpec::default(),
    )
    .await;
    let path = format!("/?url=http://127.0.0.1:{}/", addr.port());
    let answer = runtime.invoke("out", get(&path)).await.expect("answers");
    assert_eq!(answer.status(), 200);
    assert_eq!(body_text(answer).await, "200 upstream says hi\n");
    let denied = runtime.invoke("closed", get(&path)).await.expect("answers");
    assert_eq!(denied.status(), 502);
    assert!(body_text(denied).await.contains("HttpRequestDenied"));
}

/// 0.3 calls 0.2 and 0.2 calls 0.3, in process.
#[tokio::test(flavor = "multi_thread")]
async fn p2_and_p3_functions_call_each_other() {
    let runtime = runtime_with(Arc::default());
    load_with(
        &runtime,
        "caller",
        wasmgate_guests::P3_CALLER,
        FunctionSpec::default(),
    )
    .await;
    load_with(
        &runtime,
        "echo",
        wasmgate_guests::ECHO,
        FunctionSpec::default(),
    )
    .await;
    load_with(
        &runtime,
        "p3-hello",
        wasmgate_guests::P3_HELLO,
        FunctionSpec::default(),
    )
    .await;
    let via_p2 = FunctionSpec {
        env: vec![("STEPS".into(), "caller".into())],
        ..FunctionSpec::default()
    };
    load_with(&runtime, "pipeline", wasmgate_guests::PIPELINE, via_p2).await;

    let request = http::Request::post("http://localhost/?to=echo")
        .body(Full::new(Bytes::from_static(b"from p3")))
        .expect("request");
    let answer = runtime.invoke("caller", request).await.expect("answers");
    assert_eq!(answer.status(), 200);
    assert_eq!(body_text(answer).await, "== echo (200)\nfrom p3");

    // pipeline (0.2) -> caller (0.3) -> p3-hello (0.3), by the caller's TO.
    let runtime_env = FunctionSpec {
        env: vec![("TO".into(), "p3-hello".into())],
        ..FunctionSpec::default()
    };
    load_with(&runtime, "caller", wasmgate_guests::P3_CALLER, runtime_env).await;
    let request = http::Request::post("http://localhost/")
        .body(Full::new(Bytes::from_static(b"x")))
        .expect("request");
    let answer = runtime.invoke("pipeline", request).await.expect("answers");
    let text = body_text(answer).await;
    assert!(
        text.starts_with(
            "== caller (200)\n== p3-hello (200)\nHello from wasmgate (wasi:http 0.3)!"
        ),
        "{text}"
    );

    // Callees that answer without reading a large body: the caller's writes meet a closed stream,
    // and it still gets their answers.
    let request = http::Request::post("http://localhost/?steps=p3-hello,caller")
        .body(Full::new(Bytes::from(vec![b'x'; 1 << 20])))
        .expect("request");
    let answer = runtime.invoke("pipeline", request).await.expect("answers");
    assert_eq!(answer.status(), 200);
    let text = body_text(answer).await;
    assert!(
        text.starts_with("== p3-hello (200)\nHello from wasmgate (wasi:http 0.3)!"),
        "{text}"
    );
    assert!(
        text.contains("== caller (200)\n== p3-hello (200)\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn p3_functions_reuse_instances_only_when_asked() {
    let counts = Arc::new(Counts::default());
    let runtime = runtime_with(counts.clone());
    let spec = FunctionSpec {
        max_instance_reuse: 4,
        ..FunctionSpec::default()
    };
    load_with(&runtime, "hello", wasmgate_guests::P3_HELLO, spec).await;
    let before = counts.instantiations.load(SeqCst);
    for _ in 0..8 {
        let response = runtime.invoke("hello", get("/")).await.expect("answers");
        assert_eq!(response.status(), 200);
        body_text(response).await;
        // The instance goes back to the idle list when its last task ends, just after its body.
        for _ in 0..100 {
            if runtime.in_flight() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(
        counts.instantiations.load(SeqCst) - before,
        2,
        "four requests per instance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_we_do_not_provide_is_named_at_deploy() {
    let runtime = runtime_with(Arc::default());
    let wasm =
        wat::parse_str(r#"(component (import "wasi:keyvalue/store@0.3.0-draft" (instance (export "get" (func)))))"#)
            .expect("wat");
    match runtime.validate(wasm, None).await {
        Err(Error::InvalidComponent { reason }) => {
            assert!(
                reason.contains("wasi:keyvalue/store@0.3.0-draft"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// With reuse and concurrency, requests share an instance: a request counts against the concurrency
/// while it awaits its response (a response that has begun streams on without counting), and an
/// instance takes no more requests than its reuse allows in all.
#[tokio::test(flavor = "multi_thread")]
async fn p3_requests_share_an_instance_within_its_bounds() {
    let counts = Arc::new(Counts::default());
    let runtime = runtime_with(counts.clone());
    let spec = |reuse| FunctionSpec {
        max_instance_reuse: reuse,
        max_instance_concurrency: 2,
        ..FunctionSpec::default()
    };
    // Streaming requests, one after the other: all on one instance until its reuse is spent.
    load_with(
        &runtime,
        "stream",
        wasmgate_guests::P3_STREAM_FOREVER,
        spec(3),
    )
    .await;
    let before = counts.instantiations.load(SeqCst);
    let mut bodies = Vec::new();
    for i in 1..=4 {
        let response = runtime
            .invoke("stream", get("/?n=1000"))
            .await
            .expect("head");
        let mut body = response.into_body();
        // The first tick means the guest has awaited its timer at least once: its instance is idle
        // between ticks and takes the next request if it has room.
        let tick = body.frame().await.expect("a tick").expect("no error");
        assert_eq!(
            &tick.into_data().expect("data")[..],
            b"tick 1\n",
            "request {i}"
        );
        bodies.push(body);
    }
    assert_eq!(
        counts.instantiations.load(SeqCst) - before,
        2,
        "three requests on the first instance (its reuse), the fourth on a second"
    );
    assert_eq!(runtime.in_flight(), 4);
    drop(bodies);

    // Requests that wait for their answer: no instance holds more than two at once.
    load_with(&runtime, "sleep", wasmgate_guests::P3_SLEEP, spec(100)).await;
    let before = counts.instantiations.load(SeqCst);
    let waiting = (0..6).map(|_| {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.invoke("sleep", get("/?ms=400")).await })
    });
    for answer in futures::future::join_all(waiting).await {
        let answer = answer.expect("task").expect("answers");
        assert_eq!(body_text(answer).await, "slept 400 ms\n");
    }
    assert!(
        counts.instantiations.load(SeqCst) - before >= 3,
        "six waiting requests, at most two per instance"
    );

    // Without concurrency, the same function gets an instance per request.
    load_with(
        &runtime,
        "fresh",
        wasmgate_guests::P3_STREAM_FOREVER,
        FunctionSpec::default(),
    )
    .await;
    let before = counts.instantiations.load(SeqCst);
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let response = runtime
            .invoke("fresh", get("/?n=1000"))
            .await
            .expect("head");
        let mut body = response.into_body();
        body.frame().await.expect("a tick").expect("no error");
        bodies.push(body);
    }
    assert_eq!(counts.instantiations.load(SeqCst) - before, 3);
}

/// A shared instance still answers to the time limit: a request that runs past it fails, and the
/// instance with it.
#[tokio::test(flavor = "multi_thread")]
async fn shared_p3_instances_keep_the_time_limit() {
    let runtime = runtime_with(Arc::default());
    let spec = FunctionSpec {
        max_instance_reuse: 100,
        max_instance_concurrency: 4,
        limits: Limits {
            timeout: Some(Duration::from_millis(300)),
            ..Limits::default()
        },
        ..FunctionSpec::default()
    };
    load_with(&runtime, "spin", wasmgate_guests::P3_SPIN, spec).await;
    match runtime.invoke("spin", get("/")).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    let ok = runtime
        .invoke("spin", get("/?ms=1"))
        .await
        .expect("answers");
    assert_eq!(body_text(ok).await, "spun 1 ms\n");
}
