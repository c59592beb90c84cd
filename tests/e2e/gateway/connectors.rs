//! The event connectors: schedules (`topic: cron-function` + `schedule`) on one node and on two
//! nodes of a cluster, and NATS topics across two nodes, with request and reply. Counting is done
//! by the guests themselves (`kvcounter`) or by a callback server (`echo`, whose answer shows the
//! headers it received); nothing waits on a timer to synchronise.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cluster::{Nats, node, until_all};
use crate::support::{
    Callbacks, Gateway, InProcess, Target, api, deploy, eventually, get, is_rfc3339, temp_dir,
};

/// The value of a metric line that starts with `prefix` (`name{labels}`), 0 when absent.
async fn metric(gateway: &impl Target, prefix: &str) -> u64 {
    let text = get(gateway, "/metrics").await.text();
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// The sum of the metric lines that start with `prefix`.
async fn metric_sum(gateway: &impl Target, prefix: &str) -> u64 {
    let text = get(gateway, "/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `count N` from `kvcounter` (a GET reads without adding).
async fn count(gateway: &impl Target) -> u64 {
    let answer = get(gateway, "/function/kvcounter").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer
        .text()
        .trim()
        .strip_prefix("count ")
        .and_then(|n| n.parse().ok())
        .expect("count N")
}

fn scheduled(schedule: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut annotations = json!({"topic": "cron-function", "schedule": schedule});
    for (k, v) in extra {
        annotations[*k] = json!(v);
    }
    json!({ "annotations": annotations })
}

/// `@every 1s`, asynchronous with a callback: the function runs with the cron-connector's empty
/// POST and headers (which `echo` answers with), through the queue, and the status shows the
/// triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_invokes_the_function_as_the_cron_connector_does() {
    let gateway = InProcess::start(&[]).await;
    let callbacks = Callbacks::start().await;
    let url = callbacks.url();
    deploy(
        &gateway,
        "echo",
        wasmgate_guests::ECHO,
        scheduled(
            "@every 1s",
            &[("async", "true"), ("com.wasmgate.callback-url", &url)],
        ),
    )
    .await;
    let status = api(&gateway, "GET", "/system/function/echo", None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(
        status["triggers"],
        json!({"route": "/function/echo.openfaas-fn", "schedule": "@every 1s", "async": true})
    );

    let received = callbacks.wait_for(2).await;
    let mut ticks = Vec::new();
    for callback in &received[..2] {
        assert_eq!(callback.header("x-function-status"), "200");
        assert_eq!(callback.header("x-echo-method"), "POST");
        assert_eq!(callback.header("x-echo-x-connector"), "cron-connector");
        assert_eq!(callback.header("x-echo-x-topic"), "cron-function");
        assert!(callback.body.is_empty(), "{:?}", callback.body);
        let tick = callback.header("x-echo-x-scheduled-at").to_string();
        assert!(is_rfc3339(&tick), "{tick:?}");
        ticks.push(tick);
    }
    assert_ne!(ticks[0], ticks[1], "two callbacks of one tick");
    // Counted once the answer is read, just after the function ran.
    eventually("the runs counted", || async {
        metric(
            &gateway,
            "wasmgate_connector_invocations_total{function_name=\"echo.openfaas-fn\",connector=\"cron\",outcome=\"ok\"}",
        )
        .await
            >= 2
    })
    .await;

    // An update that drops the schedule stops it: the status says so.
    deploy(&gateway, "echo", wasmgate_guests::ECHO, json!({})).await;
    let status = api(&gateway, "GET", "/system/function/echo", None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(
        status["triggers"],
        json!({"route": "/function/echo.openfaas-fn"})
    );
}

/// A schedule the cron-connector would not take is refused at deploy, naming it; nothing is
/// deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schedule_is_refused_naming_it() {
    let gateway = InProcess::start(&[]).await;
    for (annotations, needle) in [
        (
            json!({"topic": "cron-function", "schedule": "every five minutes"}),
            "schedule \"every five minutes\"",
        ),
        (
            json!({"topic": "cron-function", "schedule": "*/5 * * *"}),
            "schedule \"*/5 * * *\": expected 5 fields",
        ),
        (
            json!({"topic": "cron-function", "schedule": "@every 1s", "async": "maybe"}),
            "async \"maybe\"",
        ),
        (json!({"topic": "cron-function"}), "needs a schedule"),
    ] {
        let body = json!({"service": "hello", "image": wasmgate_guests::HELLO, "annotations": annotations});
        let answer = api(&gateway, "POST", "/system/functions", Some(body)).await;
        assert_eq!(answer.status, 400, "{annotations}: {}", answer.text());
        assert!(answer.text().contains(needle), "{}", answer.text());
    }
    assert_eq!(get(&gateway, "/system/function/hello").await.status, 404);
}

/// A synchronous schedule (the default) runs `kvcounter`, whose count is kept on disk; after a
/// restart on the same state the schedule runs again without a new deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_schedule() {
    let state = temp_dir("cron-restart");
    let args = ["--state-dir".to_string(), state.display().to_string()];
    let gateway = Gateway::start(&args);
    deploy(
        &gateway,
        "kvcounter",
        wasmgate_guests::KVCOUNTER,
        scheduled("@every 1s", &[]),
    )
    .await;
    eventually("a scheduled run", || async { count(&gateway).await >= 1 }).await;
    gateway.signal("TERM");
    assert!(gateway.wait().success());

    let gateway = Gateway::start(&args);
    let before = count(&gateway).await;
    eventually("a scheduled run after the restart", || async {
        count(&gateway).await > before
    })
    .await;
    // Counted once the answer is read, just after the function ran.
    eventually("the runs counted", || async {
        metric(
            &gateway,
            "wasmgate_connector_invocations_total{function_name=\"kvcounter.openfaas-fn\",connector=\"cron\",outcome=\"ok\"}",
        )
        .await
            >= 1
    })
    .await;
    // `wasmgate describe` shows the triggers.
    let url = format!("http://{}", gateway.addr);
    let config = temp_dir("cron-describe");
    let described = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["describe", "kvcounter", "--gateway", &url])
            .env("XDG_CONFIG_HOME", &config)
            .env_remove("OPENFAAS_URL")
            .output()
            .expect("run wasmgate describe")
    })
    .await
    .expect("describe ran");
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(described.status.success(), "{text}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .map(|l| l[name.len() + 1..].trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(row("Route"), "/function/kvcounter.openfaas-fn", "{text}");
    assert_eq!(row("Schedule"), "@every 1s", "{text}");
}

/// Two nodes on one NATS: both run the schedule, each tick runs on one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_run_each_tick_once() {
    let nats = Nats::start();
    let a = node(&nats, "a", &temp_dir("cron-a"));
    let b = node(&nats, "b", &temp_dir("cron-b"));
    let callbacks = Callbacks::start().await;
    let url = callbacks.url();
    deploy(
        &a,
        "echo",
        wasmgate_guests::ECHO,
        scheduled(
            "@every 1s",
            &[("async", "true"), ("com.wasmgate.callback-url", &url)],
        ),
    )
    .await;
    until_all(&[&b], "/system/function/echo", 200).await;
    let claims = "wasmgate_cron_claims_total{function_name=\"echo.openfaas-fn\",result=";
    // Both nodes claim ticks (won or lost): both run the schedule.
    eventually("both nodes claiming ticks", || async {
        metric_sum(&a, claims).await >= 2 && metric_sum(&b, claims).await >= 2
    })
    .await;

    // Ticks come once a second: wait for eight distinct ones. A second run of a tick would come
    // from the other node at the same moment, so the ticks before the last two have all their runs.
    let mut per_tick: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = 0;
    while per_tick.len() < 8 {
        let received = callbacks.wait_for(seen + 1).await;
        for callback in &received[seen..] {
            *per_tick
                .entry(callback.header("x-echo-x-scheduled-at").to_string())
                .or_insert(0) += 1;
        }
        seen = received.len();
    }
    let settled: Vec<(&String, &usize)> = per_tick.iter().take(per_tick.len() - 2).collect();
    for (tick, runs) in &settled {
        assert_eq!(**runs, 1, "tick {tick} ran {runs} times: {per_tick:?}");
    }
    let won = "wasmgate_cron_claims_total{function_name=\"echo.openfaas-fn\",result=\"won\"}";
    println!(
        "cron on two nodes: {} ticks, won by a {}, by b {}",
        per_tick.len(),
        metric(&a, won).await,
        metric(&b, won).await
    );
}

/// Two nodes serve a subject in one queue group: 1,000 messages published run `kvcounter` exactly
/// 1,000 times between them (each node counts in its own key-value store); a request on `echo`'s
/// subject gets the function's answer as its reply; a removal unsubscribes every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_run_each_message_once_across_nodes() {
    let nats = Nats::start();
    let a = node(&nats, "a", &temp_dir("topics-a"));
    let b = node(&nats, "b", &temp_dir("topics-b"));
    deploy(
        &a,
        "kvcounter",
        wasmgate_guests::KVCOUNTER,
        json!({"annotations": {"topic": "orders.created"}}),
    )
    .await;
    deploy(
        &b,
        "echo",
        wasmgate_guests::ECHO,
        json!({"annotations": {"topic": "questions, cron-function", "schedule": "@yearly"}}),
    )
    .await;
    let subscribed = |function: &'static str, n: u64| {
        let (a, b) = (&a, &b);
        async move {
            let prefix = format!("wasmgate_topic_subscriptions{{function_name=\"{function}\"}}");
            metric(a, &prefix).await == n && metric(b, &prefix).await == n
        }
    };
    eventually("both nodes subscribed", || async {
        subscribed("kvcounter.openfaas-fn", 1).await && subscribed("echo.openfaas-fn", 1).await
    })
    .await;
    let status = api(&a, "GET", "/system/function/echo", None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(
        status["triggers"],
        json!({"route": "/function/echo.openfaas-fn", "schedule": "@yearly", "topics": ["questions"]})
    );

    let client = async_nats::connect(nats.url.as_str())
        .await
        .expect("connect to NATS");
    let reply = client
        .request("questions", "ping".into())
        .await
        .expect("a reply");
    assert_eq!(&reply.payload[..], b"ping");
    let header = |name: &str| {
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    assert_eq!(header("X-Function-Status"), "200");
    assert_eq!(header("x-echo-x-topic"), "questions");
    assert_eq!(header("x-echo-x-connector"), "nats-connector");

    const MESSAGES: u64 = 1000;
    for i in 0..MESSAGES {
        client
            .publish("orders.created", format!("order {i}").into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    eventually("every message counted", || async {
        count(&a).await + count(&b).await >= MESSAGES
    })
    .await;
    let (on_a, on_b) = (count(&a).await, count(&b).await);
    assert_eq!(on_a + on_b, MESSAGES, "a ran {on_a}, b ran {on_b}");
    let ok = "wasmgate_connector_invocations_total{function_name=\"kvcounter.openfaas-fn\",connector=\"nats\",outcome=\"ok\"}";
    // Counted once each answer is read, just after the function ran; never more than MESSAGES.
    eventually("every message counted as ok", || async {
        let counted = metric(&a, ok).await + metric(&b, ok).await;
        assert!(
            counted <= MESSAGES,
            "{counted} invocations of {MESSAGES} messages"
        );
        counted == MESSAGES
    })
    .await;
    println!("topics on two nodes: {MESSAGES} messages, {on_a} ran on a, {on_b} on b");

    // Removed on one node: both unsubscribe, and a request finds no one.
    let removed = api(
        &a,
        "DELETE",
        "/system/functions",
        Some(json!({"functionName": "echo"})),
    )
    .await;
    assert!(removed.status.is_success(), "{}", removed.text());
    eventually("both nodes unsubscribed", || async {
        subscribed("echo.openfaas-fn", 0).await
    })
    .await;
    assert!(
        client.request("questions", "ping".into()).await.is_err(),
        "a removed function answered"
    );
}
