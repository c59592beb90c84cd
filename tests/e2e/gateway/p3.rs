//! wasi:http 0.3 functions through the real gateway: deployed, described, invoked, limited, logged,
//! counted and queued like 0.2 ones. One test per `p3-*` guest (and `spin7-hello`, built by a
//! third-party SDK); the runtime's own tests cover the same guests in process in more detail.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;

use crate::support::{Callbacks, Gateway, Upstream, api, deploy, get, request, send, upload};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("guest is built")
}

/// A gateway serving only `guests` (`name=path`), so each test compiles what it needs.
fn gateway_with(guests: &[(&str, &str)], args: &[&str]) -> Gateway {
    let mut all: Vec<String> = guests
        .iter()
        .flat_map(|(name, path)| ["--function".to_string(), format!("{name}={path}")])
        .collect();
    all.extend(args.iter().map(|a| a.to_string()));
    Gateway::start(&all)
}

/// Uploading names the world; the status, the list and the metrics show a 0.3 function beside a
/// 0.2 one; it answers, logs whole lines, and runs from the async queue with its callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn p3_hello() {
    let gateway = gateway_with(&[("hello", wasmgate_guests::HELLO)], &[]);
    let uploaded = send(
        gateway.addr,
        request(
            "POST",
            &gateway,
            "/system/artifacts",
            read(wasmgate_guests::P3_HELLO),
        ),
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let uploaded: serde_json::Value = serde_json::from_slice(&uploaded.body).expect("JSON");
    assert_eq!(uploaded["world"], "wasi:http@0.3");
    let digest = uploaded["digest"].as_str().expect("digest").to_string();
    deploy(&gateway, "p3-hello", &digest, json!({})).await;

    let status = api(&gateway, "GET", "/system/function/p3-hello", None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(status["world"], "wasi:http@0.3", "{status}");
    let list = api(&gateway, "GET", "/system/functions", None).await;
    let list: serde_json::Value = serde_json::from_slice(&list.body).expect("JSON");
    let hello = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|f| f["name"] == "hello")
        .expect("hello is listed")
        .clone();
    let answer = get(&gateway, "/function/hello").await;
    assert_eq!(answer.status, 200);
    // The 0.2 function beside it says its world too.
    let hello_status = api(&gateway, "GET", "/system/function/hello", None).await;
    let hello_status: serde_json::Value = serde_json::from_slice(&hello_status.body).expect("JSON");
    assert_eq!(
        hello_status["world"], "wasi:http@0.2",
        "{hello} / {hello_status}"
    );

    let answer = get(&gateway, "/function/p3-hello/a?b=c").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.text(),
        "Hello from wasmgate (wasi:http 0.3)!\n/a?b=c\n"
    );
    gateway.wait_for_log(&["p3-hello wrote this line in three pieces"]);
    let logs = api(&gateway, "GET", "/system/logs?name=p3-hello", None).await;
    assert!(
        logs.text().contains("p3-hello called for /a?b=c"),
        "{}",
        logs.text()
    );
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_function_invocation_total")
                && l.contains("p3-hello")
                && l.contains("code=\"200\"")),
        "{metrics}"
    );

    let callbacks = Callbacks::start().await;
    let mut queued = request("POST", &gateway, "/async-function/p3-hello/queued", "");
    queued.headers_mut().insert(
        "x-callback-url",
        callbacks.url().parse().expect("header value"),
    );
    let accepted = send(gateway.addr, queued).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let called = callbacks.wait_for(1).await;
    assert_eq!(called[0].header("x-function-status"), "200");
    assert_eq!(
        &called[0].body[..],
        b"Hello from wasmgate (wasi:http 0.3)!\n/queued\n"
    );
}

/// The body streams both ways through the gateway, and the request-body limit holds for 0.3 too.
#[tokio::test]
pub async fn p3_echo() {
    let gateway = gateway_with(
        &[("p3-echo", wasmgate_guests::P3_ECHO)],
        &["--max-request-body", "64Ki"],
    );
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut echo = request("POST", &gateway, "/function/p3-echo/x?y=1", body.clone());
    echo.headers_mut()
        .insert("x-test", http::HeaderValue::from_static("yes"));
    let answer = send(gateway.addr, echo).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-echo-path"), "/x");
    assert_eq!(answer.header("x-echo-x-test"), "yes");
    assert!(answer.body == body, "the body came back changed");

    let chunks = (0..4).map(|_| {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'a'; 32 * 1024])))
    });
    let chunked = http::Request::post("/function/p3-echo")
        .header(http::header::HOST, gateway.addr.to_string())
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .expect("request");
    // p3-echo answers before it reads, so when the limit cuts its input it has answered already:
    // it sees its request body end with an error there and ends its echo. Either way no more than
    // the limit reached it.
    let answer = send(gateway.addr, chunked).await;
    match answer.status.as_u16() {
        200 => assert!(
            answer.body.len() <= 64 * 1024,
            "{} bytes echoed past a 64 KiB limit",
            answer.body.len()
        ),
        status => assert_eq!(status, 413, "{}", answer.text()),
    }
}

/// Request trailers reach the guest and its response trailers come back (HTTP/1.1, `TE: trailers`).
#[tokio::test]
pub async fn p3_trailers() {
    let gateway = gateway_with(&[("p3-trailers", wasmgate_guests::P3_TRAILERS)], &[]);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    let frames = vec![
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"1234567"))),
        Ok(Frame::trailers(trailers)),
    ];
    let request = http::Request::post("/function/p3-trailers")
        .header(http::header::HOST, gateway.addr.to_string())
        .header(http::header::TE, "trailers")
        .header(http::header::TRAILER, "x-checksum")
        .body(StreamBody::new(futures::stream::iter(frames)))
        .expect("request");
    let mut sender = crate::support::connect(gateway.addr).await;
    let response = sender.send_request(request).await.expect("answers");
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.expect("whole body");
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(&collected.to_bytes()[..], b"7 bytes\n");
    assert_eq!(trailers["x-request-bytes"], "7");
    assert_eq!(trailers["x-echo-x-checksum"], "abc");
}

/// `exec_timeout` stops a 0.3 guest that spins without calling the host: 504.
#[tokio::test]
pub async fn p3_spin() {
    let gateway = gateway_with(&[], &[]);
    let digest = upload(&gateway, read(wasmgate_guests::P3_SPIN)).await;
    deploy(
        &gateway,
        "p3-spin",
        &digest,
        json!({"envVars": {"exec_timeout": "300ms"}}),
    )
    .await;
    let answer = get(&gateway, "/function/p3-spin").await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    let answer = get(&gateway, "/function/p3-spin?ms=5").await;
    assert_eq!(answer.text(), "spun 5 ms\n");
}

/// `exec_timeout` reaches a 0.3 guest that awaits forever: 504.
#[tokio::test]
pub async fn p3_sleep() {
    let gateway = gateway_with(&[], &[]);
    let digest = upload(&gateway, read(wasmgate_guests::P3_SLEEP)).await;
    deploy(
        &gateway,
        "p3-sleep",
        &digest,
        json!({"envVars": {"exec_timeout": "300ms"}}),
    )
    .await;
    let answer = get(&gateway, "/function/p3-sleep").await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert_eq!(
        get(&gateway, "/function/p3-sleep?ms=5").await.text(),
        "slept 5 ms\n"
    );
}

/// A 0.3 body that never ends is cut at `exec_timeout`, after its head went out.
#[tokio::test]
pub async fn p3_stream_forever() {
    let gateway = gateway_with(&[], &[]);
    let digest = upload(&gateway, read(wasmgate_guests::P3_STREAM_FOREVER)).await;
    deploy(
        &gateway,
        "p3-stream-forever",
        &digest,
        json!({"envVars": {"exec_timeout": "300ms"}}),
    )
    .await;
    let request = request("GET", &gateway, "/function/p3-stream-forever", Bytes::new());
    let mut sender = crate::support::connect(gateway.addr).await;
    let response = sender.send_request(request).await.expect("a head");
    assert_eq!(response.status(), 200);
    assert!(
        response.into_body().collect().await.is_err(),
        "the endless body is cut, not ended cleanly"
    );
    let finite = get(&gateway, "/function/p3-stream-forever?n=2").await;
    assert_eq!(finite.text(), "tick 1\ntick 2\n");
}

/// `limits.memory` holds a 0.3 guest.
#[tokio::test]
pub async fn p3_memhog() {
    let gateway = gateway_with(&[], &[]);
    let digest = upload(&gateway, read(wasmgate_guests::P3_MEMHOG)).await;
    deploy(
        &gateway,
        "p3-memhog",
        &digest,
        json!({"limits": {"memory": "16Mi"}}),
    )
    .await;
    assert_eq!(
        get(&gateway, "/function/p3-memhog?mb=2").await.text(),
        "held 2 MiB\n"
    );
    let answer = get(&gateway, "/function/p3-memhog?mb=64").await;
    assert_eq!(answer.status, 500);
    assert!(
        answer.text().contains("memory limit of 16Mi"),
        "{}",
        answer.text()
    );
}

/// A 0.3 guest's outbound requests go through the same allow-list as a 0.2 guest's.
#[tokio::test]
pub async fn p3_outbound() {
    let upstream = Upstream::start(std::time::Duration::ZERO).await;
    let gateway = gateway_with(&[], &[]);
    let digest = upload(&gateway, read(wasmgate_guests::P3_OUTBOUND)).await;
    let allowed = format!("127.0.0.1:{}", upstream.addr.port());
    deploy(
        &gateway,
        "open",
        &digest,
        json!({"annotations": {"com.wasmgate.allowed-hosts": allowed}}),
    )
    .await;
    deploy(&gateway, "closed", &digest, json!({})).await;
    let path = |name: &str| format!("/function/{name}?url=http://{}/", upstream.addr);
    let answer = get(&gateway, &path("open")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), "200 upstream says hi\n");
    let denied = get(&gateway, &path("closed")).await;
    assert_eq!(denied.status, 502);
    assert!(
        denied.text().contains("HttpRequestDenied"),
        "{}",
        denied.text()
    );
}

/// A 0.3 function calls a 0.2 one by name, in process.
#[tokio::test]
pub async fn p3_caller() {
    let gateway = gateway_with(
        &[
            ("p3-caller", wasmgate_guests::P3_CALLER),
            ("echo", wasmgate_guests::ECHO),
        ],
        &[],
    );
    let answer = send(
        gateway.addr,
        request("POST", &gateway, "/function/p3-caller?to=echo", "through"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), "== echo (200)\nthrough");
}

/// A 0.3 function reads its secrets from `/var/openfaas/secrets` and sees its `envVars` only.
#[tokio::test]
pub async fn p3_inspect() {
    let gateway = gateway_with(&[], &[]);
    let secret = api(
        &gateway,
        "POST",
        "/system/secrets",
        Some(json!({"name": "token", "value": "t0ken"})),
    )
    .await;
    assert!(secret.status.is_success(), "{}", secret.text());
    let digest = upload(&gateway, read(wasmgate_guests::P3_INSPECT)).await;
    deploy(
        &gateway,
        "p3-inspect",
        &digest,
        json!({"secrets": ["token"], "envVars": {"MODE": "p3"}}),
    )
    .await;
    let secret = get(
        &gateway,
        "/function/p3-inspect/file?/var/openfaas/secrets/token",
    )
    .await;
    assert_eq!(secret.status, 200, "{}", secret.text());
    assert_eq!(secret.text(), "t0ken");
    let env = get(&gateway, "/function/p3-inspect/env").await.text();
    assert!(env.lines().any(|l| l == "MODE=p3"), "{env}");
}

/// A component built by a third-party SDK (spin-sdk 7, wasi:http 0.3) deploys and answers, and
/// after a restart it is served again from the compiled-code cache.
#[tokio::test]
pub async fn spin7_hello() {
    let state = crate::support::temp_dir("spin7");
    let state_arg = state.display().to_string();
    let gateway = gateway_with(&[], &["--state-dir", &state_arg]);
    let digest = upload(&gateway, read(wasmgate_guests::SPIN7_HELLO)).await;
    deploy(&gateway, "spin7", &digest, json!({})).await;
    let answer = get(&gateway, "/function/spin7/hi").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), "Hello from spin-sdk 7\n/hi\n");
    drop(gateway);

    let gateway = gateway_with(&[], &["--state-dir", &state_arg]);
    let answer = get(&gateway, "/function/spin7/again").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), "Hello from spin-sdk 7\n/again\n");
    let status = api(&gateway, "GET", "/system/function/spin7", None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(status["world"], "wasi:http@0.3");
}
