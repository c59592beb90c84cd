//! faas-cli's requests, replayed as its Go sources send them, with the status and body faas-cli needs
//! to report success. CI cannot download faas-cli, so these tests are what keeps it working
//! unchanged against wasmgate.
//!
//! Read from openfaas/faas-cli (commit c8191b7, July 2026) and the OpenFaaS go-sdk it vendors, and
//! checked against that faas-cli built from source (`OPENFAAS_DUMP_HTTP=true` and `FAAS_DEBUG=1`
//! print what it sends):
//! - `deploy`, `secret`, `logs` go through faas-cli's own client (`proxy/`): `User-Agent:
//!   faas-cli/<version>`, `Content-Type: application/json` when there is a body, and
//!   `Authorization: Bearer ` (an empty token) when not logged in;
//! - `namespace` and `invoke` go through the go-sdk (`User-Agent: openfaas-go-sdk`, no
//!   `Authorization` when not logged in; `invoke` sets faas-cli's own agent);
//! - Go's transport adds `Accept-Encoding: gzip` and `Content-Length`;
//! - JSON fields are in the order of the Go structs, empty ones left out as their tags say.
//!
//! Over 600 lines: one test per faas-cli command family, each spelling out the exact requests.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::{self, Gateway, InProcess, Target, eventually, temp_dir};

/// The version a faas-cli built from source calls itself.
const FAAS_CLI_AGENT: &str = "faas-cli/dev";
/// What the go-sdk sends as its agent.
const SDK_AGENT: &str = "openfaas-go-sdk";

/// Which of faas-cli's two HTTP clients sends a request: each has its own headers.
#[derive(Clone, Copy)]
enum Client {
    /// faas-cli's `proxy` package, not logged in.
    Proxy,
    /// The OpenFaaS go-sdk, not logged in.
    Sdk,
}

/// A request as faas-cli's Go client puts it on the wire.
fn faas_cli(
    client: Client,
    gateway: &impl Target,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> http::Request<http_body_util::Full<Bytes>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", gateway.host())
        .header("accept-encoding", "gzip");
    builder = match client {
        // Go trims the space off `Bearer ` when it writes the header.
        Client::Proxy => builder
            .header("user-agent", FAAS_CLI_AGENT)
            .header("authorization", "Bearer"),
        Client::Sdk => builder.header("user-agent", SDK_AGENT),
    };
    let body = match body {
        Some(body) => {
            builder = builder
                .header("content-type", "application/json")
                .header("content-length", body.len());
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    builder
        .body(http_body_util::Full::new(body))
        .expect("a valid request")
}

fn json_of(answer: &support::Answer) -> Value {
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.text()))
}

/// faas-cli's `deploy` of one function: PUT, and POST when the PUT answers 404 (`proxy/deploy.go`);
/// the final status faas-cli reports success on is 200, 201 or 202.
async fn deploy_as_faas_cli(gateway: &impl Target, body: &str) -> (u16, support::Answer) {
    let put = gateway
        .send(faas_cli(
            Client::Proxy,
            gateway,
            "PUT",
            "/system/functions",
            Some(body),
        ))
        .await;
    if put.status != 404 {
        return (put.status.as_u16(), put);
    }
    let post = gateway
        .send(faas_cli(
            Client::Proxy,
            gateway,
            "POST",
            "/system/functions",
            Some(body),
        ))
        .await;
    (404, post)
}

/// `faas-cli namespace create|update|get|delete` (go-sdk `CreateNamespace`, `UpdateNamespace`,
/// `GetNamespace`, `DeleteNamespace`). Create sends `POST /system/namespace/`: an empty name in
/// the path, the name in the body only.
#[tokio::test]
async fn namespace_create_update_delete_as_faas_cli_sends_them() {
    let gateway = InProcess::start(&[]).await;
    let send = |method: &'static str, path: &'static str, body: Option<&'static str>| {
        gateway.send(faas_cli(Client::Sdk, &gateway, method, path, body))
    };
    let create = r#"{"name":"team-a","annotations":{"openfaas":"1"},"labels":{"openfaas":"1"}}"#;
    let created = send("POST", "/system/namespace/", Some(create)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let got = send("GET", "/system/namespace/team-a", None).await;
    assert_eq!(got.status, 200);
    let got = json_of(&got);
    assert_eq!(got["name"], "team-a");
    assert_eq!(got["labels"], json!({"openfaas": "1"}));
    assert_eq!(got["annotations"], json!({"openfaas": "1"}));
    let listed = json_of(&send("GET", "/system/namespaces", None).await);
    assert_eq!(listed, json!(["openfaas-fn", "team-a"]));

    // Creating it again: faas-cli prints the gateway's reason.
    let again = send("POST", "/system/namespace/", Some(create)).await;
    assert_eq!(again.status, 409, "{}", again.text());

    // `faas-cli namespace update team-a --label env=dev`.
    let update =
        r#"{"name":"team-a","annotations":{"openfaas":"1"},"labels":{"env":"dev","openfaas":"1"}}"#;
    let updated = send("PUT", "/system/namespace/team-a", Some(update)).await;
    assert_eq!(updated.status, 202, "{}", updated.text());
    let got = json_of(&send("GET", "/system/namespace/team-a", None).await);
    assert_eq!(got["labels"], json!({"env": "dev", "openfaas": "1"}));
    let unknown = send(
        "PUT",
        "/system/namespace/team-z",
        Some(r#"{"name":"team-z","annotations":{"openfaas":"1"},"labels":{"openfaas":"1"}}"#),
    )
    .await;
    assert_eq!(
        unknown.status, 404,
        "faas-cli says: namespace team-z not found"
    );

    // `faas-cli namespace delete team-a`.
    let deleted = send(
        "DELETE",
        "/system/namespace/team-a",
        Some(r#"{"name":"team-a","labels":{"openfaas":"1"}}"#),
    )
    .await;
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    let listed = json_of(&send("GET", "/system/namespaces", None).await);
    assert_eq!(listed, json!(["openfaas-fn"]));

    // What is not faas-cli's: a path and a body that disagree, and no name at all.
    let mismatch = send(
        "POST",
        "/system/namespace/team-b",
        Some(r#"{"name":"team-c"}"#),
    )
    .await;
    assert_eq!(mismatch.status, 400);
    assert!(
        mismatch.text().contains("\"team-b\"") && mismatch.text().contains("\"team-c\""),
        "{}",
        mismatch.text()
    );
    let unnamed = send("POST", "/system/namespace/", Some("{}")).await;
    assert_eq!(unnamed.status, 400);
    assert!(
        unnamed.text().contains("no namespace named"),
        "{}",
        unnamed.text()
    );
    let bad = send("POST", "/system/namespace/", Some(r#"{"name":"Team_A"}"#)).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
}

/// `faas-cli deploy -f stack.yml` with `image: /path/hello.wasm`: faas-cli appends `:latest` to an
/// image without a tag (`schema.BuildImageName`), always sends `labels` and `annotations`, and leaves
/// out an empty `envVars` and the namespace it was not given. Deploying again is the update.
#[tokio::test]
async fn deploy_and_update_from_a_stack_file_as_faas_cli_sends_them() {
    let gateway = InProcess::start(&[]).await;
    let image = format!("{}:latest", wasmgate_guests::HELLO);
    let body =
        format!(r#"{{"service":"hello","image":"{image}","labels":{{}},"annotations":{{}}}}"#);
    let (first, deployed) = deploy_as_faas_cli(&gateway, &body).await;
    assert_eq!(first, 404, "faas-cli POSTs only after the PUT's 404");
    assert_eq!(deployed.status, 202, "{}", deployed.text());

    // `faas-cli invoke hello` (go-sdk `InvokeFunction`): always `name.openfaas-fn`.
    let mut invoke = faas_cli(
        Client::Sdk,
        &gateway,
        "POST",
        "/function/hello.openfaas-fn",
        None,
    );
    let headers = invoke.headers_mut();
    headers.insert(
        "user-agent",
        "faas-cli/dev (openfaas; linux; amd64)"
            .parse()
            .expect("value"),
    );
    headers.insert("content-type", "text/plain".parse().expect("value"));
    let answered = gateway.send(invoke).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.text(), "Hello from wasmgate! You asked for /\n");

    // The update: the same deploy with `environment:` in the stack file.
    let body = format!(
        r#"{{"service":"hello","image":"{image}","envVars":{{"GREETING":"hi"}},"labels":{{}},"annotations":{{}}}}"#
    );
    let (status, updated) = deploy_as_faas_cli(&gateway, &body).await;
    assert_eq!(status, 202, "{}", updated.text());
    let described = gateway
        .send(faas_cli(
            Client::Proxy,
            &gateway,
            "GET",
            "/system/function/hello?usage=1",
            None,
        ))
        .await;
    let described = json_of(&described);
    assert_eq!(
        described["image"],
        image.as_str(),
        "the image as faas-cli sent it"
    );
    assert_eq!(described["envVars"], json!({"GREETING": "hi"}));

    // A tag of the user's own on a path means nothing: refused, with the reason.
    let tagged = format!(
        r#"{{"service":"tagged","image":"{}:v2","labels":{{}},"annotations":{{}}}}"#,
        wasmgate_guests::HELLO
    );
    let (_, refused) = deploy_as_faas_cli(&gateway, &tagged).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("a path has no tags"),
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("\"v2\""), "{}", refused.text());
}

/// `faas-cli secret create|list|update|remove` (`proxy/secret.go`): `value` for a literal or stdin,
/// `value` and `rawValue` (base64) for `--from-file`; the namespace only when `-n` is given.
#[tokio::test]
async fn secrets_as_faas_cli_sends_them() {
    let gateway = InProcess::start(&[]).await;
    let send = |method: &'static str, body: Option<&'static str>| {
        gateway.send(faas_cli(
            Client::Proxy,
            &gateway,
            method,
            "/system/secrets",
            body,
        ))
    };
    // faas-cli reports success on 200, 201 and 202, and "already exists" on 409.
    let created = send("POST", Some(r#"{"name":"db-password","value":"s3cr3t"}"#)).await;
    assert_eq!(created.status, 202, "{}", created.text());
    let from_file = r#"{"name":"api-key","value":"from-a-file","rawValue":"ZnJvbS1hLWZpbGU="}"#;
    assert_eq!(send("POST", Some(from_file)).await.status, 202);
    assert_eq!(send("POST", Some(from_file)).await.status, 409);

    let listed = send("GET", None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        json_of(&listed),
        json!([
            {"name": "api-key", "namespace": "openfaas-fn"},
            {"name": "db-password", "namespace": "openfaas-fn"}
        ])
    );

    let update = r#"{"name":"db-password","value":"n3w"}"#;
    assert_eq!(send("PUT", Some(update)).await.status, 202);
    let unknown = send("PUT", Some(r#"{"name":"nope","value":"x"}"#)).await;
    assert_eq!(unknown.status, 404, "faas-cli says: unable to find secret");

    assert_eq!(
        send("DELETE", Some(r#"{"name":"api-key"}"#)).await.status,
        202
    );
    assert_eq!(
        send("DELETE", Some(r#"{"name":"api-key"}"#)).await.status,
        404
    );
    let listed = json_of(&send("GET", None).await);
    assert_eq!(
        listed,
        json!([{"name": "db-password", "namespace": "openfaas-fn"}])
    );
}

/// The texts of `GET /system/logs` as faas-cli reads it: a JSON object per line (a Go
/// `json.Decoder` over the body), each with the fields of `logs.Message`.
fn log_texts(answer: &support::Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), "application/x-ndjson");
    answer
        .text()
        .lines()
        .map(|line| {
            let message: Value = serde_json::from_str(line).expect("a JSON line");
            for field in ["name", "namespace", "instance", "timestamp", "text"] {
                assert!(message[field].is_string(), "{field} in {line}");
            }
            message["text"].as_str().expect("text").to_string()
        })
        .collect()
}

/// `faas-cli logs pieces --tail=false [--lines N]`: `follow`, `name`, and `tail` (-1 unless
/// `--lines`), in the order Go's `url.Values` encodes them.
async fn logs_as_faas_cli(gateway: &impl Target, name: &str, lines: i32) -> Vec<String> {
    let path = format!("/system/logs?follow=false&name={name}&tail={lines}");
    log_texts(
        &gateway
            .send(faas_cli(Client::Proxy, gateway, "GET", &path, None))
            .await,
    )
}

/// How many of a `pieces` guest's requests have ended: its last line, `unfinished`, has no newline
/// and ends when its request does.
fn ended(texts: &[String]) -> usize {
    texts.iter().filter(|t| t.contains("unfinished")).count()
}

/// The `pieces` guest writes its lines in pieces, through a new stream for each piece; `faas-cli
/// logs` shows each line whole, an unfinished line as a line when its request ends, and a line past
/// the 16 KiB bound cut there. With instance reuse, a request's unfinished line does not run into
/// the next request's output.
#[tokio::test]
pub async fn pieces() {
    let gateway = InProcess::with_all_guests().await;
    let whole = [
        "start a print 1234",
        "std a print 1234",
        "err in pieces",
        "unfinished",
    ];
    let mut invoke = faas_cli(
        Client::Sdk,
        &gateway,
        "POST",
        "/function/pieces.openfaas-fn?a=b",
        None,
    );
    invoke
        .headers_mut()
        .insert("content-type", "text/plain".parse().expect("value"));
    let answered = gateway.send(invoke).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.text(), "ok");
    eventually("the unfinished line", || async {
        ended(&logs_as_faas_cli(&gateway, "pieces", -1).await) == 1
    })
    .await;
    assert_eq!(logs_as_faas_cli(&gateway, "pieces", -1).await, whole);
    assert_eq!(logs_as_faas_cli(&gateway, "pieces", 2).await, whole[2..]);

    // A line longer than the bound, written 1000 bytes at a time: cut at 16 KiB.
    let long = gateway
        .send(support::request(
            "GET",
            &gateway,
            "/function/pieces?long=20000",
            Bytes::new(),
        ))
        .await;
    assert_eq!(long.status, 200);
    eventually("the second request's unfinished line", || async {
        ended(&logs_as_faas_cli(&gateway, "pieces", -1).await) == 2
    })
    .await;
    let texts = logs_as_faas_cli(&gateway, "pieces", -1).await;
    let lengths: Vec<usize> = texts[whole.len() + 3..whole.len() + 5]
        .iter()
        .map(String::len)
        .collect();
    assert_eq!(lengths, [16 * 1024, 20000 - 16 * 1024], "{texts:?}");
    assert!(
        texts[whole.len() + 3..whole.len() + 5]
            .iter()
            .all(|t| t.bytes().all(|b| b == b'x'))
    );

    // An instance kept for the next request: its unfinished line still ends with the request.
    support::deploy(
        &gateway,
        "reused",
        wasmgate_guests::PIECES,
        json!({"annotations": {"com.wasmgate.instance-reuse": "4"}}),
    )
    .await;
    for _ in 0..2 {
        let answer = support::get(&gateway, "/function/reused").await;
        assert_eq!(answer.status, 200);
    }
    eventually(
        "each request's unfinished line to end with its request, on an instance kept for reuse",
        || async { ended(&logs_as_faas_cli(&gateway, "reused", -1).await) == 2 },
    )
    .await;
    assert_eq!(
        logs_as_faas_cli(&gateway, "reused", -1).await,
        [whole, whole].concat()
    );
}

/// Every route answers a method it does not serve with 405 and its methods in `Allow` (RFC 9110),
/// and no method it lists is refused with 405.
#[tokio::test]
async fn each_route_lists_its_methods_in_allow() {
    let gateway = InProcess::with_all_guests().await;
    let artifact = format!("/system/artifacts/sha256:{}", "0".repeat(64));
    let routes: [(&str, &str); 18] = [
        ("/healthz", "GET, HEAD"),
        ("/readyz", "GET, HEAD"),
        ("/metrics", "GET, HEAD"),
        ("/system/functions", "GET, POST, PUT, DELETE"),
        ("/system/function/hello", "GET"),
        ("/system/scale-function/hello", "POST"),
        ("/system/info", "GET"),
        ("/system/namespaces", "GET"),
        ("/system/namespace/", "GET, POST, PUT, DELETE"),
        ("/system/namespace/nope", "GET, POST, PUT, DELETE"),
        ("/system/secrets", "GET, POST, PUT, DELETE"),
        ("/system/logs?name=hello", "GET"),
        ("/system/alert", "POST"),
        ("/system/artifacts", "POST"),
        (&artifact, "GET, HEAD"),
        ("/system/async/some-call", "GET"),
        (
            "/function/hello",
            "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD",
        ),
        ("/async-function/hello", "POST, DELETE"),
    ];
    let all = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
    ];
    for (path, allow) in routes {
        let listed: Vec<&str> = allow.split(", ").collect();
        for method in all {
            let answer = gateway
                .send(support::request(method, &gateway, path, Bytes::new()))
                .await;
            if listed.contains(&method) {
                assert_ne!(answer.status, 405, "{method} {path}: {}", answer.text());
            } else {
                assert_eq!(answer.status, 405, "{method} {path}: {}", answer.text());
                assert_eq!(answer.header("allow"), allow, "{method} {path}");
            }
        }
    }
    let unknown = support::get(&gateway, "/system/nothing").await;
    assert_eq!(unknown.status, 404);
}

/// `POST /system/alert`, the AlertManager webhook OpenFaaS scales with: behind basic auth like the
/// rest of `/system`, 200 for an AlertManager payload, and nothing changes (every request gets an
/// instance already); a body that is not one is 400, as OpenFaaS answers.
#[tokio::test]
async fn the_alert_webhook_is_accepted_and_changes_nothing() {
    let secrets = temp_dir("alert-auth");
    std::fs::write(secrets.join("basic-auth-user"), "admin").expect("write");
    std::fs::write(secrets.join("basic-auth-password"), "pa55").expect("write");
    let mut args = support::all_guests();
    args.extend([
        "--basic-auth-dir".to_string(),
        secrets.display().to_string(),
    ]);
    let gateway = InProcess::start(&args).await;
    let authorised = |mut request: http::Request<http_body_util::Full<Bytes>>| {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode("admin:pa55");
        request.headers_mut().insert(
            "authorization",
            format!("Basic {token}").parse().expect("value"),
        );
        request
    };
    // What AlertManager posts for OpenFaaS's `APIHighInvocationRate` rule.
    let alert = json!({
        "receiver": "scale-up",
        "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "APIHighInvocationRate", "function_name": "hello", "code": "200"},
            "annotations": {"description": "High invocation total on hello"},
            "startsAt": "2026-12-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z"
        }],
        "groupLabels": {"alertname": "APIHighInvocationRate", "service": "gateway"},
        "commonLabels": {"alertname": "APIHighInvocationRate"},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"APIHighInvocationRate\"}"
    })
    .to_string();
    let post = |body: &str| support::request("POST", &gateway, "/system/alert", body.to_string());

    let unauthorised = gateway.send(post(&alert)).await;
    assert_eq!(unauthorised.status, 401);
    let before = gateway
        .send(authorised(support::request(
            "GET",
            &gateway,
            "/system/function/hello",
            Bytes::new(),
        )))
        .await;
    let accepted = gateway.send(authorised(post(&alert))).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert!(accepted.body.is_empty());
    let after = gateway
        .send(authorised(support::request(
            "GET",
            &gateway,
            "/system/function/hello",
            Bytes::new(),
        )))
        .await;
    assert_eq!(json_of(&after)["replicas"], json_of(&before)["replicas"]);
    let refused = gateway.send(authorised(post("not an alert"))).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("invalid JSON"),
        "{}",
        refused.text()
    );
    let _ = std::fs::remove_dir_all(secrets);
}

/// The fields of faas-cli's `stack.LanguageTemplate`, which it reads from
/// `template/<lang>/template.yml`.
const LANGUAGE_TEMPLATE_FIELDS: [&str; 6] = [
    "language",
    "fprocess",
    "build_options",
    "welcome_message",
    "handler_folder",
    "mount_ssh",
];

/// `wasmgate new` then `faas-cli deploy -f stack.yml`: faas-cli first reads
/// `./template/<lang>/template.yml` (and stops when it is missing), then sends the stack's relative
/// `image` with `:latest`, which the gateway reads from its own working directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_from_wasmgate_new_deploys_with_faas_cli() {
    let project = temp_dir("faas-cli-new");
    // Started before the stack file exists, so that it does not serve it itself.
    let gateway = Gateway::start_in(Some(&project), &[]);
    let new = |name: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["new", name, "--lang", "rust"])
            .current_dir(&project)
            .output()
            .expect("run wasmgate new");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    new("greeter");

    // What faas-cli reads before it sends anything.
    let template = project.join("template/rust/template.yml");
    let text = std::fs::read_to_string(&template).expect("wasmgate new writes the template file");
    let parsed: serde_norway::Mapping = serde_norway::from_str(&text).expect("YAML");
    for key in parsed.keys() {
        let key = key.as_str().expect("a string key");
        assert!(
            LANGUAGE_TEMPLATE_FIELDS.contains(&key),
            "{key} is not faas-cli's"
        );
    }
    assert_eq!(
        parsed.get("language").and_then(|v| v.as_str()),
        Some("rust")
    );
    assert!(
        parsed.get("fprocess").is_none(),
        "no fprocess, so faas-cli sends no envProcess"
    );

    // What `wasmgate build` would leave where the stack file says.
    let stack: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(project.join("stack.yml")).expect("stack"))
            .expect("YAML");
    let function = &stack["functions"]["greeter"];
    assert_eq!(function["lang"].as_str(), Some("rust"));
    let image = function["image"].as_str().expect("an image").to_string();
    assert!(!image.starts_with('/'), "a relative path: {image}");
    let component = project.join(&image);
    std::fs::create_dir_all(component.parent().expect("a folder")).expect("mkdir");
    std::fs::copy(wasmgate_guests::HELLO, &component).expect("copy the component");

    let body = format!(
        r#"{{"service":"greeter","image":"{image}:latest","labels":{{}},"annotations":{{}}}}"#
    );
    let (first, deployed) = deploy_as_faas_cli(&gateway, &body).await;
    assert_eq!(first, 404);
    assert_eq!(deployed.status, 202, "{}", deployed.text());
    let answer = support::get(&gateway, "/function/greeter.openfaas-fn").await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    // `image: ./hello.wasm`, and a relative folder with a dot in its name, which is no registry.
    std::fs::copy(wasmgate_guests::HELLO, project.join("hello.wasm")).expect("copy");
    std::fs::create_dir_all(project.join("fns.v1")).expect("mkdir");
    std::fs::copy(wasmgate_guests::HELLO, project.join("fns.v1/hello.wasm")).expect("copy");
    for (name, image) in [("dot", "./hello.wasm"), ("dotted", "fns.v1/hello.wasm")] {
        let body = format!(
            r#"{{"service":"{name}","image":"{image}:latest","labels":{{}},"annotations":{{}}}}"#
        );
        let (_, deployed) = deploy_as_faas_cli(&gateway, &body).await;
        assert_eq!(deployed.status, 202, "{image}: {}", deployed.text());
    }
    // A relative path the gateway cannot read says where it looked.
    let body =
        r#"{"service":"gone","image":"gone/hello.wasm:latest","labels":{},"annotations":{}}"#;
    let (_, refused) = deploy_as_faas_cli(&gateway, body).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("the gateway's working directory"),
        "{}",
        refused.text()
    );

    // A second function keeps the template file as the user left it.
    std::fs::write(&template, "language: rust\n# mine\n").expect("edit");
    new("second");
    assert_eq!(
        std::fs::read_to_string(&template).expect("read"),
        "language: rust\n# mine\n"
    );
    drop(gateway);
    let _ = std::fs::remove_dir_all(project);
}
