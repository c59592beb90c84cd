//! Limits a deployment sets and the gateway enforces: requests in flight (429), and deployments that
//! ask for more than the gateway allows (400).

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;

use crate::support::{Gateway, InProcess, Target, all_guests, api, deploy, get, request, send};

/// Sends slow requests until the limit is reached, then checks the refusal.
async fn refused_past_limit(gateway: &impl Target, path: &str, expected: &str) {
    // One slow request holds the only place; the next is refused at once.
    let slow = async {
        let path = format!("{path}?ms=3000");
        loop {
            let answer = gateway
                .send(request("GET", gateway, &path, Bytes::new()))
                .await;
            // A quick request may have held the place when this one arrived; it tries again.
            if answer.status != 429 {
                return answer;
            }
        }
    };
    let refused = async {
        let deadline = std::time::Instant::now() + crate::support::PATIENCE;
        loop {
            let answer = get(gateway, &format!("{path}?ms=1")).await;
            if answer.status == 429 {
                break answer;
            }
            assert_eq!(answer.status, 200, "{}", answer.text());
            assert!(
                std::time::Instant::now() < deadline,
                "never refused with 429"
            );
        }
    };
    let (slow, refused) = tokio::join!(slow, refused);
    assert_eq!(refused.header("x-openfaas-internal"), "wasmgate");
    assert!(refused.text().contains(expected), "{}", refused.text());
    assert_eq!(slow.status, 200, "{}", slow.text());
    // With the place free again, it is served.
    let answer = get(gateway, &format!("{path}?ms=1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_of_a_function_answers_429() {
    let gateway = InProcess::with_all_guests().await;
    deploy(
        &gateway,
        "one-at-a-time",
        wasmgate_guests::SPIN,
        serde_json::json!({"envVars": {"max_inflight": "1"}}),
    )
    .await;
    refused_past_limit(
        &gateway,
        "/function/one-at-a-time",
        "function one-at-a-time.openfaas-fn is serving its maximum of 1 requests at once",
    )
    .await;
    // Other functions are not held by it.
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_of_the_gateway_answers_429() {
    let mut args = all_guests();
    args.extend(["--max-inflight".to_string(), "1".to_string()]);
    let gateway = InProcess::start(&args).await;
    refused_past_limit(
        &gateway,
        "/function/spin",
        "the gateway is serving its maximum of 1 requests at once",
    )
    .await;
}

#[tokio::test]
async fn deployments_beyond_the_gateway_limits_are_refused() {
    let gateway = InProcess::start(&[
        "--max-memory".to_string(),
        "64Mi".to_string(),
        "--max-timeout".to_string(),
        "10s".to_string(),
    ])
    .await;
    let cases = [
        (
            serde_json::json!({"limits": {"memory": "128Mi"}}),
            "limits.memory 128Mi is above this gateway's maximum of 64Mi",
        ),
        (
            serde_json::json!({"limits": {"memory": "lots"}}),
            "limits.memory: invalid memory quantity \"lots\"",
        ),
        (
            serde_json::json!({"limits": {"memory": "1Ki"}}),
            "less than one WebAssembly page",
        ),
        (
            serde_json::json!({"envVars": {"exec_timeout": "1m"}}),
            "envVars.exec_timeout 1m is above this gateway's maximum of 10s",
        ),
        (
            serde_json::json!({"envVars": {"exec_timeout": "soon"}}),
            "envVars.exec_timeout: invalid duration",
        ),
        (
            serde_json::json!({"envVars": {"max_inflight": "0"}}),
            "envVars.max_inflight must be a whole number of requests above zero",
        ),
    ];
    for (extra, expected) in cases {
        let mut body = serde_json::json!({"service": "limited", "image": wasmgate_guests::HELLO});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let answer = api(&gateway, "POST", "/system/functions", Some(body)).await;
        assert_eq!(answer.status, 400, "{extra}: {}", answer.text());
        assert!(
            answer.text().contains(expected),
            "{extra}: {}",
            answer.text()
        );
    }
    // Nothing was deployed by the refusals.
    assert_eq!(get(&gateway, "/function/limited").await.status, 404);
    // Within the limits it deploys.
    deploy(
        &gateway,
        "limited",
        wasmgate_guests::HELLO,
        serde_json::json!({"limits": {"memory": "64Mi"}, "envVars": {"exec_timeout": "10s"}}),
    )
    .await;
    assert_eq!(get(&gateway, "/function/limited").await.status, 200);
}

fn gateway_with(flags: &[&str]) -> Gateway {
    let mut args = all_guests();
    args.extend(flags.iter().map(|f| f.to_string()));
    Gateway::start(&args)
}

/// Request bodies past `--max-request-body`: 413 whether the length is declared or not.
#[tokio::test]
async fn request_bodies_past_the_limit_answer_413() {
    let gateway = gateway_with(&["--max-request-body", "1Ki"]);
    let text = "# small\n".repeat(100);
    let answer = send(
        gateway.addr,
        request("POST", &gateway, "/function/markdown", text.into_bytes()),
    )
    .await;
    assert_eq!(answer.status, 200, "within the limit: {}", answer.text());

    // Declared: refused before the function runs.
    let answer = send(
        gateway.addr,
        request("POST", &gateway, "/function/markdown", vec![b'a'; 2048]),
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.header("x-openfaas-internal"), "wasmgate");
    assert!(
        answer.text().contains("limit of 1024 bytes"),
        "{}",
        answer.text()
    );

    // Chunked, with no length: cut at the limit while the function reads it.
    let chunks = (0..4)
        .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'a'; 512]))));
    let body = StreamBody::new(futures::stream::iter(chunks));
    let chunked = http::Request::post("/function/markdown")
        .header(http::header::HOST, gateway.addr.to_string())
        .body(body)
        .expect("request");
    let answer = send(gateway.addr, chunked).await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(
        answer.text().contains("limit of 1024 bytes"),
        "{}",
        answer.text()
    );
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);
}

/// Headers past `--max-header-bytes` or `--max-headers`: 431.
#[tokio::test]
async fn oversized_headers_answer_431() {
    let gateway = gateway_with(&["--max-header-bytes", "16Ki", "--max-headers", "50"]);
    let mut big = request("GET", &gateway, "/function/hello", Bytes::new());
    big.headers_mut().insert(
        "x-big",
        "v".repeat(32 * 1024).parse().expect("header value"),
    );
    assert_eq!(send(gateway.addr, big).await.status, 431);

    let mut many = request("GET", &gateway, "/function/hello", Bytes::new());
    for i in 0..60 {
        many.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
            "1".parse().expect("value"),
        );
    }
    assert_eq!(send(gateway.addr, many).await.status, 431);

    let mut fine = request("GET", &gateway, "/function/hello", Bytes::new());
    fine.headers_mut()
        .insert("x-fine", "v".repeat(1024).parse().expect("header value"));
    assert_eq!(send(gateway.addr, fine).await.status, 200);
}

/// Slow clients: headers that never finish close the connection; a body that stops arriving is
/// answered 408; neither holds up anyone else.
#[tokio::test]
async fn slow_clients_time_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = gateway_with(&["--header-read-timeout", "1s", "--read-timeout", "1s"]);

    let mut headers_only = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    headers_only
        .write_all(b"GET /function/hello HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut body_stalls = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    body_stalls
        .write_all(
            b"POST /function/markdown HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n# only ten",
        )
        .await
        .expect("write");

    // Others are served meanwhile.
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);

    let mut answer = Vec::new();
    tokio::time::timeout(
        crate::support::PATIENCE,
        body_stalls.read_to_end(&mut answer),
    )
    .await
    .expect("the stalled body is answered")
    .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stopped arriving for 1s"), "{answer}");

    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        crate::support::PATIENCE,
        headers_only.read_to_end(&mut rest),
    )
    .await
    .expect("the connection with unfinished headers is closed");
    // Closed by the server: end of stream, or a reset.
    assert!(
        read.is_err() || !String::from_utf8_lossy(&rest).contains(" 200 "),
        "{rest:?}"
    );
}

/// When every slot of the instance pool is taken by idle instances kept for reuse, a request (of
/// another function) is served all the same: one idle instance is dropped to make room. (Before,
/// it answered 503 until the reusing function was removed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_lets_an_idle_instance_go() {
    let gateway = gateway_with(&["--max-instances", "2"]);
    deploy(
        &gateway,
        "spin-reused",
        wasmgate_guests::SPIN,
        serde_json::json!({"annotations": {"com.wasmgate.instance-reuse": "100"}}),
    )
    .await;
    // Two requests at once leave two idle instances behind, holding both slots.
    let both =
        futures::future::join_all((0..2).map(|_| get(&gateway, "/function/spin-reused?ms=1500")))
            .await;
    for answer in &both {
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    // Another function's request is served: one of the idle instances gives up its slot.
    let answer = get(&gateway, "/function/hello").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains("wasmgate_idle_instances_evicted_total 1"),
        "{metrics}"
    );
    // The function kept its other idle instance and still serves.
    assert_eq!(
        get(&gateway, "/function/spin-reused?ms=1").await.status,
        200
    );
}
