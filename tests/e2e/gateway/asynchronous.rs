//! `/async-function`: the durable queue, callbacks, retries, status, cancel and crash recovery, against
//! the real binary where a test needs a process (crashes, restarts), in process otherwise.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{
    Callbacks, Gateway, InProcess, Target, api, deploy, get, request, send, temp_dir,
};

/// Queues a call with `headers` and `body`; returns the answer.
async fn post(
    gateway: &impl Target,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> crate::support::Answer {
    let mut request = request("POST", gateway, path, body);
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    gateway.send(request).await
}

/// A call's status, as JSON.
async fn status(gateway: &impl Target, id: &str) -> serde_json::Value {
    let answer = get(gateway, &format!("/system/async/{id}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    serde_json::from_slice(&answer.body).expect("status JSON")
}

/// Waits until the call is in `state`.
async fn wait_for_state(gateway: &impl Target, id: &str, state: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let now = status(gateway, id).await;
        if now["status"] == state {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call {id} never became {state}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn flaky_and_echo(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = vec![
        "--function".into(),
        format!("flaky={}", wasmgate_guests::FLAKY),
        "--function".into(),
        format!("echo={}", wasmgate_guests::ECHO),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

/// A gateway process serving `flaky` and `echo`, with `args`.
fn gateway_with(args: &[&str]) -> Gateway {
    Gateway::start(&flaky_and_echo(args))
}

/// The same gateway in this process.
async fn app_with(args: &[&str]) -> InProcess {
    InProcess::start(&flaky_and_echo(args)).await
}

/// 202 at once with an empty body, `X-Call-Id` and `X-Start-Time`; the call runs as the synchronous
/// route would run it (method, path, query, headers, body), and its callback carries every header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_run_as_queued_and_called_back() {
    let gateway = app_with(&[]).await;
    let callbacks = Callbacks::start().await;
    let url = callbacks.url();
    let headers = [
        ("x-callback-url", url.as_str()),
        ("x-custom", "kept"),
        ("content-type", "application/json"),
    ];

    let accepted = post(
        &gateway,
        "/async-function/echo/some/path?a=1&b=two",
        &headers,
        "{\"n\":1}",
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert!(
        accepted.body.is_empty(),
        "an empty body: {:?}",
        accepted.text()
    );
    let id = accepted.header("x-call-id").to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert!(accepted.header("x-start-time").parse::<u64>().is_ok());

    let received = callbacks.wait_for(1).await;
    let callback = &received[0];
    assert_eq!(callback.header("x-call-id"), id);
    assert_eq!(callback.header("x-function-status"), "200");
    assert_eq!(callback.header("x-function-name"), "echo");
    let seconds: f64 = callback
        .header("x-duration-seconds")
        .parse()
        .expect("X-Duration-Seconds is a number");
    assert!((0.0..10.0).contains(&seconds));
    assert_eq!(callback.header("x-retry"), "", "no retries happened");
    assert_eq!(&callback.body[..], b"{\"n\":1}");

    // The same request through the synchronous route: the function saw the same thing.
    let sync = post(
        &gateway,
        "/function/echo/some/path?a=1&b=two",
        &headers,
        "{\"n\":1}",
    )
    .await;
    for name in [
        "x-echo-method",
        "x-echo-path",
        "x-echo-query",
        "x-echo-x-custom",
        "content-type",
    ] {
        assert_eq!(callback.header(name), sync.header(name), "{name}");
        assert!(!callback.header(name).is_empty(), "{name} is set");
    }
    assert_eq!(callback.header("x-echo-method"), "POST");
    assert_eq!(callback.header("x-echo-path"), "/some/path");
    assert_eq!(callback.header("x-echo-query"), "a=1&b=two");
    assert_eq!(
        callback.header("x-echo-x-call-id"),
        id,
        "the function saw the call id"
    );

    let done = wait_for_state(&gateway, &id, "succeeded").await;
    assert_eq!(done["statusCode"], 200);
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["function"], "echo.openfaas-fn");
    assert_eq!(done["callback"]["url"], url.as_str());
    let delivered = async {
        loop {
            if status(&gateway, &id).await["callback"]["status"] == "delivered" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(crate::support::PATIENCE, delivered)
        .await
        .expect("the callback is recorded as delivered");

    // The async invocation is counted like any other.
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains(
            "gateway_function_invocation_total{function_name=\"echo.openfaas-fn\",code=\"200\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmgate_async_finished_total{function_name=\"echo.openfaas-fn\",state=\"succeeded\"} 1"),
        "{metrics}"
    );
}

/// A client's own `X-Call-Id` names the call; sending it again does not queue it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_call_id_is_queued_once() {
    let gateway = app_with(&[]).await;
    let headers = [("x-call-id", "order-42")];
    for _ in 0..3 {
        let answer = post(&gateway, "/async-function/flaky?sleep_ms=300", &headers, "").await;
        assert_eq!(answer.status, 202);
        assert_eq!(answer.header("x-call-id"), "order-42");
    }
    wait_for_state(&gateway, "order-42", "succeeded").await;
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains("wasmgate_async_enqueued_total{function_name=\"flaky.openfaas-fn\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("gateway_function_invocation_started{function_name=\"flaky.openfaas-fn\"} 1"),
        "{metrics}"
    );
}

/// What is refused, and why: an unknown function, a bad callback URL, a body past the limit, the
/// wrong method; unknown call ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let gateway = gateway_with(&["--async-max-body", "1Ki"]);
    let unknown = post(&gateway, "/async-function/nope", &[], "").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(unknown.header("x-openfaas-internal"), "wasmgate");
    let other_namespace = post(&gateway, "/async-function/echo.elsewhere", &[], "").await;
    assert_eq!(other_namespace.status, 404);

    for bad in ["not a url", "/relative", "ftp://example.com/x"] {
        let answer = post(
            &gateway,
            "/async-function/echo",
            &[("x-callback-url", bad)],
            "",
        )
        .await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
        assert!(
            answer.text().contains("X-Callback-Url"),
            "{}",
            answer.text()
        );
    }

    let big: &'static str = Box::leak("x".repeat(2048).into_boxed_str());
    let too_large = post(&gateway, "/async-function/echo", &[], big).await;
    assert_eq!(too_large.status, 413, "{}", too_large.text());

    let get_it = get(&gateway, "/async-function/echo").await;
    assert_eq!(get_it.status, 405);
    assert_eq!(get_it.header("allow"), "POST, DELETE");

    assert_eq!(
        get(&gateway, "/system/async/no-such-call").await.status,
        404
    );
    let cancel = send(
        gateway.addr,
        request("DELETE", &gateway, "/async-function/no-such-call", ""),
    )
    .await;
    assert_eq!(cancel.status, 404);

    // Nothing was queued by any of these.
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        !metrics.contains("wasmgate_async_enqueued_total{"),
        "{metrics}"
    );
    let with_namespace = post(&gateway, "/async-function/echo.openfaas-fn/x", &[], "").await;
    assert_eq!(with_namespace.status, 202, "name.namespace is accepted");

    // A bad retry annotation is refused at deploy.
    let body = serde_json::json!({"service": "bad-retry", "image": wasmgate_guests::FLAKY,
        "annotations": {"com.openfaas.retry.attempts": "lots"}});
    let refused = api(&gateway, "POST", "/system/functions", Some(body)).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("com.openfaas.retry.attempts"),
        "{}",
        refused.text()
    );
}

/// 503 twice, then 200: retried with backoff, the attempts visible in the status and the callback;
/// a call that keeps failing ends as failed after its attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_success_and_exhausted_retries() {
    let gateway = app_with(&[]).await;
    let annotations = serde_json::json!({"annotations": {
        "com.openfaas.retry.attempts": "3",
        "com.openfaas.retry.min_wait": "100ms",
        "com.openfaas.retry.max_wait": "400ms",
    }});
    deploy(&gateway, "retried", wasmgate_guests::FLAKY, annotations).await;
    let callbacks = Callbacks::start().await;
    let url = callbacks.url();
    let headers = [("x-callback-url", url.as_str())];

    let ok = post(&gateway, "/async-function/retried?fail=2", &headers, "").await;
    assert_eq!(ok.status, 202);
    let ok_id = ok.header("x-call-id").to_string();
    let done = wait_for_state(&gateway, &ok_id, "succeeded").await;
    assert_eq!(done["attempts"], 3, "{done}");
    assert_eq!(done["maxAttempts"], 3, "{done}");
    assert_eq!(done["statusCode"], 200, "{done}");
    let received = callbacks.wait_for(1).await;
    assert_eq!(received[0].header("x-call-id"), ok_id);
    assert_eq!(received[0].header("x-function-status"), "200");
    assert_eq!(received[0].header("x-retry"), "2");
    assert_eq!(received[0].header("x-retry-max"), "2");
    assert_eq!(&received[0].body[..], b"ok after 2 retries\n");

    let failing = post(&gateway, "/async-function/retried?fail=5", &headers, "").await;
    let failing_id = failing.header("x-call-id").to_string();
    let failed = wait_for_state(&gateway, &failing_id, "failed").await;
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert_eq!(failed["statusCode"], 503, "{failed}");
    let received = callbacks.wait_for(2).await;
    assert_eq!(received[1].header("x-call-id"), failing_id);
    assert_eq!(received[1].header("x-function-status"), "503");
    assert_eq!(received[1].header("x-retry"), "2");

    // A status outside the retry codes is not retried.
    let once = post(&gateway, "/async-function/retried?status=404", &headers, "").await;
    let once_id = once.header("x-call-id").to_string();
    let failed = wait_for_state(&gateway, &once_id, "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert_eq!(failed["statusCode"], 404, "{failed}");

    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains("wasmgate_async_retries_total{function_name=\"retried.openfaas-fn\"} 4"),
        "{metrics}"
    );
}

/// A callback that fails is delivered again later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_retried() {
    let gateway = app_with(&[]).await;
    let callbacks = Callbacks::start().await;
    callbacks.fail_next(2);
    let url = callbacks.url();
    let accepted = post(
        &gateway,
        "/async-function/flaky",
        &[("x-callback-url", url.as_str())],
        "",
    )
    .await;
    let id = accepted.header("x-call-id").to_string();
    let received = callbacks.wait_for(1).await;
    assert_eq!(received[0].header("x-call-id"), id);
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let now = status(&gateway, &id).await;
        if now["callback"]["status"] == "delivered" {
            assert_eq!(now["callback"]["attempts"], 3, "{now}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A queued call can be cancelled; a running or finished one cannot. The queue depth is in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_queued_call() {
    let gateway = app_with(&["--async-function-concurrency", "1"]).await;
    let first = post(&gateway, "/async-function/flaky?sleep_ms=3000", &[], "").await;
    let first_id = first.header("x-call-id").to_string();
    wait_for_state(&gateway, &first_id, "running").await;
    let second = post(&gateway, "/async-function/flaky", &[], "").await;
    let second_id = second.header("x-call-id").to_string();
    assert_eq!(status(&gateway, &second_id).await["status"], "queued");
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains("wasmgate_async_queue_depth{function_name=\"flaky.openfaas-fn\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmgate_async_running{function_name=\"flaky.openfaas-fn\"} 1"),
        "{metrics}"
    );

    let delete = |id: String| {
        let gateway = &gateway;
        async move {
            gateway
                .send(request(
                    "DELETE",
                    gateway,
                    &format!("/async-function/{id}"),
                    "",
                ))
                .await
        }
    };
    let cancelled = delete(second_id.clone()).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    let body: serde_json::Value = serde_json::from_slice(&cancelled.body).expect("JSON");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(delete(second_id.clone()).await.status, 409);
    let running = delete(first_id.clone()).await;
    assert_eq!(running.status, 409);
    assert!(running.text().contains("running"), "{}", running.text());

    wait_for_state(&gateway, &first_id, "succeeded").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = status(&gateway, &second_id).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(after["attempts"], 0, "it never ran: {after}");
}

/// A call that runs longer than anything the queue times (there is no lease to expire) runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_runs_once() {
    let gateway = app_with(&[]).await;
    deploy(
        &gateway,
        "slow",
        wasmgate_guests::FLAKY,
        serde_json::json!({"envVars": {"exec_timeout": "30s"}}),
    )
    .await;
    let callbacks = Callbacks::start().await;
    let url = callbacks.url();
    let accepted = post(
        &gateway,
        "/async-function/slow?sleep_ms=4000",
        &[("x-callback-url", url.as_str())],
        "",
    )
    .await;
    let id = accepted.header("x-call-id").to_string();
    let done = wait_for_state(&gateway, &id, "succeeded").await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert!(
        done["durationSeconds"].as_f64().unwrap_or(0.0) >= 4.0,
        "{done}"
    );
    callbacks.wait_for(1).await;
    // Give a second run time to show itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(callbacks.received().len(), 1);
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics
            .contains("gateway_function_invocation_started{function_name=\"slow.openfaas-fn\"} 1"),
        "{metrics}"
    );
}

/// 1,000 calls, `kill -9` while they run, restart on the same state: every call reaches a final state
/// and its callback arrives; none is lost. Duplicates (calls that ran before the kill but were not
/// recorded as finished) are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_call() {
    const CALLS: usize = 1000;
    let state = temp_dir("crash-state");
    let state_arg = state.display().to_string();
    let args = [
        "--state-dir",
        state_arg.as_str(),
        "--async-function-concurrency",
        "16",
    ];
    let gateway = gateway_with(&args);
    let callbacks = Callbacks::start().await;
    let url = callbacks.url();

    let mut ids = Vec::with_capacity(CALLS);
    let headers = [("x-callback-url", url.as_str())];
    let posts: Vec<_> = (0..CALLS)
        .map(|_| post(&gateway, "/async-function/flaky?sleep_ms=100", &headers, ""))
        .collect();
    for answer in futures::future::join_all(posts).await {
        assert_eq!(answer.status, 202, "{}", answer.text());
        ids.push(answer.header("x-call-id").to_string());
    }
    // Kill it while calls are running: some callbacks are in, most are not, and the gateway says
    // calls are running (each takes 100 ms, so they still are a moment later).
    callbacks.wait_for(100).await;
    let running = "wasmgate_async_running{function_name=\"flaky.openfaas-fn\"} 0";
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    while get(&gateway, "/metrics").await.text().contains(running) {
        assert!(tokio::time::Instant::now() < deadline, "no call ever ran");
    }
    gateway.signal("KILL");
    let before = callbacks.received().len();
    assert!(before < CALLS, "the kill came before the end");
    drop(gateway);

    let gateway = gateway_with(&args);
    // Calls were running at the kill: the new process queues them again.
    gateway.wait_for_log(&["async calls were running when the gateway stopped"]);
    let received = callbacks.wait_for(CALLS).await;
    // Late duplicates get a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = callbacks.received().len().max(received.len());
    let mut per_call: HashMap<String, usize> = HashMap::new();
    for callback in callbacks.received() {
        *per_call
            .entry(callback.header("x-call-id").to_string())
            .or_default() += 1;
    }
    for id in &ids {
        assert!(per_call.contains_key(id), "call {id} was lost");
    }
    assert_eq!(
        per_call.len(),
        CALLS,
        "no callback for a call that was never made"
    );
    for id in &ids {
        let now = status(&gateway, id).await;
        assert_eq!(now["status"], "succeeded", "{now}");
    }
    let duplicates = received - CALLS;
    println!(
        "crash test: {CALLS} calls, {before} callbacks before kill -9, {received} callbacks in all, {duplicates} duplicates"
    );
    // At least once, not many times. A duplicate callback needs a delivery that happened but was not
    // recorded before the kill: at most the 64 deliveries in flight at once.
    assert!(duplicates <= 64, "{duplicates} duplicates");
}

/// A graceful restart (SIGTERM) keeps the calls still queued: the next process runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_survive_a_restart() {
    const CALLS: usize = 40;
    let state = temp_dir("restart-state");
    let state_arg = state.display().to_string();
    let args = [
        "--state-dir",
        state_arg.as_str(),
        "--async-function-concurrency",
        "2",
        "--shutdown-timeout",
        "5s",
    ];
    let gateway = gateway_with(&args);
    let callbacks = Callbacks::start().await;
    let url = callbacks.url();
    let headers = [("x-callback-url", url.as_str())];
    let mut ids = Vec::new();
    for _ in 0..CALLS {
        let answer = post(&gateway, "/async-function/flaky?sleep_ms=100", &headers, "").await;
        assert_eq!(answer.status, 202);
        ids.push(answer.header("x-call-id").to_string());
    }
    gateway.signal("TERM");
    assert!(gateway.wait().success(), "a clean exit");
    let before = callbacks.received().len();
    assert!(
        before < CALLS,
        "calls were left in the queue ({before} done)"
    );

    let gateway = gateway_with(&args);
    callbacks.wait_for(CALLS).await;
    for id in &ids {
        assert_eq!(status(&gateway, id).await["status"], "succeeded");
    }
}
