//! Components as OCI artifacts: `wasmgate push` to a real registry (Debian's `docker-registry`, the
//! CNCF distribution server) and a deploy by reference, which the gateway resolves and pulls.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{Gateway, api, get, temp_dir};

/// A `docker-registry` on a free loopback port, stopped when dropped.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    fn start() -> Registry {
        let binary = "/usr/bin/docker-registry";
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: run .ci/test, which installs the docker-registry package"
        );
        let dir = temp_dir("registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .expect("write the registry config");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, addr };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wasmgate(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env_remove("OPENFAAS_URL")
        .output()
        .expect("run wasmgate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_deploy_by_reference() {
    let registry = Registry::start();
    let project = temp_dir("oci-project");
    let reference = format!("{}/team/greeter:v1", registry.addr);
    // A built Rust function: its component where `build` would put it.
    let component = project.join("greeter/target/wasm32-wasip2/release/greeter.wasm");
    std::fs::create_dir_all(component.parent().expect("a folder")).expect("mkdir");
    std::fs::copy(wasmgate_guests::HELLO, &component).expect("copy the component");
    std::fs::write(
        project.join("stack.yml"),
        format!(
            "provider:\n  name: openfaas\nfunctions:\n  greeter:\n    lang: rust\n    handler: ./greeter\n    image: {reference}\n"
        ),
    )
    .expect("write stack.yml");

    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let project = project.clone();
        move || wasmgate(&["push"], &project)
    })
    .await
    .expect("push runs");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("greeter: pushed {reference} (sha256:")),
        "{stdout}"
    );
    let manifest_digest = stdout
        .split("(sha256:")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(|hex| format!("sha256:{hex}"))
        .expect("the manifest digest");

    // Two gateways deploy it by reference; each resolves and pulls it.
    for _ in 0..2 {
        let gateway = Gateway::start(&[]);
        let gw = format!("http://{}", gateway.addr);
        let (ok, stdout, stderr) = tokio::task::spawn_blocking({
            let project = project.clone();
            move || wasmgate(&["deploy", "--gateway", &gw], &project)
        })
        .await
        .expect("deploy runs");
        assert!(ok, "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("pulled by the gateway from {reference}")),
            "{stdout}"
        );
        let answer = get(&gateway, "/function/greeter/x").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "Hello from wasmgate! You asked for /x\n");
        gateway.wait_for_log(&["resolved an OCI image", &manifest_digest]);

        // By digest, through the API.
        let by_digest = format!("{}/team/greeter@{manifest_digest}", registry.addr);
        let body = json!({"service": "pinned", "image": by_digest});
        let answer = api(&gateway, "POST", "/system/functions", Some(body)).await;
        assert_eq!(answer.status, 202, "{}", answer.text());
        assert_eq!(get(&gateway, "/function/pinned").await.status, 200);
        let listed = api(&gateway, "GET", "/system/function/pinned", None).await;
        let listed: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON");
        assert_eq!(listed["image"], by_digest.as_str());

        // A tag that is not there: a clear refusal, nothing deployed.
        let missing = format!("{}/team/greeter:nope", registry.addr);
        let body = json!({"service": "missing", "image": missing});
        let answer = api(&gateway, "POST", "/system/functions", Some(body)).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert!(
            answer.text().contains("was not found in its registry"),
            "{}",
            answer.text()
        );
        assert_eq!(get(&gateway, "/function/missing").await.status, 404);
    }
}

/// In cluster mode, a deploy by OCI reference on one node reaches every node: the node that pulled
/// it shares the component through JetStream, so the others need no registry access of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_by_reference_on_all_nodes() {
    let registry = Registry::start();
    let project = temp_dir("oci-cluster");
    let component = project.join("fn/target/wasm32-wasip2/release/fn.wasm");
    std::fs::create_dir_all(component.parent().expect("a folder")).expect("mkdir");
    std::fs::copy(wasmgate_guests::HELLO, &component).expect("copy the component");
    let reference = format!("{}/cluster/fn:v1", registry.addr);
    std::fs::write(
        project.join("stack.yml"),
        format!("functions:\n  fn:\n    lang: rust\n    handler: ./fn\n    image: {reference}\n"),
    )
    .expect("write stack.yml");
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let project = project.clone();
        move || wasmgate(&["push"], &project)
    })
    .await
    .expect("push runs");
    assert!(ok, "{stdout}\n{stderr}");

    let nats = crate::cluster::Nats::start();
    let a = crate::cluster::node(&nats, "a", &temp_dir("oci-a"));
    let b = crate::cluster::node(&nats, "b", &temp_dir("oci-b"));
    let c = crate::cluster::node(&nats, "c", &temp_dir("oci-c"));
    let body = json!({"service": "fn", "image": reference});
    let answer = api(&a, "POST", "/system/functions", Some(body)).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    // The registry goes away: B and C get the component from the cluster, not from it.
    drop(registry);
    let took = crate::cluster::until_all(&[&a, &b, &c], "/function/fn/x", 200).await;
    println!("deploy by OCI reference on A served by all three nodes after {took:?}");
    for node in [&b, &c] {
        assert_eq!(
            get(node, "/function/fn/x").await.text(),
            "Hello from wasmgate! You asked for /x\n"
        );
        let listed = api(node, "GET", "/system/function/fn", None).await;
        let listed: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON");
        assert_eq!(listed["image"], reference.as_str());
    }
}

/// A pull from a registry that does not answer holds up no other change: another function deploys,
/// and is served, while the pull still waits. Once the registry's connections close, that deploy
/// fails with the reason and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pull_blocks_no_other_deploy() {
    // Accepts connections and never answers, until dropped.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let port = silent.local_addr().expect("its address").port();
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    let (reached, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let registry = tokio::spawn(async move {
        let mut held = Vec::new();
        let mut reached = Some(reached);
        tokio::select! {
            _ = closed => {}
            () = async {
                while let Ok((connection, _)) = silent.accept().await {
                    held.push(connection);
                    if let Some(reached) = reached.take() {
                        let _ = reached.send(());
                    }
                }
            } => {}
        }
        // The held connections close here.
    });

    let gateway = Gateway::start(&[]);
    let stalled = tokio::spawn({
        let (addr, body) = (
            gateway.addr,
            json!({"service": "stalled", "image": format!("127.0.0.1:{port}/fn:1")}),
        );
        async move {
            let request = http::Request::post("/system/functions")
                .header(http::header::HOST, addr.to_string())
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )))
                .expect("a request");
            crate::support::send(addr, request).await
        }
    });
    // Its pull has begun once the gateway connected to the silent registry.
    tokio::time::timeout(crate::support::PATIENCE, reached_rx)
        .await
        .expect("the gateway reached the registry")
        .expect("the registry task runs");
    let hello = json!({"service": "hello", "image": wasmgate_guests::HELLO});
    let answer = api(&gateway, "POST", "/system/functions", Some(hello)).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    assert!(
        !stalled.is_finished(),
        "the stalled deploy ended before the other one: {:?}",
        stalled.await.map(|a| (a.status, a.text()))
    );

    close.send(()).expect("the registry task runs");
    registry.await.expect("the registry task ends");
    let refused = stalled.await.expect("the stalled deploy answers");
    assert!(
        refused.status.is_client_error() || refused.status.is_server_error(),
        "{}",
        refused.status
    );
    assert_eq!(
        api(&gateway, "GET", "/system/function/stalled", None)
            .await
            .status,
        404
    );
}
