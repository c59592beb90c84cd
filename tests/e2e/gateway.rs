//! The gateway from outside: routes, the API and every guest in process (`InProcess`, on `App::handle`),
//! and what needs a real `wasmgate` process (signals, the printed address, sockets, the CLI) end to end.
//!
//! Over 600 lines: one test per guest (which the `foreach_guest!` check requires) and the routing
//! tests.

#[path = "gateway/api.rs"]
mod api;
#[path = "gateway/asynchronous.rs"]
mod asynchronous;
#[path = "gateway/cli.rs"]
mod cli;
#[path = "gateway/cluster.rs"]
mod cluster;
#[path = "gateway/connectors.rs"]
mod connectors;
#[path = "gateway/disk.rs"]
mod disk;
#[path = "gateway/edge.rs"]
mod edge;
#[path = "gateway/faascli.rs"]
mod faascli;
#[path = "gateway/limits.rs"]
mod limits;
#[path = "gateway/oci.rs"]
mod oci;
#[path = "gateway/p3.rs"]
mod p3;
#[path = "gateway/services.rs"]
mod services;
#[path = "gateway/spin.rs"]
mod spin;
#[path = "gateway/spin_files.rs"]
mod spin_files;
mod support;
#[path = "gateway/traces.rs"]
mod traces;
#[path = "gateway/ui.rs"]
mod ui;

use bytes::Bytes;
use futures::future::join_all;
use http_body_util::BodyExt;
use support::{Gateway, InProcess, Target, get, request, run_to_exit, send, temp_dir};

/// Every guest in `guests/functions` must have a test of its own name in [`guests`]; a guest added
/// without one stops this file from compiling.
macro_rules! require_test {
    ($name:ident) => {
        const _: fn() = guests::$name;
    };
}
wasmgate_guests::foreach_guest!(require_test);

/// One test per guest function.
mod guests {
    use super::*;
    // `pieces` is shown through faas-cli's `logs` request, with the other faas-cli replays.
    pub use crate::faascli::pieces;
    // The wasi:http 0.3 guests' tests live with the other 0.3 tests.
    pub use crate::edge::p3_grpc;
    pub use crate::p3::{
        p3_caller, p3_echo, p3_hello, p3_inspect, p3_memhog, p3_outbound, p3_sleep, p3_spin,
        p3_stream_forever, p3_trailers, spin7_hello,
    };
    // The Spin app's components are tested as the app, with the other Spin tests.
    pub use crate::spin::{spin5_back, spin5_front, spin5_redis, spin7_app};

    /// `flaky` fails while `X-Retry` is below `?fail=N`, sleeps for `?sleep_ms`, and answers any status.
    #[tokio::test]
    pub async fn flaky() {
        let gateway = InProcess::with_all_guests().await;
        let failing = gateway
            .send(request("POST", &gateway, "/function/flaky?fail=1", "b"))
            .await;
        assert_eq!(failing.status, 503);
        let mut retried = request("POST", &gateway, "/function/flaky?fail=1", "b");
        retried
            .headers_mut()
            .insert("x-retry", http::HeaderValue::from_static("1"));
        let retried = gateway.send(retried).await;
        assert_eq!(retried.status, 200);
        assert_eq!(retried.text(), "ok after 1 retries\nb");
        let started = std::time::Instant::now();
        let slept = get(&gateway, "/function/flaky?sleep_ms=200&status=201").await;
        assert_eq!(slept.status, 201);
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    }

    /// `kvcounter` counts in its bucket (fully tested in `services.rs`).
    #[tokio::test]
    pub async fn kvcounter() {
        let gateway = InProcess::with_all_guests().await;
        let first = gateway
            .send(request("POST", &gateway, "/function/kvcounter", ""))
            .await;
        assert_eq!(first.text(), "count 1\n");
        assert_eq!(
            get(&gateway, "/function/kvcounter").await.text(),
            "count 1\n"
        );
    }

    /// `greeter` greets from its configuration (fully tested in `services.rs`).
    #[tokio::test]
    pub async fn greeter() {
        let gateway = InProcess::with_all_guests().await;
        assert_eq!(
            get(&gateway, "/function/greeter").await.text(),
            "Hello, world!\n"
        );
    }

    /// `pipeline` calls other functions by name (fully tested in `services.rs`).
    #[tokio::test]
    pub async fn pipeline() {
        let gateway = InProcess::with_all_guests().await;
        let answer = gateway
            .send(request(
                "POST",
                &gateway,
                "/function/pipeline?steps=echo",
                "x",
            ))
            .await;
        assert_eq!(answer.text(), "== echo (200)\nx\n");
    }

    #[tokio::test]
    pub async fn hello() {
        let gateway = Gateway::with_all_guests();
        let answer = get(&gateway, "/function/hello/x/y?z=1").await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.text(),
            "Hello from wasmgate! You asked for /x/y?z=1\n"
        );
        assert_eq!(answer.header("content-type"), "text/plain; charset=utf-8");
        // Its stdout is captured, prefixed with the function's name.
        gateway.wait_for_log(&["hello.openfaas-fn: hello called for /x/y?z=1"]);
    }

    /// An endless loop that never calls the host is interrupted at its time limit: 504 with
    /// `X-Duration-Seconds`, hello keeps answering on the side, and the CPU is free again after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    pub async fn spin() {
        let gateway = Gateway::with_all_guests();
        support::deploy(
            &gateway,
            "spin-limited",
            wasmgate_guests::SPIN,
            serde_json::json!({"envVars": {"exec_timeout": "3s"}}),
        )
        .await;
        // Within its limit it answers.
        let answer = get(&gateway, "/function/spin-limited?ms=50").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.text(), "spun 50 ms\n");

        let side = support::Background::hello(&gateway, 2);
        let loops = tokio::spawn({
            let calls = (0..2).map(|_| {
                let (addr, host) = (gateway.addr, gateway.addr.to_string());
                async move {
                    let request = http::Request::get("/function/spin-limited")
                        .header(http::header::HOST, host)
                        .body(http_body_util::Full::new(Bytes::new()))
                        .expect("request");
                    send(addr, request).await
                }
            });
            join_all(calls)
        });
        // Fairness: while two loops spin on a gateway with two worker threads, hello still answers.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let before = side.served();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let during = side.served() - before;
        assert!(
            !loops.is_finished(),
            "the loops ended early; the window proves nothing"
        );
        assert!(during > 0, "no hello answered while the loops ran");
        let answers = loops.await.expect("the loops answer");
        for answer in &answers {
            assert_eq!(answer.status, 504, "{}", answer.text());
            assert_eq!(answer.header("x-openfaas-internal"), "wasmgate");
            assert!(
                answer.text().contains("timed out after 3s"),
                "{}",
                answer.text()
            );
            let seconds: f64 = answer
                .header("x-duration-seconds")
                .parse()
                .expect("a number");
            assert!(
                seconds >= 3.0,
                "answered after {seconds} s, before its limit"
            );
        }
        let served = side.finish().await;
        gateway.wait_for_log(&["spin-limited.openfaas-fn", "timed out after 3s"]);

        // The two loops are gone: an idle second costs the process almost no CPU. (Two stuck
        // loops would burn two full seconds of it.)
        let before = gateway.cpu_time();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let used = gateway.cpu_time() - before;
        assert!(
            used < std::time::Duration::from_millis(500),
            "idle gateway used {used:?} of CPU in 1 s"
        );
        let answer = get(&gateway, "/function/hello").await;
        assert_eq!(answer.status, 200);
        println!("hello served {served} requests on the side while two loops were interrupted");
    }

    /// A guest that allocates without end fails at its memory limit, with an answer that says so;
    /// within the limit it works, and hello is unaffected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    pub async fn memhog() {
        let gateway = Gateway::with_all_guests();
        support::deploy(
            &gateway,
            "memhog-limited",
            wasmgate_guests::MEMHOG,
            serde_json::json!({"limits": {"memory": "16Mi"}}),
        )
        .await;
        let answer = get(&gateway, "/function/memhog-limited?mb=4").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.text(), "held 4 MiB\n");

        let side = support::Background::hello(&gateway, 2);
        for _ in 0..3 {
            let answer = get(&gateway, "/function/memhog-limited").await;
            assert_eq!(answer.status, 500, "{}", answer.text());
            assert_eq!(answer.header("x-openfaas-internal"), "wasmgate");
            assert!(
                answer.text().contains("exceeded its memory limit of 16Mi"),
                "{}",
                answer.text()
            );
        }
        side.finish().await;
        gateway.wait_for_log(&[
            "memhog-limited.openfaas-fn",
            "exceeded its memory limit of 16777216 bytes",
        ]);
        // The same component without a limit of its own gets the gateway's default (128Mi).
        let answer = get(&gateway, "/function/memhog?mb=64").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let answer = get(&gateway, "/function/memhog?mb=200").await;
        assert_eq!(answer.status, 500, "{}", answer.text());
        assert!(
            answer.text().contains("limit of 128Mi"),
            "{}",
            answer.text()
        );
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    }

    /// A 1 GiB response streams through with the gateway's memory bounded; a client that stops
    /// reading is cut off at the write timeout and the instance is freed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    pub async fn bigstream() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut args = support::all_guests();
        args.extend(["--write-timeout".to_string(), "1s".to_string()]);
        let gateway = Gateway::start(&args);
        assert_eq!(
            get(&gateway, "/function/bigstream?mb=1").await.body.len(),
            1 << 20
        );
        let before = gateway.rss();

        let mut sender = support::connect(gateway.addr).await;
        let response = sender
            .send_request(request(
                "GET",
                &gateway,
                "/function/bigstream",
                Bytes::new(),
            ))
            .await
            .expect("a response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let (mut total, mut peak, mut frames) = (0u64, before, 0u64);
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("a frame");
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
            }
            frames += 1;
            if frames % 4096 == 0 {
                peak = peak.max(gateway.rss());
            }
        }
        assert_eq!(total, 1 << 30, "the whole GiB arrived");
        let growth = peak.saturating_sub(before);
        assert!(
            growth < 128 << 20,
            "resident memory grew by {} MiB while streaming 1 GiB",
            growth >> 20
        );
        println!(
            "streamed 1 GiB; resident memory grew by at most {} KiB",
            growth >> 10
        );

        // A client that reads the head and stops: the gateway gives up after --write-timeout 1s.
        let side = support::Background::hello(&gateway, 2);
        let mut stalled = tokio::net::TcpStream::connect(gateway.addr)
            .await
            .expect("connect");
        stalled
            .write_all(b"GET /function/bigstream HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut head = [0u8; 64];
        let n = stalled.read(&mut head).await.expect("read the head");
        assert!(
            head[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&head[..n])
        );
        support::eventually("the stalled response's instance to be freed", || async {
            let metrics = get(&gateway, "/metrics").await.text();
            metrics.lines().any(|l| l == "wasmgate_instances_in_use 0")
        })
        .await;
        gateway.wait_for_log(&["read nothing for 1s"]);
        side.finish().await;
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    }

    /// Outbound HTTP: denied by default (no connection opened), allowed per function by annotation,
    /// pooled, and bounded in how many one request may open at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    pub async fn outbound() {
        use std::sync::atomic::Ordering;
        let upstream = support::Upstream::start(std::time::Duration::from_millis(200)).await;
        let target = format!("http://127.0.0.1:{}/x", upstream.addr.port());
        let gateway = Gateway::with_all_guests();
        let side = support::Background::hello(&gateway, 2);

        // Not allowed: the guest gets HTTP-request-denied and nothing reaches the upstream.
        let answer = get(&gateway, &format!("/function/outbound?url={target}")).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(
            answer.text().contains("HttpRequestDenied"),
            "{}",
            answer.text()
        );
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);

        support::deploy(
            &gateway,
            "outbound-allowed",
            wasmgate_guests::OUTBOUND,
            serde_json::json!({"annotations": {
                "com.wasmgate.allowed-hosts": format!("api.example.com, 127.0.0.1:{}", upstream.addr.port())
            }}),
        )
        .await;
        for _ in 0..5 {
            let answer = get(
                &gateway,
                &format!("/function/outbound-allowed?url={target}"),
            )
            .await;
            assert_eq!(answer.text(), "200 upstream says hi\n");
        }
        // One pooled connection served them one after another.
        assert_eq!(upstream.requests.load(Ordering::SeqCst), 5);
        assert!(
            upstream.connections.load(Ordering::SeqCst) <= 2,
            "{} connections for 5 sequential requests",
            upstream.connections.load(Ordering::SeqCst)
        );
        // Another port of the same host is not allowed.
        let answer = get(
            &gateway,
            "/function/outbound-allowed?url=http://127.0.0.1:1/",
        )
        .await;
        assert!(
            answer.text().contains("HttpRequestDenied"),
            "{}",
            answer.text()
        );

        // Forty at once from one request: sixteen go out, the rest are refused at once.
        let answer = get(
            &gateway,
            &format!("/function/outbound-allowed?url={target}&n=40"),
        )
        .await;
        let text = answer.text();
        let sent = text
            .lines()
            .filter(|l| *l == "200 upstream says hi")
            .count();
        let refused = text
            .lines()
            .filter(|l| l.contains("ConnectionLimitReached"))
            .count();
        assert_eq!((sent, refused), (16, 24), "{text}");
        assert!(upstream.peak.load(Ordering::SeqCst) <= 16);
        side.finish().await;
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
        // The guest's first-byte timeout (50 ms) against an upstream that takes 200 ms.
        let answer = get(
            &gateway,
            &format!("/function/outbound-allowed?url={target}&first_byte_ms=50"),
        )
        .await;
        assert!(
            answer.text().contains("ConnectionReadTimeout"),
            "{}",
            answer.text()
        );

        // A bad list is refused at deploy.
        let answer = support::api(
            &gateway,
            "POST",
            "/system/functions",
            Some(
                serde_json::json!({"service": "bad-hosts", "image": wasmgate_guests::OUTBOUND,
                "annotations": {"com.wasmgate.allowed-hosts": "https://api.example.com"}}),
            ),
        )
        .await;
        assert_eq!(answer.status, 400);
        assert!(
            answer.text().contains("com.wasmgate.allowed-hosts"),
            "{}",
            answer.text()
        );
    }

    #[tokio::test]
    pub async fn markdown() {
        let gateway = Gateway::with_all_guests();
        let text = "# Title\n\nSome *emphasis* and a [link](https://example.com).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let answer = send(
            gateway.addr,
            request(
                "POST",
                &gateway,
                "/function/markdown",
                text.as_bytes().to_vec(),
            ),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
        let html = answer.text();
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<em>emphasis</em>"), "{html}");
        assert!(
            html.contains("<a href=\"https://example.com\">link</a>"),
            "{html}"
        );
        assert!(html.contains("<td>1</td>"), "tables are on: {html}");
        gateway.wait_for_log(&["markdown.openfaas-fn: markdown rendered"]);

        // Its own limit: more than 1 MiB of Markdown is refused by the function.
        let big = vec![b'a'; 1024 * 1024 + 1];
        let answer = send(
            gateway.addr,
            request("POST", &gateway, "/function/markdown", big),
        )
        .await;
        assert_eq!(answer.status, 413);
        let answer = send(
            gateway.addr,
            request("POST", &gateway, "/function/markdown", vec![0xff, 0xfe]),
        )
        .await;
        assert_eq!(answer.status, 400);
    }

    #[tokio::test]
    pub async fn echo() {
        let gateway = Gateway::with_all_guests();
        let body: Vec<u8> = (0..1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut req = request(
            "PUT",
            &gateway,
            "/function/echo/a/b?x=1&y=%20two&x=3",
            body.clone(),
        );
        req.headers_mut()
            .insert("x-custom", "custom value".parse().expect("header"));
        req.headers_mut().insert(
            "content-type",
            "application/octet-stream".parse().expect("header"),
        );
        let answer = send(gateway.addr, req).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-echo-method"), "PUT");
        assert_eq!(answer.header("x-echo-path"), "/a/b");
        assert_eq!(answer.header("x-echo-query"), "x=1&y=%20two&x=3");
        assert_eq!(answer.header("x-echo-x-custom"), "custom value");
        assert_eq!(answer.header("content-type"), "application/octet-stream");
        // The gateway added these on the way in.
        assert_eq!(
            answer.header("x-echo-x-call-id"),
            answer.header("x-call-id")
        );
        assert_eq!(answer.header("x-echo-x-forwarded-for"), "127.0.0.1");
        assert_eq!(
            answer.header("x-echo-x-forwarded-host"),
            gateway.addr.to_string()
        );
        assert_eq!(answer.body.len(), body.len());
        assert!(answer.body == body, "the 1 MiB body came back changed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    pub async fn trap() {
        let gateway = Gateway::with_all_guests();
        let answer = get(&gateway, "/function/trap").await;
        assert_eq!(answer.status, 500);
        assert_eq!(answer.header("x-openfaas-internal"), "wasmgate");
        assert!(
            answer.text().contains("trap.openfaas-fn failed"),
            "{}",
            answer.text()
        );
        // The reason is logged with the function and the call id.
        let call_id = answer.header("x-call-id");
        let line = gateway.wait_for_log(&["invocation failed", call_id]);
        assert!(
            line.contains("trap.openfaas-fn") && line.contains("unreachable"),
            "{line}"
        );
        // The guest's own panic message is in its log stream.
        gateway.wait_for_log(&["trap.openfaas-fn: this function always panics"]);
        // And the gateway keeps serving.
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
        assert_eq!(get(&gateway, "/function/trap").await.status, 500);
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);

        let side = support::Background::hello(&gateway, 2);
        // Endless recursion: the guest's stack overflows, wasmtime traps, the host stack is untouched.
        for _ in 0..3 {
            let answer = get(&gateway, "/function/trap/recurse").await;
            assert_eq!(answer.status, 500, "{}", answer.text());
            let line = gateway.wait_for_log(&["invocation failed", answer.header("x-call-id")]);
            // Rust keeps its stack in linear memory, below address 0 of its data: running off it is
            // an out-of-bounds access. Deep recursion with small frames exhausts wasmtime's own
            // call-stack limit instead. Either way the instance traps and nothing else is touched.
            assert!(
                line.contains("out of bounds memory access")
                    || line.contains("call stack exhausted"),
                "{line}"
            );
        }
        // A trap after the response started: the head and the first bytes are out, the body is cut.
        let mut sender = support::connect(gateway.addr).await;
        let response = sender
            .send_request(request(
                "GET",
                &gateway,
                "/function/trap/after-start",
                Bytes::new(),
            ))
            .await
            .expect("a response head");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => received.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the cut body ends with an error, not a clean end");
        assert_eq!(
            received.len(),
            256 * 1024,
            "everything written before the panic arrived"
        );
        gateway.wait_for_log(&["function failed after it began to answer"]);
        gateway.wait_for_log(&[
            "trap.openfaas-fn: this function panics after its response has started",
        ]);
        side.finish().await;
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    pub async fn silent() {
        let gateway = Gateway::with_all_guests();
        let side = support::Background::hello(&gateway, 2);
        let answer = get(&gateway, "/function/silent").await;
        assert_eq!(answer.status, 500);
        assert_eq!(answer.header("x-openfaas-internal"), "wasmgate");
        assert!(
            answer.text().contains("without a response"),
            "{}",
            answer.text()
        );
        gateway.wait_for_log(&[
            "returned without sending a response",
            answer.header("x-call-id"),
        ]);
        side.finish().await;
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    pub async fn inspect() {
        let gateway = Gateway::start(&[
            "--function".to_string(),
            format!("hello={}", wasmgate_guests::HELLO),
        ]);
        let secret = serde_json::json!({"name": "api-key", "value": "s3cret"});
        assert_eq!(
            support::api(&gateway, "POST", "/system/secrets", Some(secret))
                .await
                .status,
            202
        );
        let extra = serde_json::json!({"envVars": {"MODE": "test"}, "secrets": ["api-key"]});
        support::deploy(&gateway, "inspect", wasmgate_guests::INSPECT, extra).await;

        let env = get(&gateway, "/function/inspect/env").await;
        assert_eq!(
            env.text(),
            "MODE=test\n",
            "only envVars, nothing of the host"
        );
        let secret = get(
            &gateway,
            "/function/inspect/file?/var/openfaas/secrets/api-key",
        )
        .await;
        assert_eq!(
            (secret.status.as_u16(), secret.text().as_str()),
            (200, "s3cret")
        );
        let listing = get(&gateway, "/function/inspect/dir?/var/openfaas/secrets").await;
        assert_eq!(listing.text(), "api-key", "exactly the secrets it lists");
        let write = send(
            gateway.addr,
            request(
                "PUT",
                &gateway,
                "/function/inspect/file?/var/openfaas/secrets/api-key",
                "x",
            ),
        )
        .await;
        assert_eq!(write.status, 403, "secrets are read-only: {}", write.text());
        let side = support::Background::hello(&gateway, 2);
        for path in ["/etc/passwd", "/var/openfaas/secrets/../../../etc/passwd"] {
            let answer = get(&gateway, &format!("/function/inspect/file?{path}")).await;
            assert_eq!(answer.status, 404, "{path} must not be visible");
        }
        side.finish().await;
        // An update of the secret reaches the function.
        let update = serde_json::json!({"name": "api-key", "value": "rotated"});
        assert_eq!(
            support::api(&gateway, "PUT", "/system/secrets", Some(update))
                .await
                .status,
            202
        );
        let secret = get(
            &gateway,
            "/function/inspect/file?/var/openfaas/secrets/api-key",
        )
        .await;
        assert_eq!(secret.text(), "rotated");
    }

    #[tokio::test]
    pub async fn counter() {
        let gateway = InProcess::with_all_guests().await;
        for _ in 0..3 {
            let answer = get(&gateway, "/function/counter").await;
            assert_eq!(answer.text(), "1", "an instance was reused");
        }
    }
}

#[tokio::test]
async fn namespace_suffix_addresses_the_default_namespace() {
    let gateway = InProcess::with_all_guests().await;
    let answer = get(&gateway, "/function/hello.openfaas-fn").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "Hello from wasmgate! You asked for /\n");
    let answer = get(&gateway, "/function/hello.openfaas-fn/deep/path").await;
    assert_eq!(
        answer.text(),
        "Hello from wasmgate! You asked for /deep/path\n"
    );
    // Another namespace holds no such function.
    assert_eq!(get(&gateway, "/function/hello.other").await.status, 404);
}

#[tokio::test]
async fn unknown_functions_get_404() {
    let gateway = InProcess::with_all_guests().await;
    for path in [
        "/function/nope",
        "/function/nope/x",
        "/function/",
        "/function/bad%20name",
    ] {
        let answer = get(&gateway, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.header("x-openfaas-internal"), "wasmgate", "{path}");
        assert!(
            answer.header("content-type").starts_with("text/plain"),
            "{path}"
        );
    }
    assert_eq!(get(&gateway, "/elsewhere").await.status, 404);
}

#[tokio::test]
async fn call_id_start_time_and_duration_headers() {
    let gateway = InProcess::with_all_guests().await;
    let answer = get(&gateway, "/function/hello").await;
    assert_eq!(answer.header("x-call-id").len(), 36, "a UUID");
    let start: u128 = answer
        .header("x-start-time")
        .parse()
        .expect("Unix nanoseconds");
    assert!(start > 1_600_000_000_000_000_000, "{start}");
    let duration: f64 = answer
        .header("x-duration-seconds")
        .parse()
        .expect("float seconds");
    assert!(duration >= 0.0);

    let mut req = request("GET", &gateway, "/function/hello", Bytes::new());
    req.headers_mut()
        .insert("x-call-id", "client-chosen-id".parse().expect("header"));
    let answer = gateway.send(req).await;
    assert_eq!(answer.header("x-call-id"), "client-chosen-id");
    // Errors carry them too.
    let answer = get(&gateway, "/function/nope").await;
    answer.header("x-call-id");
    answer.header("x-duration-seconds");
}

#[tokio::test]
async fn content_type_falls_back_to_the_request_then_text_plain() {
    let gateway = InProcess::with_all_guests().await;
    // echo copies the request's content type only when there is one; counter never sets one.
    let mut req = request("POST", &gateway, "/function/counter", "x");
    req.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    assert_eq!(
        gateway.send(req).await.header("content-type"),
        "application/json"
    );
    assert_eq!(
        get(&gateway, "/function/counter")
            .await
            .header("content-type"),
        "text/plain"
    );
}

#[tokio::test]
async fn methods_outside_the_contract_get_405() {
    let gateway = InProcess::with_all_guests().await;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let answer = gateway
            .send(request(method, &gateway, "/function/echo", Bytes::new()))
            .await;
        assert_eq!(answer.status, 200, "{method}");
        assert_eq!(answer.header("x-echo-method"), method);
    }
    let head = gateway
        .send(request("HEAD", &gateway, "/function/hello", Bytes::new()))
        .await;
    assert_eq!(head.status, 200);
    let answer = gateway
        .send(request("TRACE", &gateway, "/function/echo", Bytes::new()))
        .await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("x-openfaas-internal"), "wasmgate");
    assert!(answer.header("allow").contains("POST"));
}

#[tokio::test]
async fn healthz_answers_200() {
    let gateway = InProcess::with_all_guests().await;
    let answer = get(&gateway, "/healthz").await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn two_hundred_concurrent_requests_all_succeed() {
    let gateway = InProcess::with_all_guests().await;
    let requests = (0..200).map(|i| {
        let gateway = &gateway;
        async move {
            let (path, expected) = match i % 3 {
                0 => (
                    format!("/function/hello/{i}"),
                    format!("Hello from wasmgate! You asked for /{i}\n"),
                ),
                1 => (format!("/function/echo/{i}"), String::new()),
                _ => ("/function/counter".to_string(), "1".to_string()),
            };
            let answer = gateway
                .send(request("GET", gateway, &path, Bytes::new()))
                .await;
            (i, answer.status, answer.text(), expected)
        }
    });
    let answers = join_all(requests).await;
    for (i, status, text, expected) in &answers {
        assert_eq!(*status, 200, "request {i}: {text}");
        assert_eq!(text, expected, "request {i}");
    }
    assert_eq!(answers.len(), 200);
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    let gateway = Gateway::with_all_guests();
    let (mut body_tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    let req = http::Request::post("/function/echo/slow")
        .header(http::header::HOST, gateway.addr.to_string())
        .body(body)
        .expect("valid request");
    let mut sender = support::connect(gateway.addr).await;
    let response = tokio::spawn(sender.send_request(req));
    body_tx
        .send_data(Bytes::from_static(b"first part, "))
        .await
        .expect("send");
    // echo answers with its head before it reads the body: the request is now in flight.
    let response = response.await.expect("task").expect("response head");
    assert_eq!(response.status(), 200);

    gateway.signal("TERM");
    gateway.wait_for_log(&["shutting down"]);
    // No new connections are accepted once shutdown has begun.
    assert!(
        tokio::net::TcpStream::connect(gateway.addr).await.is_err(),
        "accepted a connection during shutdown"
    );

    body_tx
        .send_data(Bytes::from_static(b"second part"))
        .await
        .expect("send");
    drop(body_tx);
    let echoed = response
        .into_body()
        .collect()
        .await
        .expect("the whole body")
        .to_bytes();
    assert_eq!(&echoed[..], b"first part, second part");
    let status = gateway.wait();
    assert!(status.success(), "wasmgate exited with {status}");
}

#[tokio::test]
async fn sigint_stops_an_idle_gateway() {
    let gateway = Gateway::with_all_guests();
    gateway.signal("INT");
    let status = gateway.wait();
    assert!(status.success(), "wasmgate exited with {status}");
}

#[tokio::test]
async fn serves_the_functions_of_a_stack_file() {
    let dir = temp_dir("stack");
    std::fs::create_dir_all(dir.join("wasm")).expect("mkdir");
    std::fs::copy(wasmgate_guests::HELLO, dir.join("wasm/hello.wasm")).expect("copy");
    std::fs::write(
        dir.join("stack.yml"),
        "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n  \
         greeter:\n    lang: rust\n    handler: ./hello\n    image: ${WASM_DIR:-wasm}/hello.wasm\n    \
         namespace: team-a\n    environment:\n      mode: test\n  \
         hog:\n    lang: rust\n    image: {memhog}\n    limits:\n      memory: 16Mi\n    \
         labels:\n      team: a\n"
            .replace("{memhog}", wasmgate_guests::MEMHOG),
    )
    .expect("write stack.yml");
    let stack = dir.join("stack.yml").display().to_string();
    let gateway = InProcess::start(&["-f".to_string(), stack]).await;
    // The stack's limits and labels apply to what serve deploys.
    assert_eq!(get(&gateway, "/function/hog?mb=4").await.status, 200);
    let answer = get(&gateway, "/function/hog?mb=32").await;
    assert_eq!(answer.status, 500, "{}", answer.text());
    assert!(answer.text().contains("limit of 16Mi"), "{}", answer.text());
    let status = support::api(&gateway, "GET", "/system/function/hog", None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(status["labels"]["team"], "a", "{status}");
    let answer = get(&gateway, "/function/greeter.team-a/hi").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "Hello from wasmgate! You asked for /hi\n");
    assert_eq!(
        get(&gateway, "/function/greeter").await.status,
        404,
        "greeter lives in team-a"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn startup_errors_name_the_function_and_the_reason() {
    let dir = temp_dir("bad");
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let missing = dir.join("missing.wasm");
    let cases = [
        (
            format!("f={}", missing.display()),
            vec!["function f.openfaas-fn", "missing.wasm"],
        ),
        (
            format!("g={}", core.display()),
            vec!["function g.openfaas-fn", "core WebAssembly module"],
        ),
        ("bad name=x.wasm".to_string(), vec!["invalid function name"]),
    ];
    for (arg, expected) in cases {
        let (status, stderr) =
            run_to_exit(&["serve", "--listen", "127.0.0.1:0", "--function", &arg]);
        assert!(!status.success(), "{arg}: should fail");
        for text in expected {
            assert!(stderr.contains(text), "{arg}: {text:?} not in {stderr}");
        }
    }
    let (status, stderr) =
        run_to_exit(&["serve", "-f", &dir.join("none.yml").display().to_string()]);
    assert!(!status.success());
    assert!(stderr.contains("none.yml"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
