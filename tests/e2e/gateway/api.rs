//! The management API end to end: every endpoint and status of the contract, durable state across
//! restarts and SIGKILL, auth, logs and metrics.
//!
//! Over 600 lines: one test per behaviour of the management API, each with its own gateway.

use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::support::{
    self, Gateway, InProcess, Target, api, deploy, eventually, get, request, run_to_exit, send,
    upload,
};

fn json_of(answer: &support::Answer) -> Value {
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.text()))
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("guest is built")
}

#[tokio::test]
async fn functions_endpoints_follow_the_contract() {
    let gateway = Gateway::start(&[]);
    let digest = upload(&gateway, read(wasmgate_guests::HELLO)).await;
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(
        upload(&gateway, read(wasmgate_guests::HELLO)).await,
        digest,
        "same bytes, same digest"
    );

    let body = json!({"service": "hello", "image": digest, "labels": {}, "annotations": {}});
    let put = api(&gateway, "PUT", "/system/functions", Some(body.clone())).await;
    assert_eq!(
        put.status, 404,
        "faas-cli relies on 404 for an unknown function"
    );
    assert_eq!(
        api(&gateway, "POST", "/system/functions", Some(body.clone()))
            .await
            .status,
        202
    );
    assert_eq!(
        api(&gateway, "POST", "/system/functions", Some(body.clone()))
            .await
            .status,
        400,
        "exists"
    );
    assert_eq!(
        api(&gateway, "PUT", "/system/functions", Some(body))
            .await
            .status,
        202
    );
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);

    let list = api(&gateway, "GET", "/system/functions", None).await;
    assert_eq!(list.status, 200);
    let items = json_of(&list);
    let item = &items[0];
    assert_eq!(item["name"], "hello");
    assert_eq!(item["namespace"], "openfaas-fn");
    assert_eq!(item["image"], digest.as_str());
    assert_eq!(item["availableReplicas"], 1);
    assert_eq!(item["invocationCount"], 1);
    let created = item["createdAt"].as_str().expect("createdAt");
    assert!(crate::support::is_rfc3339(created), "{created}");
    assert_eq!(
        json_of(
            &api(
                &gateway,
                "GET",
                "/system/functions?namespace=openfaas-fn",
                None
            )
            .await
        ),
        items
    );
    assert_eq!(
        api(&gateway, "GET", "/system/functions?namespace=Bad_NS", None)
            .await
            .status,
        400
    );

    let one = api(&gateway, "GET", "/system/function/hello?usage=1", None).await;
    assert_eq!(
        (one.status.as_u16(), json_of(&one)["name"].clone()),
        (200, json!("hello"))
    );
    let missing = api(&gateway, "GET", "/system/function/nope", None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.is_empty(), "404 with an empty body");

    // Scale to zero: unloaded, and the next call loads it again.
    let scale = json!({"serviceName": "hello", "replicas": 0});
    assert_eq!(
        api(
            &gateway,
            "POST",
            "/system/scale-function/hello",
            Some(scale)
        )
        .await
        .status,
        202
    );
    let status = json_of(&api(&gateway, "GET", "/system/function/hello", None).await);
    assert_eq!(
        (
            status["replicas"].clone(),
            status["availableReplicas"].clone()
        ),
        (json!(0), json!(0))
    );
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains("wasmgate_cold_starts_total{function_name=\"hello.openfaas-fn\"} 1"),
        "{metrics}"
    );
    let status = json_of(&api(&gateway, "GET", "/system/function/hello", None).await);
    assert_eq!(status["availableReplicas"], 1);
    let scale = json!({"serviceName": "nope", "replicas": 1});
    assert_eq!(
        api(&gateway, "POST", "/system/scale-function/nope", Some(scale))
            .await
            .status,
        404
    );
    assert_eq!(
        api(
            &gateway,
            "POST",
            "/system/scale-function/hello",
            Some(json!({"x": 1}))
        )
        .await
        .status,
        400
    );

    let delete = json!({"functionName": "hello", "namespace": "openfaas-fn"});
    assert_eq!(
        api(
            &gateway,
            "DELETE",
            "/system/functions",
            Some(delete.clone())
        )
        .await
        .status,
        202
    );
    assert_eq!(
        api(&gateway, "DELETE", "/system/functions", Some(delete))
            .await
            .status,
        404
    );
    assert_eq!(get(&gateway, "/function/hello").await.status, 404);
    assert_eq!(
        json_of(&api(&gateway, "GET", "/system/functions", None).await),
        json!([])
    );
    assert_eq!(
        api(
            &gateway,
            "POST",
            "/system/functions",
            Some(json!({"service": "x"}))
        )
        .await
        .status,
        400
    );
    assert_eq!(
        api(&gateway, "POST", "/system/functions", None)
            .await
            .status,
        400,
        "no body"
    );
    assert_eq!(
        api(&gateway, "PATCH", "/system/functions", None)
            .await
            .status,
        405
    );
    let bad_json = send(
        gateway.addr,
        request("PUT", &gateway, "/system/functions", "{not json"),
    )
    .await;
    assert_eq!(bad_json.status, 400, "{}", bad_json.text());
    let bad_name = json!({"service": "bad name", "image": wasmgate_guests::HELLO});
    assert_eq!(
        api(&gateway, "PUT", "/system/functions", Some(bad_name))
            .await
            .status,
        400
    );
    let bad_delete = json!({"functionName": "x", "namespace": "Not_A_Namespace"});
    assert_eq!(
        api(&gateway, "DELETE", "/system/functions", Some(bad_delete))
            .await
            .status,
        400
    );
    assert_eq!(
        api(&gateway, "DELETE", "/system/functions", Some(json!({})))
            .await
            .status,
        400
    );
    assert_eq!(
        api(&gateway, "GET", "/system/nothing", None).await.status,
        404
    );
}

#[tokio::test]
async fn info_namespaces_and_secrets() {
    let gateway = InProcess::start(&[]).await;
    let info = json_of(&api(&gateway, "GET", "/system/info", None).await);
    assert_eq!(info["provider"]["provider"], "wasmgate");
    assert!(info["provider"]["version"]["release"].is_string(), "{info}");
    assert!(
        info["version"]["sha"].is_string() && info["arch"].is_string(),
        "{info}"
    );

    assert_eq!(
        json_of(&api(&gateway, "GET", "/system/namespaces", None).await),
        json!(["openfaas-fn"])
    );
    assert_eq!(
        api(
            &gateway,
            "POST",
            "/system/namespace/team-a",
            Some(json!({"labels": {"a": "b"}}))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        api(&gateway, "POST", "/system/namespace/team-a", None)
            .await
            .status,
        409
    );
    assert_eq!(
        api(&gateway, "POST", "/system/namespace/Bad_Name", None)
            .await
            .status,
        400
    );
    let ns = json_of(&api(&gateway, "GET", "/system/namespace/team-a", None).await);
    assert_eq!(
        (ns["name"].clone(), ns["labels"]["a"].clone()),
        (json!("team-a"), json!("b"))
    );
    assert_eq!(
        api(
            &gateway,
            "PUT",
            "/system/namespace/team-a",
            Some(json!({"labels": {}}))
        )
        .await
        .status,
        202
    );
    assert_eq!(
        api(&gateway, "PUT", "/system/namespace/none", None)
            .await
            .status,
        404
    );
    assert_eq!(
        api(&gateway, "GET", "/system/namespace/none", None)
            .await
            .status,
        404
    );
    assert_eq!(
        json_of(&api(&gateway, "GET", "/system/namespaces", None).await),
        json!(["openfaas-fn", "team-a"])
    );

    // Secrets: names only, never values.
    let secret = json!({"name": "db", "namespace": "team-a", "value": "hunter2"});
    assert_eq!(
        api(&gateway, "POST", "/system/secrets", Some(secret.clone()))
            .await
            .status,
        202
    );
    assert_eq!(
        api(&gateway, "POST", "/system/secrets", Some(secret))
            .await
            .status,
        409
    );
    let raw = json!({"name": "raw", "namespace": "team-a", "rawValue": "AAEC"});
    assert_eq!(
        api(&gateway, "POST", "/system/secrets", Some(raw))
            .await
            .status,
        202
    );
    let list = api(&gateway, "GET", "/system/secrets?namespace=team-a", None).await;
    assert_eq!(
        json_of(&list),
        json!([{"name": "db", "namespace": "team-a"}, {"name": "raw", "namespace": "team-a"}])
    );
    assert!(!list.text().contains("hunter2"));
    assert_eq!(
        json_of(&api(&gateway, "GET", "/system/secrets", None).await),
        json!([])
    );
    let unknown = json!({"name": "nope", "namespace": "team-a", "value": "x"});
    assert_eq!(
        api(&gateway, "PUT", "/system/secrets", Some(unknown.clone()))
            .await
            .status,
        404
    );
    assert_eq!(
        api(&gateway, "DELETE", "/system/secrets", Some(unknown))
            .await
            .status,
        404
    );
    for bad in ["", "a/b", "..", "x..y"] {
        let body = json!({"name": bad, "value": "x"});
        assert_eq!(
            api(&gateway, "POST", "/system/secrets", Some(body))
                .await
                .status,
            400,
            "{bad:?}"
        );
    }
    let update = json!({"name": "db", "namespace": "team-a", "value": "new"});
    assert_eq!(
        api(&gateway, "PUT", "/system/secrets", Some(update))
            .await
            .status,
        202
    );
    // Secret files are owner-only.
    {
        use std::os::unix::fs::PermissionsExt;
        let path = gateway.state_dir.join("secrets/team-a/db");
        let mode = std::fs::metadata(&path)
            .expect("secret file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }

    // A deploy that names a missing secret is refused; one in the namespace works.
    let body = json!({"service": "hello", "image": wasmgate_guests::HELLO, "namespace": "team-a", "secrets": ["absent"]});
    let refused = api(&gateway, "POST", "/system/functions", Some(body)).await;
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("absent"), "{}", refused.text());
    deploy(
        &gateway,
        "hello",
        wasmgate_guests::HELLO,
        json!({"namespace": "team-a", "secrets": ["db"]}),
    )
    .await;
    assert_eq!(get(&gateway, "/function/hello.team-a").await.status, 200);
    assert_eq!(
        api(&gateway, "DELETE", "/system/namespace/team-a", None)
            .await
            .status,
        400,
        "still has functions"
    );
    let delete = json!({"functionName": "hello"});
    assert_eq!(
        api(
            &gateway,
            "DELETE",
            "/system/functions?namespace=team-a",
            Some(delete)
        )
        .await
        .status,
        202
    );
    let gone = json!({"name": "db", "namespace": "team-a"});
    assert_eq!(
        api(&gateway, "DELETE", "/system/secrets", Some(gone))
            .await
            .status,
        202
    );
    assert_eq!(
        api(&gateway, "DELETE", "/system/namespace/team-a", None)
            .await
            .status,
        202
    );
    assert_eq!(
        api(&gateway, "DELETE", "/system/namespace/openfaas-fn", None)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn bad_artifacts_are_refused_and_leave_nothing() {
    let gateway = InProcess::start(&[]).await;
    let empty_component = wat::parse_str("(component)").expect("wat");
    let unknown_import =
        wat::parse_str(r#"(component (import "acme:missing/thing" (func)))"#).expect("wat");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "random bytes",
            b"this is not wasm".to_vec(),
            "not a WebAssembly binary",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module",
        ),
        ("no handler", empty_component, "wasi:http/incoming-handler"),
        ("unknown import", unknown_import, "acme:missing/thing"),
        ("empty body", Vec::new(), "empty"),
    ];
    let dir = support::temp_dir("artifacts");
    for (what, bytes, reason) in cases {
        let answer = gateway
            .send(request(
                "POST",
                &gateway,
                "/system/artifacts",
                bytes.clone(),
            ))
            .await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.text());
        assert!(answer.text().contains(reason), "{what}: {}", answer.text());
        // The same bytes deployed from a path are refused the same way.
        if !bytes.is_empty() {
            let path = dir.join(format!("{}.wasm", what.replace(' ', "-")));
            std::fs::write(&path, &bytes).expect("write");
            let body = json!({"service": "bad", "image": path.display().to_string()});
            let answer = api(&gateway, "POST", "/system/functions", Some(body)).await;
            assert_eq!(answer.status, 400, "{what}: {}", answer.text());
            assert!(answer.text().contains(reason), "{what}: {}", answer.text());
        }
    }
    for (image, reason) in [
        (
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "no artifact",
        ),
        ("sha256:nothex", "not a valid sha256"),
        // A registry that is not there (nothing listens on port 1).
        (
            "127.0.0.1:1/acme/hello:1.0",
            "pulling 127.0.0.1:1/acme/hello:1.0",
        ),
        ("/nonexistent/hello.wasm", "cannot read"),
    ] {
        let answer = api(
            &gateway,
            "POST",
            "/system/functions",
            Some(json!({"service": "bad", "image": image})),
        )
        .await;
        assert_eq!(answer.status, 400, "{image}: {}", answer.text());
        assert!(answer.text().contains(reason), "{image}: {}", answer.text());
    }
    let stored: Vec<_> = std::fs::read_dir(gateway.state_dir.join("artifacts"))
        .expect("artifacts dir")
        .collect();
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
    assert_eq!(
        json_of(&api(&gateway, "GET", "/system/functions", None).await),
        json!([])
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_update_lets_running_requests_finish_on_the_old_version() {
    let gateway = Gateway::start(&[]);
    deploy(&gateway, "f", wasmgate_guests::ECHO, json!({})).await;

    // A request to the old version (echo), still sending its body.
    let (mut body_tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    let req = http::Request::post("/function/f")
        .header(http::header::HOST, gateway.addr.to_string())
        .body(body)
        .expect("request");
    let mut sender = support::connect(gateway.addr).await;
    let pending = tokio::spawn(sender.send_request(req));
    body_tx
        .send_data(Bytes::from_static(b"old "))
        .await
        .expect("send");
    let response = pending.await.expect("task").expect("head");
    assert_eq!(response.headers()["x-echo-method"], "POST");

    deploy(&gateway, "f", wasmgate_guests::HELLO, json!({})).await;
    let new = get(&gateway, "/function/f/x").await;
    assert_eq!(
        new.text(),
        "Hello from wasmgate! You asked for /x\n",
        "new requests reach the new version"
    );

    body_tx
        .send_data(Bytes::from_static(b"version"))
        .await
        .expect("send");
    drop(body_tx);
    let old = response
        .into_body()
        .collect()
        .await
        .expect("old body")
        .to_bytes();
    assert_eq!(
        &old[..],
        b"old version",
        "the request started before the update finished on the old one"
    );
}

/// On one node: 200 updates of a function, each with another component, then its removal, leave
/// no component and no compiled code behind once the grace period (1 s here) has passed.
#[tokio::test]
async fn churn_leaves_no_component_behind_on_one_node() {
    use crate::cluster::{bytes_under, variant};
    const UPDATES: usize = 200;
    let state = support::temp_dir("churn");
    let gateway = InProcess::start(&[
        "--state-dir".to_string(),
        state.display().to_string(),
        "--cache-dir".to_string(),
        state.join("cache").display().to_string(),
        "--artifact-grace".to_string(),
        "1s".to_string(),
    ])
    .await;
    let kept = || {
        (
            bytes_under(&state.join("artifacts")),
            bytes_under(&state.join("cache")),
        )
    };
    assert_eq!(kept(), (0, 0));
    let hello = read(wasmgate_guests::HELLO);
    for n in 0..UPDATES {
        let digest = upload(&gateway, variant(&hello, n)).await;
        deploy(&gateway, "churn", &digest, json!({})).await;
    }
    assert_eq!(get(&gateway, "/function/churn").await.status, 200);
    let removed = api(
        &gateway,
        "DELETE",
        "/system/functions",
        Some(json!({"functionName": "churn"})),
    )
    .await;
    assert_eq!(removed.status, 202, "{}", removed.text());
    eventually(
        "every component and its compiled code to be collected",
        || async { kept() == (0, 0) },
    )
    .await;
}

#[tokio::test]
async fn a_restart_restores_every_function() {
    let state = support::temp_dir("restart");
    // The default cache (in the state directory), not the tests' shared one: the restart must find
    // the code this gateway compiled.
    let args = [
        "--state-dir".to_string(),
        state.display().to_string(),
        "--cache-dir".to_string(),
        state.join("cache").display().to_string(),
    ];
    let gateway = Gateway::start(&args);
    let digest = upload(&gateway, read(wasmgate_guests::COUNTER)).await;
    deploy(&gateway, "counter", &digest, json!({})).await;
    deploy(
        &gateway,
        "hello",
        wasmgate_guests::HELLO,
        json!({"envVars": {"A": "1"}}),
    )
    .await;
    assert_eq!(
        api(&gateway, "POST", "/system/namespace/team", None)
            .await
            .status,
        201
    );
    deploy(
        &gateway,
        "hello",
        wasmgate_guests::HELLO,
        json!({"namespace": "team"}),
    )
    .await;
    let scale = json!({"serviceName": "counter", "replicas": 0});
    assert_eq!(
        api(
            &gateway,
            "POST",
            "/system/scale-function/counter",
            Some(scale)
        )
        .await
        .status,
        202
    );
    let before = json_of(&api(&gateway, "GET", "/system/function/hello", None).await);
    gateway.signal("TERM");
    assert!(gateway.wait().success());

    // A damaged record (say, edited by hand) is reported and skipped, not fatal.
    std::fs::write(
        state.join("functions/openfaas-fn/damaged.json"),
        b"{ not json",
    )
    .expect("write");

    let gateway = Gateway::start(&args);
    gateway.wait_for_log(&["skipped a damaged function record", "damaged.json"]);
    assert_eq!(get(&gateway, "/function/damaged").await.status, 404);
    assert_eq!(get(&gateway, "/function/counter").await.text(), "1");
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    assert_eq!(get(&gateway, "/function/hello.team").await.status, 200);
    // Nothing was compiled again: the code came from the disk cache.
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        !metrics.contains("wasmgate_compile_seconds_count{"),
        "recompiled after a restart:\n{metrics}"
    );
    let after = json_of(&api(&gateway, "GET", "/system/function/hello", None).await);
    for key in ["image", "envVars", "createdAt", "namespace"] {
        assert_eq!(after[key], before[key], "{key} changed across the restart");
    }
    assert_eq!(
        json_of(&api(&gateway, "GET", "/system/namespaces", None).await),
        json!(["openfaas-fn", "team"])
    );
    let _ = std::fs::remove_dir_all(state);
}

#[tokio::test]
async fn sigkill_during_deploys_loses_no_acknowledged_deploy() {
    let state = support::temp_dir("sigkill");
    let args = ["--state-dir".to_string(), state.display().to_string()];
    let gateway = Gateway::start(&args);
    let digest = upload(&gateway, read(wasmgate_guests::HELLO)).await;
    let addr = gateway.addr;
    let host = addr.to_string();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let deployer = tokio::spawn(async move {
        for i in 0..1000 {
            let name = format!("f{i}");
            let body = json!({"service": name, "image": digest}).to_string();
            let req = http::Request::post("/system/functions")
                .header(http::header::HOST, &host)
                .body(http_body_util::Full::new(Bytes::from(body)))
                .expect("request");
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            else {
                return;
            };
            tokio::spawn(conn);
            match sender.send_request(req).await {
                Ok(response) if response.status() == 202 => {
                    let _ = acked_tx.send(name);
                }
                _ => return,
            }
        }
    });
    // Kill it in the middle of the loop, after a few deploys were acknowledged.
    let mut acked = Vec::new();
    while acked.len() < 5 {
        acked.push(acked_rx.recv().await.expect("deploys are acknowledged"));
    }
    gateway.signal("KILL");
    let _ = deployer.await;
    while let Ok(name) = acked_rx.try_recv() {
        acked.push(name);
    }
    drop(gateway);

    let gateway = Gateway::start(&args);
    for name in &acked {
        let answer = get(&gateway, &format!("/function/{name}")).await;
        assert_eq!(
            answer.status, 200,
            "{name} was acknowledged before the kill but is gone"
        );
    }
    let listed = json_of(&api(&gateway, "GET", "/system/functions", None).await);
    assert!(listed.as_array().expect("array").len() >= acked.len());
    let _ = std::fs::remove_dir_all(state);
}

#[tokio::test]
async fn basic_auth_guards_every_system_route() {
    let secrets = support::temp_dir("auth");
    std::fs::write(secrets.join("basic-auth-user"), "admin\n").expect("write");
    std::fs::write(secrets.join("basic-auth-password"), "  pa55word \n").expect("write");
    let gateway = Gateway::start(&[
        "--basic-auth-dir".to_string(),
        secrets.display().to_string(),
    ]);
    let routes = [
        ("GET", "/system/functions"),
        ("POST", "/system/functions"),
        ("PUT", "/system/functions"),
        ("DELETE", "/system/functions"),
        ("GET", "/system/function/x"),
        ("POST", "/system/scale-function/x"),
        ("GET", "/system/info"),
        ("GET", "/system/namespaces"),
        ("GET", "/system/namespace/openfaas-fn"),
        ("GET", "/system/secrets"),
        ("POST", "/system/secrets"),
        ("GET", "/system/logs?name=x"),
        ("POST", "/system/artifacts"),
        ("POST", "/system/namespace/"),
        ("POST", "/system/alert"),
    ];
    let good = format!("Basic {}", base64_encode("admin:pa55word"));
    let wrong = format!("Basic {}", base64_encode("admin:wrong"));
    for (method, path) in routes {
        for auth in [None, Some("Bearer "), Some(wrong.as_str())] {
            let mut req = request(method, &gateway, path, Bytes::new());
            if let Some(auth) = auth {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, auth.parse().expect("header"));
            }
            let answer = send(gateway.addr, req).await;
            assert_eq!(answer.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(
                answer.header("www-authenticate"),
                "Basic realm=\"Restricted\""
            );
            assert_eq!(answer.text().trim(), "invalid credentials");
        }
    }
    for path in [
        "/system/functions",
        "/system/info",
        "/system/namespaces",
        "/system/secrets",
    ] {
        let mut req = request("GET", &gateway, path, Bytes::new());
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, good.parse().expect("header"));
        assert_eq!(send(gateway.addr, req).await.status, 200, "{path}");
    }
    let mut req = request(
        "PUT",
        &gateway,
        "/system/functions",
        Bytes::from(json!({"service": "hello", "image": wasmgate_guests::HELLO}).to_string()),
    );
    req.headers_mut()
        .insert(http::header::AUTHORIZATION, good.parse().expect("header"));
    assert_eq!(
        send(gateway.addr, req).await.status,
        404,
        "authorised: the contract's 404 for an unknown function"
    );
    let mut req = request(
        "POST",
        &gateway,
        "/system/functions",
        Bytes::from(json!({"service": "hello", "image": wasmgate_guests::HELLO}).to_string()),
    );
    req.headers_mut()
        .insert(http::header::AUTHORIZATION, good.parse().expect("header"));
    assert_eq!(send(gateway.addr, req).await.status, 202);
    // Invocation stays open, and an empty bearer token from faas-cli is ignored.
    let mut req = request("GET", &gateway, "/function/hello", Bytes::new());
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        "Bearer ".parse().expect("header"),
    );
    assert_eq!(send(gateway.addr, req).await.status, 200);
    assert_eq!(get(&gateway, "/healthz").await.status, 200);
    assert_eq!(get(&gateway, "/metrics").await.status, 200);

    // Without credentials, a non-loopback address is refused.
    let state = support::temp_dir("noauth");
    let (status, stderr) = run_to_exit(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--state-dir",
        &state.display().to_string(),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("without credentials"), "{stderr}");
    let _ = std::fs::remove_dir_all(secrets);
    let _ = std::fs::remove_dir_all(state);
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn logs_tail_and_follow() {
    let gateway = Gateway::start(&[]);
    deploy(&gateway, "hello", wasmgate_guests::HELLO, json!({})).await;
    let before = crate::support::rfc3339(SystemTime::now() - std::time::Duration::from_secs(60));
    for i in 0..3 {
        assert_eq!(
            get(&gateway, &format!("/function/hello/{i}")).await.status,
            200
        );
    }
    let answer = api(
        &gateway,
        "GET",
        "/system/logs?name=hello&namespace=openfaas-fn&tail=2",
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), "application/x-ndjson");
    let lines: Vec<Value> = answer
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], "hello called for /1");
    assert_eq!(lines[1]["text"], "hello called for /2");
    assert_eq!(
        (lines[1]["name"].clone(), lines[1]["namespace"].clone()),
        (json!("hello"), json!("openfaas-fn"))
    );
    assert!(crate::support::is_rfc3339(
        lines[1]["timestamp"].as_str().expect("timestamp")
    ));
    assert!(lines[1]["instance"].is_string());
    let since = api(
        &gateway,
        "GET",
        &format!("/system/logs?name=hello&since={before}"),
        None,
    )
    .await;
    assert_eq!(since.text().lines().count(), 3);
    let future = crate::support::rfc3339(SystemTime::now() + std::time::Duration::from_secs(3600));
    assert_eq!(
        api(
            &gateway,
            "GET",
            &format!("/system/logs?name=hello&since={future}"),
            None
        )
        .await
        .text(),
        ""
    );

    for bad in [
        "/system/logs",
        "/system/logs?name=hello&tail=x",
        "/system/logs?name=hello&since=yesterday",
        "/system/logs?name=hello&follow=maybe",
    ] {
        assert_eq!(api(&gateway, "GET", bad, None).await.status, 422, "{bad}");
    }
    assert_eq!(
        api(&gateway, "GET", "/system/logs?name=nope", None)
            .await
            .status,
        404
    );

    // Follow: the stream stays open and carries new lines as they are written.
    let req = request(
        "GET",
        &gateway,
        "/system/logs?name=hello&tail=0&follow=true",
        Bytes::new(),
    );
    let mut sender = support::connect(gateway.addr).await;
    let response = sender.send_request(req).await.expect("head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert_eq!(get(&gateway, "/function/hello/live").await.status, 200);
    let frame = body.frame().await.expect("a line").expect("no error");
    let line: Value = serde_json::from_slice(frame.data_ref().expect("data")).expect("NDJSON");
    assert_eq!(line["text"], "hello called for /live");
}

#[tokio::test]
async fn metrics_count_real_calls() {
    let gateway = InProcess::start(&[]).await;
    deploy(&gateway, "hello", wasmgate_guests::HELLO, json!({})).await;
    deploy(&gateway, "trap", wasmgate_guests::TRAP, json!({})).await;
    for _ in 0..3 {
        assert_eq!(
            get(&gateway, "/function/hello.openfaas-fn").await.status,
            200
        );
    }
    assert_eq!(get(&gateway, "/function/trap").await.status, 500);
    assert_eq!(get(&gateway, "/function/made-up").await.status, 404);
    let metrics = get(&gateway, "/metrics");
    let answer = metrics.await;
    assert!(
        answer
            .header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = answer.text();
    for expected in [
        "gateway_function_invocation_total{function_name=\"hello.openfaas-fn\",code=\"200\"} 3",
        "gateway_function_invocation_total{function_name=\"trap.openfaas-fn\",code=\"500\"} 1",
        "gateway_function_invocation_started{function_name=\"hello.openfaas-fn\"} 3",
        "gateway_functions_seconds_count{function_name=\"hello.openfaas-fn\",code=\"200\"} 3",
        "gateway_service_count{function_name=\"hello.openfaas-fn\"} 1",
        "wasmgate_functions_loaded 2",
        // Four calls found their code loaded (three hello, one trap); none had to load it.
        "wasmgate_cache_hits_total 4",
        "wasmgate_cache_misses_total 0",
        "# TYPE wasmgate_instantiation_seconds histogram",
        "# TYPE wasmgate_compile_seconds histogram",
        "# TYPE wasmgate_instances_in_use gauge",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    assert!(!text.contains("made-up"), "unknown names get no series");
}

#[tokio::test]
async fn idle_functions_scale_to_zero_and_back() {
    let gateway = Gateway::start(&[]);
    let labels = json!({"labels": {"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "1s"}});
    deploy(&gateway, "hello", wasmgate_guests::HELLO, labels).await;
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    eventually("hello to scale to zero", || async {
        json_of(&api(&gateway, "GET", "/system/function/hello", None).await)["availableReplicas"]
            == 0
    })
    .await;
    gateway.wait_for_log(&["scaled to zero after being idle", "hello.openfaas-fn"]);
    // The list, describe and /metrics agree on the replicas, at zero and after the cold start.
    let replicas_everywhere = async || {
        let described =
            json_of(&api(&gateway, "GET", "/system/function/hello", None).await)["replicas"]
                .clone();
        let listed = json_of(&api(&gateway, "GET", "/system/functions", None).await)
            .as_array()
            .and_then(|list| list.iter().find(|f| f["name"] == "hello").cloned())
            .expect("hello is listed")["replicas"]
            .clone();
        let metrics = get(&gateway, "/metrics").await.text();
        let counted = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("gateway_service_count{function_name=\"hello.openfaas-fn\"} ")
            })
            .map(|n| n.to_string());
        (described, listed, counted)
    };
    assert_eq!(
        replicas_everywhere().await,
        (json!(0), json!(0), Some("0".to_string()))
    );
    assert_eq!(
        get(&gateway, "/function/hello").await.status,
        200,
        "scale from zero is transparent"
    );
    assert_eq!(
        replicas_everywhere().await,
        (json!(1), json!(1), Some("1".to_string()))
    );
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains("wasmgate_cold_starts_total{function_name=\"hello.openfaas-fn\"} 1"),
        "{metrics}"
    );
    let bad = json!({"service": "x", "image": wasmgate_guests::HELLO, "labels": {"com.openfaas.scale.zero-duration": "soon"}});
    assert_eq!(
        api(&gateway, "POST", "/system/functions", Some(bad))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn instance_reuse_is_opt_in_and_bounded() {
    let gateway = InProcess::start(&[]).await;
    deploy(&gateway, "fresh", wasmgate_guests::COUNTER, json!({})).await;
    let reuse = json!({"annotations": {"com.wasmgate.instance-reuse": "2"}});
    deploy(&gateway, "reused", wasmgate_guests::COUNTER, reuse).await;
    let mut fresh = Vec::new();
    let mut reused = Vec::new();
    for _ in 0..4 {
        fresh.push(get(&gateway, "/function/fresh").await.text());
        reused.push(get(&gateway, "/function/reused").await.text());
    }
    assert_eq!(
        fresh,
        ["1", "1", "1", "1"],
        "per-request instances by default"
    );
    assert_eq!(
        reused,
        ["1", "2", "1", "2"],
        "two requests per instance when asked"
    );
    let bad = json!({"service": "x", "image": wasmgate_guests::COUNTER, "annotations": {"com.wasmgate.instance-reuse": "lots"}});
    let answer = api(&gateway, "POST", "/system/functions", Some(bad)).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.text().contains("com.wasmgate.instance-reuse"),
        "{}",
        answer.text()
    );
}
