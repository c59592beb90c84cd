//! Cluster mode: three gateways and a real NATS JetStream server (Debian's nats-server 2.9) on
//! loopback. A deploy or a removal on one node is applied by the others; components travel through
//! the object store; a node that was down catches up.
//!
//! Over 600 lines: each test starts its own NATS server and nodes through this file's helpers, which
//! the OCI and connector tests use too.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Gateway, api, deploy, get, run_to_exit, temp_dir, upload};

/// A `nats-server -js` on a free loopback port, stopped when dropped.
pub(crate) struct Nats {
    child: Child,
    pub(crate) url: String,
}

impl Nats {
    pub(crate) fn start() -> Nats {
        Nats::start_with(&[])
    }

    /// A server started with `args` besides its port and store (`--user`, `--pass`, ...).
    pub(crate) fn start_with(args: &[&str]) -> Nats {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nats-server is missing: run .ci/test, which installs the nats-server package");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = temp_dir("nats");
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secrets key every node of these tests shares.
const SECRETS_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A file holding `key`, for `--secrets-key-file`.
pub(crate) fn key_file(key: &str) -> std::path::PathBuf {
    let path = temp_dir("secrets-key").join("key");
    std::fs::write(&path, format!("# a test key\n{key}\n")).expect("write the key file");
    path
}

pub(crate) fn node(nats: &Nats, name: &str, state: &std::path::Path) -> Gateway {
    node_with(
        nats,
        name,
        state,
        &[
            "--secrets-key-file".to_string(),
            key_file(SECRETS_KEY).display().to_string(),
        ],
    )
}

/// A node with `extra` arguments instead of the tests' secrets key.
pub(crate) fn node_with(
    nats: &Nats,
    name: &str,
    state: &std::path::Path,
    extra: &[String],
) -> Gateway {
    let mut args = vec![
        "--nats".to_string(),
        nats.url.clone(),
        "--node-name".to_string(),
        name.to_string(),
        "--state-dir".to_string(),
        state.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    Gateway::start(&args)
}

/// Polls `path` on every node until each answers `status`; returns how long it took.
pub(crate) async fn until_all(nodes: &[&Gateway], path: &str, status: u16) -> Duration {
    let started = Instant::now();
    for node in nodes {
        loop {
            if get(*node, path).await.status == status {
                break;
            }
            assert!(
                started.elapsed() < crate::support::PATIENCE,
                "{path} never answered {status} on {}; its log:\n{}",
                node.addr,
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_their_functions() {
    let nats = Nats::start();
    let states = [temp_dir("node-a"), temp_dir("node-b"), temp_dir("node-c")];
    let a = node(&nats, "a", &states[0]);
    let b = node(&nats, "b", &states[1]);
    let c = node(&nats, "c", &states[2]);

    // A component uploaded to A and deployed through B (as a load balancer may send the two
    // requests): B finds it in the object store; C gets it from there too.
    let digest = upload(
        &a,
        std::fs::read(wasmgate_guests::HELLO).expect("read hello"),
    )
    .await;
    let body = json!({"service": "hello", "image": digest});
    let answer = api(&b, "POST", "/system/functions", Some(body)).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let deployed = until_all(&[&a, &c], "/function/hello", 200).await;
    println!("deploy on B served by A and C after {deployed:?}");
    assert!(deployed < Duration::from_secs(5), "{deployed:?}");
    assert_eq!(
        get(&b, "/function/hello/x").await.text(),
        "Hello from wasmgate! You asked for /x\n"
    );
    a.wait_for_log(&["applied a deploy from the cluster", "hello.openfaas-fn"]);

    // Any node may deploy; an update reaches the others too.
    deploy(&b, "echo", wasmgate_guests::ECHO, json!({})).await;
    until_all(&[&a, &c], "/function/echo", 200).await;
    deploy(
        &c,
        "echo",
        wasmgate_guests::ECHO,
        json!({"envVars": {"VERSION": "2"}}),
    )
    .await;
    let updated = async {
        loop {
            let listed = api(&a, "GET", "/system/function/echo", None).await;
            let listed: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON");
            if listed["envVars"]["VERSION"] == "2" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), updated)
        .await
        .expect("the update reached A");

    // A namespace and a secret made on A, and a function there that reads the secret: B serves it
    // with the secret; a new value set on B reaches A.
    assert_eq!(
        api(&a, "POST", "/system/namespace/team", None).await.status,
        201
    );
    let secret = json!({"name": "api-key", "value": "s3cret", "namespace": "team"});
    assert_eq!(
        api(&a, "POST", "/system/secrets", Some(secret))
            .await
            .status,
        202
    );
    deploy(
        &a,
        "inspect",
        wasmgate_guests::INSPECT,
        json!({"namespace": "team", "secrets": ["api-key"]}),
    )
    .await;
    let path = "/function/inspect.team/file?/var/openfaas/secrets/api-key";
    until_all(&[&b, &c], path, 200).await;
    assert_eq!(get(&b, path).await.text(), "s3cret");

    // The bucket holds the value sealed, never in the clear.
    let stored = async_nats::jetstream::new(
        async_nats::connect(nats.url.as_str())
            .await
            .expect("connect to NATS"),
    )
    .get_key_value("wasmgate-secrets")
    .await
    .expect("the secrets bucket")
    .get("team.api-key")
    .await
    .expect("read the secret")
    .expect("the secret is there");
    let stored = String::from_utf8_lossy(&stored).into_owned();
    assert!(
        stored.starts_with("wgsealed1.") && !stored.contains("s3cret"),
        "{stored}"
    );
    // A node with another key refuses the secret, saying why, and does not serve the function
    // that needs it; a node with no key refuses to share a secret at all.
    let stranger = node_with(
        &nats,
        "stranger",
        &temp_dir("node-stranger"),
        &[
            "--secrets-key-file".to_string(),
            key_file(&"ab".repeat(32)).display().to_string(),
        ],
    );
    stranger.wait_for_log(&["refusing a secret from the cluster", "does not hold"]);
    assert_eq!(get(&stranger, path).await.status, 404);
    let keyless = node_with(&nats, "keyless", &temp_dir("node-keyless"), &[]);
    let refused = api(
        &keyless,
        "POST",
        "/system/secrets",
        Some(json!({"name": "other", "value": "x", "namespace": "team"})),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("--secrets-key-file"),
        "{}",
        refused.text()
    );
    drop((stranger, keyless));
    let changed = json!({"name": "api-key", "value": "n3w", "namespace": "team"});
    assert_eq!(
        api(&b, "PUT", "/system/secrets", Some(changed))
            .await
            .status,
        202
    );
    let reached = async {
        while get(&a, path).await.text() != "n3w" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("the new secret reached A");
    let namespaces = api(&c, "GET", "/system/namespaces", None).await.text();
    assert!(namespaces.contains("\"team\""), "{namespaces}");

    // A removal on A.
    let delete = json!({"functionName": "hello"});
    assert_eq!(
        api(&a, "DELETE", "/system/functions", Some(delete))
            .await
            .status,
        202
    );
    let removed = until_all(&[&b, &c], "/function/hello", 404).await;
    println!("removal on A gone from B and C after {removed:?}");
    assert!(removed < Duration::from_secs(5), "{removed:?}");

    // Every live node is a replica of every function.
    replicas_become(&a, "echo", 3).await;

    // C is down while a function is deployed and another removed; it catches up when it returns.
    c.signal("KILL");
    drop(c);
    // Its heartbeat expires: two replicas left.
    replicas_become(&a, "echo", 2).await;
    deploy(&a, "markdown", wasmgate_guests::MARKDOWN, json!({})).await;
    let delete = json!({"functionName": "echo"});
    assert_eq!(
        api(&b, "DELETE", "/system/functions", Some(delete))
            .await
            .status,
        202
    );
    let c = node(&nats, "c", &states[2]);
    until_all(&[&c], "/function/markdown", 200).await;
    until_all(&[&c], "/function/echo", 404).await;
    assert_eq!(get(&c, "/function/hello").await.status, 404);
    replicas_become(&b, "markdown", 3).await;
}

/// Waits until the function's `availableReplicas` (as the node reports it) is `replicas`.
async fn replicas_become(node: &Gateway, function: &str, replicas: u64) {
    let wait = async {
        loop {
            let answer = api(node, "GET", &format!("/system/function/{function}"), None).await;
            if answer.status != 200 {
                // Not applied on this node yet.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let status: serde_json::Value = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{e}: {} {:?}", answer.status, answer.text()));
            if status["availableReplicas"] == replicas && status["replicas"] == replicas {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("{function} never had {replicas} replicas"));
}

/// Scaling to zero is the cluster's: a function that sleeps when idle has as replicas the nodes
/// where it is awake, every node reports the same count, and a scale made on one node is made on
/// all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_agree_on_what_sleeps() {
    let nats = Nats::start();
    let states = [temp_dir("sleep-a"), temp_dir("sleep-b")];
    let a = node(&nats, "a", &states[0]);
    let b = node(&nats, "b", &states[1]);
    let sleeps = json!({"labels": {"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "3s"}});
    deploy(&a, "sleepy", wasmgate_guests::HELLO, sleeps).await;
    deploy(&a, "plain", wasmgate_guests::HELLO, json!({})).await;
    until_all(&[&a, &b], "/function/sleepy", 200).await;
    until_all(&[&a, &b], "/function/plain", 200).await;
    replicas_become(&a, "plain", 2).await;

    // Idle on both nodes: asleep on both, and both say so.
    for node in [&a, &b] {
        replicas_become(node, "sleepy", 0).await;
    }
    // Kept awake on B only: one replica, as A sees it too; then on both: two.
    let keep_awake = |node: &Gateway| {
        let addr = node.addr;
        tokio::spawn(async move {
            loop {
                let request = http::Request::get("/function/sleepy")
                    .header(http::header::HOST, addr.to_string())
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("a request");
                crate::support::send(addr, request).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let on_b = keep_awake(&b);
    replicas_become(&a, "sleepy", 1).await;
    replicas_become(&b, "sleepy", 1).await;
    let on_a = keep_awake(&a);
    replicas_become(&b, "sleepy", 2).await;
    let metrics = get(&b, "/metrics").await.text();
    assert!(
        metrics.contains("gateway_service_count{function_name=\"sleepy.openfaas-fn\"} 2"),
        "{metrics}"
    );
    on_a.abort();
    on_b.abort();
    for node in [&a, &b] {
        replicas_become(node, "sleepy", 0).await;
    }

    // A scale to 0 on A is made on B too; B's next request wakes it there, which A sees.
    let scale = json!({"serviceName": "plain", "replicas": 0});
    let scaled = api(&a, "POST", "/system/scale-function/plain", Some(scale)).await;
    assert_eq!(scaled.status, 202, "{}", scaled.text());
    replicas_become(&b, "plain", 0).await;
    assert_eq!(get(&b, "/function/plain").await.status, 200);
    replicas_become(&a, "plain", 1).await;
    // Scaled up again on B: every live node serves it.
    let scale = json!({"serviceName": "plain", "replicas": 1});
    let scaled = api(&b, "POST", "/system/scale-function/plain", Some(scale)).await;
    assert_eq!(scaled.status, 202, "{}", scaled.text());
    replicas_become(&a, "plain", 2).await;
}

/// The async queue is shared: calls queued on one node run on all of them, and a node killed while
/// it runs calls loses none (JetStream gives them to another node after the ack wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_are_shared_and_survive_a_node() {
    const CALLS: usize = 120;
    let nats = Nats::start();
    let concurrency = ["--async-function-concurrency".to_string(), "4".to_string()];
    let start = |name: &str| {
        let state = temp_dir(&format!("async-{name}"));
        let mut args = vec![
            "--nats".to_string(),
            nats.url.clone(),
            "--node-name".to_string(),
            name.to_string(),
            "--state-dir".to_string(),
            state.display().to_string(),
        ];
        args.extend(concurrency.iter().cloned());
        Gateway::start(&args)
    };
    let a = start("a");
    let b = start("b");
    let c = start("c");
    deploy(&a, "flaky", wasmgate_guests::FLAKY, json!({})).await;
    until_all(&[&b, &c], "/function/flaky", 200).await;

    // What the queue keeps about ended calls is bounded by bytes and by age, the oldest going first.
    let js = async_nats::jetstream::new(
        async_nats::connect(nats.url.as_str())
            .await
            .expect("connect to NATS"),
    );
    use wasmgate_gateway::cluster::calls;
    for (stream, max_bytes, max_age) in [
        (
            calls::DEAD_STREAM.to_string(),
            calls::DEAD_MAX_BYTES,
            calls::DEAD_MAX_AGE,
        ),
        (
            format!("KV_{}", calls::STATUS_BUCKET),
            calls::STATUS_MAX_BYTES,
            calls::STATUS_TTL,
        ),
    ] {
        let config = js
            .get_stream(&stream)
            .await
            .expect("the stream")
            .info()
            .await
            .expect("its info")
            .config
            .clone();
        assert_eq!(
            (config.max_bytes, config.max_age, config.discard),
            (
                max_bytes,
                max_age,
                async_nats::jetstream::stream::DiscardPolicy::Old
            ),
            "{stream}"
        );
    }

    // A call travels in one NATS message (1 MiB by default): a body that cannot fit is refused at once.
    // (Only the head is sent: the gateway answers from the declared length.)
    let mut raw = tokio::net::TcpStream::connect(a.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /async-function/flaky HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n\r\n",
        a.addr,
        2 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes())
        .await
        .expect("write");
    let mut answer = vec![0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut answer)
        .await
        .expect("read");
    assert_eq!(&answer, b"HTTP/1.1 413");

    let callbacks = crate::support::Callbacks::start().await;
    let url = callbacks.url();
    let mut ids = Vec::new();
    for _ in 0..CALLS {
        let mut request =
            crate::support::request("POST", &a, "/async-function/flaky?sleep_ms=200", "");
        request
            .headers_mut()
            .insert("x-callback-url", url.parse().expect("a header value"));
        let answer = crate::support::send(a.addr, request).await;
        assert_eq!(answer.status, 202, "{}", answer.text());
        ids.push(answer.header("x-call-id").to_string());
    }
    // A body that fits is taken: the limit comes from the server once connected (it read 0, and
    // refused every body, when taken before the server had introduced itself).
    let mut request =
        crate::support::request("POST", &a, "/async-function/flaky", vec![b'x'; 256 << 10]);
    request
        .headers_mut()
        .insert("x-callback-url", url.parse().expect("a header value"));
    let answer = crate::support::send(a.addr, request).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    ids.push(answer.header("x-call-id").to_string());
    let calls = ids.len();

    // B runs some of A's calls; kill it while it does.
    let running = |node: &Gateway| {
        let addr = node.addr;
        async move {
            let text = crate::support::send(
                addr,
                http::Request::get("/metrics")
                    .header("host", addr.to_string())
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request"),
            )
            .await
            .text();
            text.lines()
                .find(|l| {
                    l.starts_with("wasmgate_async_running{function_name=\"flaky.openfaas-fn\"}")
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while running(&b).await == 0 {
        assert!(Instant::now() < deadline, "B never ran a call queued on A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.signal("KILL");
    drop(b);
    let before = callbacks.received().len();
    assert!(before < calls, "the kill came before the end");

    let received = callbacks.wait_for(calls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per_call = std::collections::HashMap::new();
    for callback in callbacks.received() {
        *per_call
            .entry(callback.header("x-call-id").to_string())
            .or_insert(0usize) += 1;
    }
    for id in &ids {
        assert!(per_call.contains_key(id), "call {id} was lost");
        let status = api(&c, "GET", &format!("/system/async/{id}"), None).await;
        let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
        assert_eq!(status["status"], "succeeded", "{status}");
    }
    let duplicates = callbacks.received().len() - calls;
    println!(
        "cluster async: {calls} calls queued on A, {before} done when B was killed, {} callbacks, {duplicates} duplicates",
        received.len().max(callbacks.received().len())
    );
    // Both survivors ran calls.
    for node in [&a, &c] {
        let metrics = get(node, "/metrics").await.text();
        assert!(
            metrics.contains("wasmgate_async_finished_total{function_name=\"flaky.openfaas-fn\",state=\"succeeded\"}"),
            "{metrics}"
        );
    }
}

/// `component` with a custom section named `churn` holding `n`: the same function, other bytes.
/// The cluster's object store of components, through a client of its own.
pub(crate) async fn artifacts_store(
    nats: &Nats,
) -> async_nats::jetstream::object_store::ObjectStore {
    async_nats::jetstream::new(
        async_nats::connect(nats.url.as_str())
            .await
            .expect("connect to NATS"),
    )
    .get_object_store(wasmgate_gateway::cluster::ARTIFACTS_BUCKET)
    .await
    .expect("the object store")
}

/// The names of the objects `store` holds (not deleted).
pub(crate) async fn live_objects(
    store: &async_nats::jetstream::object_store::ObjectStore,
) -> Vec<String> {
    use futures::StreamExt as _;
    let mut names = Vec::new();
    let mut list = store.list().await.expect("list the object store");
    while let Some(info) = list.next().await {
        let info = info.expect("an object");
        if !info.deleted {
            names.push(info.name);
        }
    }
    names
}

pub(crate) fn variant(component: &[u8], n: usize) -> Vec<u8> {
    let name = b"churn";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128, "one-byte LEB128 sizes");
    let mut wasm = component.to_vec();
    wasm.extend_from_slice(&[0, size as u8, name.len() as u8]);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(&payload);
    wasm
}

/// Bytes of the files under `dir` (0 when it does not exist).
pub(crate) fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// 200 updates of one function, each with another component, then its removal: once the grace
/// period has passed (1 s here), both nodes' artifact stores and compiled-code caches are empty
/// again and the cluster's object store holds no component.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_component_behind() {
    const UPDATES: usize = 200;
    let nats = Nats::start();
    let states = [temp_dir("churn-a"), temp_dir("churn-b")];
    let start = |name: &str, state: &std::path::Path| {
        Gateway::start(&[
            "--nats".to_string(),
            nats.url.clone(),
            "--node-name".to_string(),
            name.to_string(),
            "--state-dir".to_string(),
            state.display().to_string(),
            "--cache-dir".to_string(),
            state.join("cache").display().to_string(),
            "--artifact-grace".to_string(),
            "1s".to_string(),
        ])
    };
    let a = start("a", &states[0]);
    let b = start("b", &states[1]);
    let kept = || -> Vec<u64> {
        states
            .iter()
            .flat_map(|s| {
                [
                    bytes_under(&s.join("artifacts")),
                    bytes_under(&s.join("cache")),
                ]
            })
            .collect()
    };
    assert_eq!(kept(), [0, 0, 0, 0], "nothing stored yet");

    let hello = std::fs::read(wasmgate_guests::HELLO).expect("read hello");
    for n in 0..UPDATES {
        let digest = upload(&a, variant(&hello, n)).await;
        deploy(&a, "churn", &digest, json!({})).await;
    }
    assert_eq!(get(&a, "/function/churn").await.status, 200);
    until_all(&[&b], "/function/churn", 200).await;
    let removed = api(
        &a,
        "DELETE",
        "/system/functions",
        Some(json!({"functionName": "churn"})),
    )
    .await;
    assert_eq!(removed.status, 202, "{}", removed.text());
    until_all(&[&b], "/function/churn", 404).await;

    let artifacts = artifacts_store(&nats).await;
    let started = Instant::now();
    loop {
        let objects = live_objects(&artifacts).await.len();
        let left = kept();
        if objects == 0 && left == [0, 0, 0, 0] {
            break;
        }
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "after {UPDATES} updates and a removal, {objects} components are left in the object \
             store and {left:?} bytes in the artifact stores and caches of A and B; B said:\n{}",
            b.log_text()
                .lines()
                .filter(|l| l.contains("collect") || l.contains("component"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{UPDATES} updates and a removal collected within {:?}",
        started.elapsed()
    );
}

/// Wrong credentials, or no NATS server at all, end the gateway within `--nats-connect-timeout`
/// with an error that names the cause, instead of a gateway that retries for ever without serving.
#[test]
fn a_gateway_that_cannot_join_exits_naming_why() {
    let nats = Nats::start_with(&["--user", "wasmgate", "--pass", "right"]);
    let wrong = nats.url.replace("nats://", "nats://wasmgate:wrong@");
    let state = temp_dir("no-join");
    let serve = |url: &str| {
        run_to_exit(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            &state.display().to_string(),
            "--nats",
            url,
            "--nats-connect-timeout",
            "3s",
        ])
    };
    let (status, stderr) = serve(&wrong);
    assert!(!status.success(), "{stderr}");
    // The error itself names the cause, not only a log line before it.
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    assert!(
        error.contains("could not join the NATS cluster")
            && error.contains("--nats-connect-timeout")
            && error.to_lowercase().contains("authorization violation"),
        "{stderr}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (status, stderr) = serve(&format!("nats://127.0.0.1:{port}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("could not join the NATS cluster") && stderr.contains("within 3s"),
        "{stderr}"
    );
}

/// A node that joins a cluster of 1,000 functions says it is not ready (503, with why) until it
/// serves every one of them; `/healthz` meanwhile says it is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_is_ready_once_it_serves_every_function() {
    use futures::StreamExt as _;
    const FUNCTIONS: usize = 1000;
    let nats = Nats::start();
    let a = node(&nats, "a", &temp_dir("ready-a"));
    assert_eq!(get(&a, "/readyz").await.status, 200, "an empty cluster");
    let digest = upload(
        &a,
        std::fs::read(wasmgate_guests::HELLO).expect("read hello"),
    )
    .await;
    futures::stream::iter(0..FUNCTIONS)
        .for_each_concurrent(8, |i| {
            let (a, digest) = (&a, &digest);
            async move {
                let body = json!({"service": format!("f{i}"), "image": digest});
                let answer = api(a, "POST", "/system/functions", Some(body)).await;
                assert_eq!(answer.status, 202, "f{i}: {}", answer.text());
            }
        })
        .await;

    let b = node(&nats, "b", &temp_dir("ready-b"));
    let started = Instant::now();
    let mut unready = None;
    loop {
        let answer = get(&b, "/readyz").await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(
            answer.text().starts_with("not ready: "),
            "{}",
            answer.text()
        );
        assert_eq!(get(&b, "/healthz").await.status, 200);
        unready.get_or_insert_with(|| answer.text());
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "never ready: {}",
            answer.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "B was ready after {:?}; before, it said {unready:?}",
        started.elapsed()
    );
    futures::stream::iter(0..FUNCTIONS)
        .for_each_concurrent(8, |i| {
            let b = &b;
            async move {
                let answer = get(b, &format!("/function/f{i}")).await;
                assert_eq!(
                    answer.status,
                    200,
                    "f{i} on B once ready: {}",
                    answer.text()
                );
            }
        })
        .await;
}

/// A change another node made that fails here is tried again until it succeeds: the component is
/// missing from the object store for longer than one fetch keeps trying (20 s), then comes back.
/// Before, the change was given up until the function's record changed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_failed_is_tried_again() {
    use sha2::Digest as _;
    let nats = Nats::start();
    let b = node(&nats, "b", &temp_dir("retry-b"));
    deploy(&b, "hello", wasmgate_guests::HELLO, json!({})).await;

    // Take the component out of the object store, as an operator's clean-up or a lost replica would.
    let wasm = std::fs::read(wasmgate_guests::HELLO).expect("read hello");
    let object = format!("sha256-{}", hex::encode(sha2::Sha256::digest(&wasm)));
    let client = async_nats::connect(nats.url.as_str())
        .await
        .expect("connect to NATS");
    let artifacts = async_nats::jetstream::new(client)
        .get_object_store(wasmgate_gateway::cluster::ARTIFACTS_BUCKET)
        .await
        .expect("the artifacts object store");
    artifacts
        .delete(&object)
        .await
        .expect("delete the component");

    let a = node(&nats, "a", &temp_dir("retry-a"));
    a.wait_for_log(&[
        "cannot get the component of a function deployed elsewhere",
        "hello.openfaas-fn",
    ]);
    assert_eq!(get(&a, "/function/hello").await.status, 404);

    artifacts
        .put(object.as_str(), &mut wasm.as_slice())
        .await
        .expect("put the component back");
    let healed = until_all(&[&a], "/function/hello", 200).await;
    println!("A served the function {healed:?} after its component came back");
    a.wait_for_log(&["a change from the cluster that had failed is no longer pending"]);
}

/// Three NATS servers in a JetStream cluster (streams and buckets with 3 replicas): one server is
/// killed, and the gateways keep serving, accepting and running async calls, and sharing deploys
/// after the leader election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_can_fail() {
    let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nats-server is missing: run .ci/test, which installs the nats-server package");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    };
    let clients: Vec<u16> = (0..3).map(|_| free()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free()).collect();
    let mut servers: Vec<Child> = (0..3)
        .map(|i| {
            let others: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
                .collect();
            Command::new(binary)
                .args(["-js", "-a", "127.0.0.1", "-p", &clients[i].to_string()])
                .args(["-n", &format!("s{i}"), "--cluster_name", "wasmgate-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                .args(["--routes", &others.join(",")])
                .arg("-sd")
                .arg(temp_dir(&format!("nats-s{i}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server")
        })
        .collect();
    for port in &clients {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let urls = clients
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let start = |name: &str| {
        Gateway::start(&[
            "--nats".to_string(),
            urls.clone(),
            "--nats-replicas".to_string(),
            "3".to_string(),
            "--node-name".to_string(),
            name.to_string(),
            "--state-dir".to_string(),
            temp_dir(&format!("ha-{name}")).display().to_string(),
        ])
    };
    let a = start("a");
    let b = start("b");
    deploy(&a, "flaky", wasmgate_guests::FLAKY, json!({})).await;
    until_all(&[&b], "/function/flaky", 200).await;

    let callbacks = crate::support::Callbacks::start().await;
    let url = callbacks.url();
    let queue = |node: &Gateway, n: usize| {
        let (addr, url) = (node.addr, url.clone());
        async move {
            for _ in 0..n {
                let request = http::Request::post("/async-function/flaky")
                    .header("host", addr.to_string())
                    .header("x-callback-url", url.as_str())
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                let answer = crate::support::send(addr, request).await;
                assert_eq!(answer.status, 202, "{}", answer.text());
            }
        }
    };
    queue(&a, 20).await;
    callbacks.wait_for(20).await;

    // One NATS server goes away for good.
    let _ = servers[0].kill();
    let _ = servers[0].wait();
    let killed_at = Instant::now();

    // Synchronous calls never needed NATS.
    assert_eq!(get(&a, "/function/flaky").await.status, 200);
    assert_eq!(get(&b, "/function/flaky").await.status, 200);
    // Async calls are accepted (once the streams have a leader again) and run.
    queue(&b, 20).await;
    let arrived = async {
        while callbacks.received().len() < 40 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), arrived)
        .await
        .is_err()
    {
        panic!(
            "only {} of 40 callbacks arrived\n--- a:\n{}\n--- b:\n{}",
            callbacks.received().len(),
            a.log_text(),
            b.log_text()
        );
    }
    println!(
        "after a NATS server was killed: 20 more async calls accepted and run within {:?}",
        killed_at.elapsed()
    );
    // Deploys still reach the other node. If its watch was served by the killed server and a new one
    // cannot be started yet, its periodic read of the buckets (every 10 s) brings the deploy.
    deploy(&b, "hello", wasmgate_guests::HELLO, json!({})).await;
    assert_eq!(get(&b, "/function/hello").await.status, 200);
    let shared = until_all(&[&a], "/function/hello", 200).await;
    println!("a deploy on B after the NATS server was killed reached A after {shared:?}");

    for server in &mut servers[1..] {
        let _ = server.kill();
        let _ = server.wait();
    }
}
