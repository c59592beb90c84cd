//! OpenTelemetry traces, checked at a real OTLP/HTTP receiver: `otlp_receiver.py`, a Python
//! process that decodes each `ExportTraceServiceRequest` with the official protobuf definitions
//! (PyPI `opentelemetry-proto`) and prints the spans. One request through `pipeline` is one trace
//! with its calls under it; an async call's enqueue, runs and callback share the trace; a cron tick
//! is a trace of its own with the timer trigger; a collector
//! gone or stalled costs requests nothing, and its dropped spans are counted; a NATS message
//! continues its publisher's trace.
//!
//! Over 600 lines: every trace test drives the same receiver harness (at the top), and a test of one
//! trace end to end is long by nature; split, the harness would move to `support` for one module.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::{
    Callbacks, Gateway, InProcess, Target, deploy, eventually, get, request, send,
};

/// The Python package the receiver decodes with, and where `.ci/test` installs it.
const PROTO_INSTALL: &str = "pip install opentelemetry-proto==1.45.2 (into \
                             ~/.cache/wasmgate/tools/venv, as .ci/test does, with that venv's bin/ \
                             on PATH)";

/// The trace and parent span of a client's `traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A running `otlp_receiver.py` and the spans it printed. Killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/e2e/gateway/otlp_receiver.py"
        );
        let probe = Command::new("python3")
            .args(["-c", "import opentelemetry.proto.collector.trace.v1"])
            .stdin(Stdio::null())
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "python3 cannot import opentelemetry.proto ({}); install it with: {PROTO_INSTALL}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(error) => panic!("python3 is missing ({error}); then: {PROTO_INSTALL}"),
        }
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the receiver");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read the receiver's port");
        let port = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the receiver did not start: {first:?}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(json) = line.strip_prefix("span ") {
                    let span: Value = serde_json::from_str(json).expect("a span as JSON");
                    sink.lock().expect("lock").push(span);
                }
            }
        });
        Receiver { child, port, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits until a span named `name` has arrived, and returns every span so far.
    async fn wait_for(&self, names: &[&str]) -> Vec<Value> {
        eventually(&format!("spans {names:?}"), || async {
            let spans = self.spans();
            names
                .iter()
                .all(|name| spans.iter().any(|s| s["name"] == *name))
        })
        .await;
        self.spans()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The one span named `name` in `trace`.
fn span<'a>(spans: &'a [Value], trace: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == name && s["trace_id"] == trace)
        .collect();
    assert_eq!(found.len(), 1, "one {name} span in {trace}: {spans:#?}");
    found[0]
}

/// Asserts `child`'s parent is `parent`.
fn is_child(child: &Value, parent: &Value) {
    assert_eq!(
        child["parent_span_id"], parent["span_id"],
        "{} is a child of {}",
        child["name"], parent["name"]
    );
}

/// The standard variables, as an operator sets them: the collector, a header it wants (a
/// credential, say), the service's name, and no wait for a batch to fill.
fn otel_env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-test-header=a%20key".into()),
        ("OTEL_SERVICE_NAME", "edge-gateway".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "10".into()),
    ]
}

/// The flags that export to `receiver` at once (no wait for a batch to fill).
fn tracing_to(receiver: &Receiver) -> Vec<String> {
    vec![
        "--otlp-endpoint".into(),
        receiver.endpoint(),
        "--trace-delay-ms".into(),
        "10".into(),
    ]
}

/// A request through `pipeline` (which calls `hello`, then `echo`) is one trace that continues the
/// client's: the gateway's server span under the client's span, the runtime's `handle` and
/// `instantiate` spans under it, a client span per call with the callee's spans under it, with the
/// documented attributes. The guest receives its `handle` span as `traceparent` (and the client's
/// `tracestate`), its outbound requests carry their own span, and its log lines carry the trace
/// id, in `/system/logs` and on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_pipeline_is_one_trace() {
    let receiver = Receiver::start();
    let upstream = Callbacks::start().await;
    let mut args = Vec::new();
    for guest in [
        ("pipeline", wasmgate_guests::PIPELINE),
        ("hello", wasmgate_guests::HELLO),
        ("echo", wasmgate_guests::ECHO),
    ] {
        args.extend(["--function".to_string(), format!("{}={}", guest.0, guest.1)]);
    }
    // Configured the standard way, through OTEL_* variables.
    let env = otel_env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = Gateway::start_with_env(None, &args, &env);

    let mut call = request("POST", &gateway, "/function/pipeline", "x");
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    call.headers_mut()
        .insert("traceparent", traceparent.parse().expect("header"));
    call.headers_mut()
        .insert("tracestate", "vendor=v1".parse().expect("header"));
    let answer = send(gateway.addr, call).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let call_id = answer.header("x-call-id").to_string();

    let server_name = "POST /function/pipeline.openfaas-fn";
    let spans = receiver.wait_for(&[server_name]).await;
    let server = span(&spans, TRACE_ID, server_name);
    assert_eq!(server["kind"], "SPAN_KIND_SERVER");
    assert_eq!(
        server["parent_span_id"], CLIENT_SPAN,
        "the client's trace goes on"
    );
    assert_eq!(server["service"], "edge-gateway", "OTEL_SERVICE_NAME");
    assert_eq!(
        server["header"], "a key",
        "OTEL_EXPORTER_OTLP_HEADERS, %-decoded"
    );
    let attributes = &server["attributes"];
    assert_eq!(attributes["faas.name"], "pipeline.openfaas-fn");
    assert_eq!(attributes["faas.invocation_id"], call_id.as_str());
    assert_eq!(attributes["faas.trigger"], "http");
    assert_eq!(attributes["faas.coldstart"], false);
    assert_eq!(attributes["http.request.method"], "POST");
    assert_eq!(attributes["http.route"], "/function/{name}");
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(
        answer.header("traceresponse"),
        format!(
            "00-{TRACE_ID}-{}-01",
            server["span_id"].as_str().expect("id")
        ),
        "the answer names the gateway's span"
    );

    let handle = span(&spans, TRACE_ID, "handle pipeline.openfaas-fn");
    is_child(handle, server);
    assert_eq!(handle["attributes"]["faas.coldstart"], false);
    assert_eq!(handle["attributes"]["http.response.status_code"], 200);
    let instantiations: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "instantiate" && s["parent_span_id"] == handle["span_id"])
        .collect();
    assert_eq!(instantiations.len(), 1, "{spans:#?}");
    for callee in ["hello.openfaas-fn", "echo.openfaas-fn"] {
        let call = span(&spans, TRACE_ID, &format!("call {callee}"));
        assert_eq!(call["kind"], "SPAN_KIND_CLIENT");
        is_child(call, handle);
        assert_eq!(call["attributes"]["faas.invoked_name"], callee);
        assert_eq!(call["attributes"]["http.response.status_code"], 200);
        let called = span(&spans, TRACE_ID, &format!("handle {callee}"));
        is_child(called, call);
    }
    assert!(
        spans.iter().all(|s| s["trace_id"] == TRACE_ID),
        "one request, one trace: {spans:#?}"
    );

    // hello's line (it prints one per request) carries the trace, in the API and on stderr.
    let logs = get(&gateway, "/system/logs?name=hello&tail=5").await;
    let line: Value = logs
        .text()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .find(|l| {
            l["text"]
                .as_str()
                .is_some_and(|t| t.contains("hello called for"))
        })
        .expect("hello's line");
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    gateway.wait_for_log(&["hello called for", "invoke{", TRACE_ID]);

    // The guest sees its `handle` span as its parent, and the client's trace state.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let mut direct = request("GET", &gateway, "/function/echo", "");
    let headers = direct.headers_mut();
    let traceparent = format!("00-{other}-b7ad6b7169203331-01");
    headers.insert("traceparent", traceparent.parse().expect("header"));
    headers.insert("tracestate", "vendor=v2".parse().expect("header"));
    let echoed = send(gateway.addr, direct).await;
    assert_eq!(echoed.status, 200);
    let seen = echoed.header("x-echo-traceparent").to_string();
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "a traceparent: {seen:?}");
    assert_eq!(parts[1], other, "{seen}");
    assert_eq!(echoed.header("x-echo-tracestate"), "vendor=v2");
    let spans = receiver.wait_for(&["GET /function/echo.openfaas-fn"]).await;
    let handle = span(&spans, parts[1], "handle echo.openfaas-fn");
    assert_eq!(
        handle["span_id"], parts[2],
        "the guest's parent is its handle span"
    );

    // An outbound request is a client span, and carries it as `traceparent`.
    deploy(
        &gateway,
        "outbound",
        wasmgate_guests::OUTBOUND,
        serde_json::json!({"annotations": {
            "com.wasmgate.allowed-hosts": format!("127.0.0.1:{}", upstream.addr.port())
        }}),
    )
    .await;
    // Scaled to zero, so its next request loads it again: a cold start, with a load span.
    let scale = serde_json::json!({"serviceName": "outbound", "replicas": 0});
    let scaled = crate::support::api(
        &gateway,
        "POST",
        "/system/scale-function/outbound",
        Some(scale),
    )
    .await;
    assert_eq!(scaled.status, 202);
    let url = format!("http://127.0.0.1:{}/up", upstream.addr.port());
    let out = get(&gateway, &format!("/function/outbound?url={url}")).await;
    assert_eq!(out.status, 200, "{}", out.text());
    let received = upstream.wait_for(1).await;
    let sent = received[0].header("traceparent").to_string();
    let sent: Vec<&str> = sent.split('-').collect();
    assert_eq!(sent.len(), 4, "the upstream got a traceparent: {sent:?}");
    let spans = receiver
        .wait_for(&["GET /function/outbound.openfaas-fn"])
        .await;
    let client = span(&spans, sent[1], "GET");
    assert_eq!(client["span_id"], sent[2], "it names the outbound span");
    assert_eq!(client["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(client["attributes"]["server.address"], "127.0.0.1");
    assert_eq!(client["attributes"]["url.full"], url.as_str());
    assert_eq!(client["attributes"]["http.response.status_code"], 200);
    is_child(client, span(&spans, sent[1], "handle outbound.openfaas-fn"));
    let server = span(&spans, sent[1], "GET /function/outbound.openfaas-fn");
    assert_eq!(
        server["parent_span_id"], "",
        "no traceparent came: a new trace"
    );
    assert_eq!(server["attributes"]["faas.coldstart"], true);
    // Loaded by its first request: the load is in the trace, and a cold start.
    let load = span(&spans, sent[1], "load outbound.openfaas-fn");
    assert!(
        ["disk_cache", "compile"].contains(
            &load["attributes"]["wasmgate.load.source"]
                .as_str()
                .unwrap_or_default()
        ),
        "{load}"
    );
    assert_eq!(
        span(&spans, sent[1], "handle outbound.openfaas-fn")["attributes"]["faas.coldstart"],
        true
    );
}

/// An async call is one trace: `enqueue` under the client's span, a `run` per attempt under it
/// (the retry's too), and the `callback` under the last run, whose `traceparent` the callback
/// request carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_call_is_one_trace_through_its_callback() {
    let receiver = Receiver::start();
    let gateway = InProcess::start(&tracing_to(&receiver)).await;
    let retried = serde_json::json!({"annotations": {
        "com.openfaas.retry.attempts": "2",
        "com.openfaas.retry.min_wait": "10ms",
        "com.openfaas.retry.max_wait": "10ms",
    }});
    deploy(&gateway, "retried", wasmgate_guests::FLAKY, retried).await;
    let callbacks = Callbacks::start().await;

    let mut call = request("POST", &gateway, "/async-function/retried?fail=1", "");
    let headers = call.headers_mut();
    headers.insert("x-callback-url", callbacks.url().parse().expect("header"));
    headers.insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")
            .parse()
            .expect("header"),
    );
    let accepted = gateway.send(call).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let call_id = accepted.header("x-call-id").to_string();
    let received = callbacks.wait_for(1).await;
    assert_eq!(received[0].header("x-function-status"), "200");

    let spans = receiver
        .wait_for(&["enqueue retried.openfaas-fn", "callback retried"])
        .await;
    let enqueue = span(&spans, TRACE_ID, "enqueue retried.openfaas-fn");
    assert_eq!(enqueue["kind"], "SPAN_KIND_PRODUCER");
    assert_eq!(enqueue["parent_span_id"], CLIENT_SPAN);
    assert_eq!(enqueue["service"], "wasmgate", "the default service.name");
    assert_eq!(
        enqueue["attributes"]["faas.invocation_id"],
        call_id.as_str()
    );
    assert_eq!(enqueue["attributes"]["http.response.status_code"], 202);
    let mut runs: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "run retried.openfaas-fn")
        .collect();
    runs.sort_by_key(|s| s["attributes"]["wasmgate.async.attempt"].as_i64());
    assert_eq!(runs.len(), 2, "two attempts: {spans:#?}");
    for (attempt, run) in runs.iter().enumerate() {
        assert_eq!(run["trace_id"], TRACE_ID);
        assert_eq!(run["kind"], "SPAN_KIND_CONSUMER");
        is_child(run, enqueue);
        assert_eq!(
            run["attributes"]["wasmgate.async.attempt"],
            attempt as i64 + 1
        );
        assert_eq!(run["attributes"]["faas.trigger"], "pubsub");
        assert_eq!(run["attributes"]["faas.invocation_id"], call_id.as_str());
    }
    assert_eq!(runs[0]["attributes"]["http.response.status_code"], 503);
    assert_eq!(runs[0]["status"], "STATUS_CODE_ERROR", "a 503 is an error");
    assert_eq!(runs[1]["attributes"]["http.response.status_code"], 200);
    let callback = span(&spans, TRACE_ID, "callback retried");
    assert_eq!(callback["kind"], "SPAN_KIND_CLIENT");
    is_child(callback, runs[1]);
    assert_eq!(
        received[0].header("traceparent"),
        format!(
            "00-{TRACE_ID}-{}-01",
            callback["span_id"].as_str().expect("id")
        ),
        "the callback request carries its span"
    );
}

/// A cron tick is a trace of its own, marked as the timer's (`faas.trigger`), with the function's
/// spans under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_tick_is_a_trace_with_the_timer_trigger() {
    let receiver = Receiver::start();
    let gateway = InProcess::start(&tracing_to(&receiver)).await;
    let schedule = serde_json::json!({"annotations": {
        "topic": "cron-function",
        "schedule": "@every 1s",
    }});
    deploy(&gateway, "ticking", wasmgate_guests::HELLO, schedule).await;
    let name = "POST /function/ticking.openfaas-fn";
    let spans = receiver.wait_for(&[name]).await;
    let tick = spans
        .iter()
        .find(|s| s["name"] == name)
        .expect("a tick's span");
    assert_eq!(tick["attributes"]["faas.trigger"], "timer", "{tick}");
    assert_eq!(tick["parent_span_id"], "", "a tick starts a trace");
    let trace = tick["trace_id"].as_str().expect("a trace id");
    eventually("the tick's handle span", || async {
        receiver
            .spans()
            .iter()
            .any(|s| s["name"] == "handle ticking.openfaas-fn" && s["trace_id"] == trace)
    })
    .await;
    let spans = receiver.spans();
    is_child(
        span(&spans, trace, "handle ticking.openfaas-fn"),
        span(&spans, trace, name),
    );
}

/// The value of the `/metrics` sample `line` (its name and labels), 0 when absent.
async fn metric(gateway: &impl Target, line: &str) -> u64 {
    let text = get(gateway, "/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

/// With the collector gone, requests answer as ever and the spans that could not be sent are
/// counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_gone_drops_spans_and_counts_them() {
    let mut receiver = Receiver::start();
    let hello = format!("hello={}", wasmgate_guests::HELLO);
    let mut args = tracing_to(&receiver);
    args.extend(["--function".to_string(), hello]);
    let gateway = InProcess::start(&args).await;
    receiver.stop();
    for _ in 0..3 {
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    }
    let failed = "wasmgate_trace_spans_dropped_total{reason=\"export_failed\"}";
    eventually("dropped spans counted", || async {
        metric(&gateway, failed).await >= 3
    })
    .await;
    assert_eq!(
        metric(&gateway, "wasmgate_trace_spans_exported_total").await,
        0
    );
}

/// A collector that takes connections and never answers holds one export; the queue behind it is
/// bounded: requests still answer at once, and the spans past its bound are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_collector_fills_the_bounded_queue_and_requests_do_not_wait() {
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = stalled.local_addr().expect("address").port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = stalled.accept().await {
            keep.lock().expect("lock").push(socket);
        }
    });
    let hello = format!("hello={}", wasmgate_guests::HELLO);
    let args: Vec<String> = [
        "--otlp-endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--trace-queue",
        "4",
        "--trace-batch",
        "1",
        "--trace-delay-ms",
        "1",
        "--otlp-timeout-ms",
        "120000",
        "--function",
        &hello,
    ]
    .map(String::from)
    .to_vec();
    let gateway = InProcess::start(&args).await;
    for _ in 0..5 {
        assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    }
    let full = "wasmgate_trace_spans_dropped_total{reason=\"queue_full\"}";
    // 5 requests of 3 spans each: one span in the export that hangs, 4 queued, the rest dropped.
    assert!(
        metric(&gateway, full).await >= 5,
        "{}",
        get(&gateway, "/metrics").await.text()
    );
    assert!(
        !held.lock().expect("lock").is_empty(),
        "the export reached the collector"
    );
}

/// A message on a NATS topic continues its publisher's trace (the message's `traceparent` and
/// `tracestate`), as a `pubsub` trigger, and the guest sees the trace go on. A `traceparent` that
/// says "not sampled" is followed by the default sampler (`parentbased_always_on`): the guest sees
/// the trace go on unsampled, and no span of it is exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_message_continues_its_publisher_s_trace() {
    let receiver = Receiver::start();
    let nats = crate::cluster::Nats::start();
    let mut args = tracing_to(&receiver);
    args.extend(["--nats".to_string(), nats.url.clone()]);
    args.extend(["--node-name".to_string(), "a".to_string()]);
    let gateway = InProcess::start(&args).await;
    let topic = serde_json::json!({"annotations": {"topic": "questions"}});
    deploy(&gateway, "echo", wasmgate_guests::ECHO, topic).await;
    let subscribed = "wasmgate_topic_subscriptions{function_name=\"echo.openfaas-fn\"}";
    eventually("subscribed", || async {
        metric(&gateway, subscribed).await == 1
    })
    .await;
    let client = async_nats::connect(nats.url.as_str())
        .await
        .expect("connect to NATS");
    let ask = |traceparent: String| {
        let client = client.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("traceparent", traceparent.as_str());
            headers.insert("tracestate", "vendor=v3");
            let reply = client
                .request_with_headers("questions", headers, "ping".into())
                .await
                .expect("a reply");
            let header = |name: &str| {
                reply
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default()
            };
            assert_eq!(header("X-Function-Status"), "200");
            (header("x-echo-traceparent"), header("x-echo-tracestate"))
        }
    };

    // Not sampled by the publisher: the guest sees the trace go on, still unsampled.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let (seen, state) = ask(format!("00-{unsampled}-b7ad6b7169203331-00")).await;
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "a traceparent: {seen:?}");
    assert_eq!((parts[1], parts[3]), (unsampled, "00"), "{seen}");
    assert_eq!(state, "vendor=v3");

    let (seen, state) = ask(format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")).await;
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "a traceparent: {seen:?}");
    assert_eq!((parts[1], parts[3]), (TRACE_ID, "01"), "{seen}");
    assert_eq!(state, "vendor=v3");
    let name = "POST /function/echo.openfaas-fn";
    let spans = receiver.wait_for(&[name]).await;
    let server = span(&spans, TRACE_ID, name);
    assert_eq!(
        server["parent_span_id"], CLIENT_SPAN,
        "the publisher's trace goes on"
    );
    assert_eq!(server["attributes"]["faas.trigger"], "pubsub");
    let handle = span(&spans, TRACE_ID, "handle echo.openfaas-fn");
    is_child(handle, server);
    assert_eq!(
        handle["span_id"], parts[2],
        "the guest's parent is its handle span"
    );
    // Spans leave in the order they end, through one queue: the unsampled request's would have
    // arrived before these.
    assert!(
        spans.iter().all(|s| s["trace_id"] != unsampled),
        "an unsampled trace exports nothing: {spans:#?}"
    );
}
