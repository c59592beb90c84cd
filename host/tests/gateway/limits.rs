//! Limits a deployment sets and the gateway enforces: requests in flight (429), and deployments that
//! ask for more than the gateway allows (400).

use crate::support::{Gateway, all_guests, api, deploy, get};

/// Sends slow requests until the limit is reached, then checks the refusal.
async fn refused_past_limit(gateway: &Gateway, path: &str, expected: &str) {
    // One slow request holds the only place; the next is refused at once.
    let slow = {
        let (addr, host) = (gateway.addr, gateway.addr.to_string());
        let path = format!("{path}?ms=3000");
        tokio::spawn(async move {
            loop {
                let request = http::Request::get(&path)
                    .header(http::header::HOST, &host)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                let answer = crate::support::send(addr, request).await;
                // A quick request may have held the place when this one arrived; it tries again.
                if answer.status != 429 {
                    return answer;
                }
            }
        })
    };
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let refused = loop {
        let answer = get(gateway, &format!("{path}?ms=1")).await;
        if answer.status == 429 {
            break answer;
        }
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(
            std::time::Instant::now() < deadline,
            "never refused with 429"
        );
    };
    assert_eq!(refused.header("x-openfaas-internal"), "wasmgate");
    assert!(refused.text().contains(expected), "{}", refused.text());
    let slow = slow.await.expect("slow request");
    assert_eq!(slow.status, 200, "{}", slow.text());
    // With the place free again, it is served.
    let answer = get(gateway, &format!("{path}?ms=1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_of_a_function_answers_429() {
    let gateway = Gateway::with_all_guests();
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
    let gateway = Gateway::start(&args);
    refused_past_limit(
        &gateway,
        "/function/spin",
        "the gateway is serving its maximum of 1 requests at once",
    )
    .await;
}

#[tokio::test]
async fn deployments_beyond_the_gateway_limits_are_refused() {
    let gateway = Gateway::start(&[
        "--max-memory".to_string(),
        "64Mi".to_string(),
        "--max-timeout".to_string(),
        "10s".to_string(),
    ]);
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
