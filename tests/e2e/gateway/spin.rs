//! Spin apps: a `spin.toml` with components built from crates.io's `spin-sdk` 5.2.0
//! (`guests/functions/spin5-*`, wasi:http 0.2) and 7.0.0 (`spin7-app`, wasi:http 0.3), deployed through the API, the CLI and `serve -f`, and reached as
//! Spin would route them: wildcard and exact routes, the `spin-*` headers, a private component
//! reached only through `http://back.spin.internal`, self-requests, variables (one from a secret,
//! one from `envVars`), key-value and SQLite kept across a restart, and the refusals.

use serde_json::json;

use crate::support::{Gateway, InProcess, Target, Upstream, api, get, request, temp_dir, upload};

/// The app of the tests: `front` on three routes, `seven` on one, `back` private. With `required_secret`, the
/// secret variable `api_token` must have a value (from the secret `api-token`).
fn manifest(required_secret: bool) -> String {
    let token = if required_secret {
        "api_token = { required = true, secret = true }"
    } else {
        "api_token = { default = \"none\", secret = true }"
    };
    format!(
        r#"spin_manifest_version = 2

[application]
name = "spinapp"
version = "0.1.0"

[variables]
greeting = {{ default = "hello" }}
mode = {{ default = "slow" }}
{token}

[[trigger.http]]
route = "/api/..."
component = "front"

[[trigger.http]]
route = "/api/exact"
component = "front"

[[trigger.http]]
route = "/front/..."
component = "front"

[[trigger.http]]
route = "/named/:user/..."
component = "front"

[[trigger.http]]
route = "/v7/..."
component = "seven"

[[trigger.http]]
route = {{ private = true }}
component = "back"

[component.front]
source = "{front}"
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = ["http://back.spin.internal", "http://self"]
[component.front.variables]
message = "{{{{ greeting }}}}, {{{{ mode }}}}"
[component.front.build]
command = "cargo build --target wasm32-wasip2 --release"

[component.back]
source = "{back}"
[component.back.variables]
token = "token-{{{{ api_token }}}}"

[component.seven]
source = "{seven}"
key_value_stores = ["default"]
sqlite_databases = ["default"]
[component.seven.variables]
greeting = "{{{{ greeting }}}} from spin-sdk 7"
"#,
        front = wasmgate_guests::SPIN5_FRONT,
        back = wasmgate_guests::SPIN5_BACK,
        seven = wasmgate_guests::SPIN7_APP,
    )
}

/// Deploys `manifest` through the API as the CLI does: its components uploaded, their digests in
/// the sources annotation. Returns the answer.
async fn deploy_app(
    gateway: &impl Target,
    manifest: &str,
    extra: serde_json::Value,
) -> crate::support::Answer {
    let app = wasmgate_spin::App::parse(manifest).expect("a valid manifest");
    let mut sources = Vec::new();
    for (name, component) in &app.components {
        let wasm = std::fs::read(&component.source).expect("a built guest");
        sources.push(format!("{name}={}", upload(gateway, wasm).await));
    }
    deploy_with_sources(gateway, manifest, &sources.join(","), extra).await
}

/// Deploys `manifest` with the sources annotation `sources` (`COMPONENT=IMAGE,...`).
async fn deploy_with_sources(
    gateway: &impl Target,
    manifest: &str,
    sources: &str,
    extra: serde_json::Value,
) -> crate::support::Answer {
    let mut body = json!({
        "service": "spinapp",
        "image": "spin.toml",
        "annotations": {
            "com.wasmgate.spin.manifest": manifest,
            "com.wasmgate.spin.sources": sources,
        },
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    api(gateway, "POST", "/system/functions", Some(body)).await
}

/// `method` `path` with `body`, answered.
pub(crate) async fn send(
    gateway: &impl Target,
    method: &str,
    path: &str,
    body: &str,
) -> crate::support::Answer {
    gateway
        .send(request(method, gateway, path, body.to_string()))
        .await
}

async fn secret(gateway: &impl Target, method: &str, value: &str) {
    let body = json!({"name": "api-token", "value": value});
    let answer = api(gateway, method, "/system/secrets", Some(body)).await;
    assert!(answer.status.is_success(), "{}", answer.text());
}

/// `name: value` lines of the front component's header report.
fn header_of(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

/// `spin5-front`: Spin's routing (the longest wildcard, exact before wildcard, no route 404), the
/// `spin-*` headers, variables from defaults and `envVars`, key-value and SQLite and their refusal
/// of an unlisted store or database, a self-request, and the app as one OpenFaaS function in list, describe, metrics.
#[tokio::test]
pub async fn spin5_front() {
    let gateway = InProcess::start(&[]).await;
    secret(&gateway, "POST", "s3cret").await;
    let deployed = deploy_app(
        &gateway,
        &manifest(true),
        json!({"envVars": {"SPIN_VARIABLE_MODE": "fast"}}),
    )
    .await;
    assert_eq!(deployed.status, 202, "{}", deployed.text());

    let wildcard = get(&gateway, "/function/spinapp/api/users/7?page=2").await;
    assert_eq!(wildcard.status, 200, "{}", wildcard.text());
    let text = wildcard.text();
    assert!(text.starts_with("front GET /api/users/7\n"), "{text}");
    assert_eq!(header_of(&text, "spin-path-info"), "/users/7");
    assert_eq!(header_of(&text, "spin-matched-route"), "/api/...");
    assert_eq!(header_of(&text, "spin-raw-component-route"), "/api/...");
    assert_eq!(header_of(&text, "spin-component-route"), "/api");
    assert_eq!(header_of(&text, "spin-base-path"), "/");
    assert_eq!(
        header_of(&text, "spin-full-url"),
        "http://127.0.0.1:8080/function/spinapp/api/users/7?page=2"
    );
    // No socket in process: Spin's address for a client it cannot name.
    assert_eq!(header_of(&text, "spin-client-addr"), "0.0.0.0:0");

    let exact = get(&gateway, "/function/spinapp/api/exact").await.text();
    assert_eq!(header_of(&exact, "spin-matched-route"), "/api/exact");
    assert_eq!(header_of(&exact, "spin-path-info"), "");
    let deeper = get(&gateway, "/function/spinapp/api/exact/more")
        .await
        .text();
    assert_eq!(header_of(&deeper, "spin-matched-route"), "/api/...");
    // A named segment: the component reads its value (precedence: the unit tests of routes.rs).
    let named = get(&gateway, "/function/spinapp/named/ada/notes")
        .await
        .text();
    assert_eq!(header_of(&named, "spin-matched-route"), "/named/:user/...");
    assert_eq!(header_of(&named, "spin-path-match-user"), "ada");
    assert_eq!(header_of(&named, "spin-path-info"), "/notes");

    // No route, and the private component has none.
    for path in [
        "/function/spinapp/",
        "/function/spinapp/back",
        "/function/spinapp/inner",
    ] {
        let missing = get(&gateway, path).await;
        assert_eq!(missing.status, 404, "{path}: {}", missing.text());
        assert!(
            missing.text().contains("no route of spinapp"),
            "{}",
            missing.text()
        );
    }

    let message = get(&gateway, "/function/spinapp/front/var/message").await;
    assert_eq!(message.text(), "message=hello, fast\n");
    let undefined = get(&gateway, "/function/spinapp/front/var/nothing").await;
    assert_eq!(undefined.status, 404);
    assert!(
        undefined.text().contains("Undefined"),
        "{}",
        undefined.text()
    );

    let set = send(
        &gateway,
        "POST",
        "/function/spinapp/front/kv/colour",
        "blue",
    )
    .await;
    assert_eq!(set.text(), "colour=blue\n");
    assert_eq!(
        get(&gateway, "/function/spinapp/front/kv/colour")
            .await
            .text(),
        "colour=blue\n"
    );
    let other = get(&gateway, "/function/spinapp/front/kv-other").await;
    assert_eq!(other.status, 403);
    assert!(other.text().contains("AccessDenied"), "{}", other.text());

    assert_eq!(
        get(&gateway, "/function/spinapp/front/sql/first")
            .await
            .text(),
        "notes=1: first\n"
    );
    let other = get(&gateway, "/function/spinapp/front/sql-other").await;
    assert_eq!(other.status, 403);
    assert!(other.text().contains("AccessDenied"), "{}", other.text());

    let own = get(&gateway, "/function/spinapp/front/self").await;
    assert_eq!(own.status, 200, "{}", own.text());
    assert!(
        own.text()
            .starts_with("via http://self.alt/api/exact: front GET /api/exact\n")
    );
    assert_eq!(header_of(&own.text(), "spin-matched-route"), "/api/exact");

    let listed = api(&gateway, "GET", "/system/functions", None).await;
    let names: Vec<serde_json::Value> = serde_json::from_slice(&listed.body).expect("JSON");
    assert!(
        names.iter().any(|f| f["name"] == "spinapp"),
        "{}",
        listed.text()
    );
    let described = api(&gateway, "GET", "/system/function/spinapp", None).await;
    assert_eq!(described.status, 200);
    let status: serde_json::Value = serde_json::from_slice(&described.body).expect("JSON");
    let sources = status["annotations"]["com.wasmgate.spin.sources"]
        .as_str()
        .expect("the sources");
    assert!(
        sources.starts_with("back=sha256:") && sources.contains(",front=sha256:"),
        "{sources}"
    );
    // Its components and their routes, in a field of wasmgate's own.
    let components = status["components"].as_array().expect("the components");
    let shown: Vec<(String, serde_json::Value, bool)> = components
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["routes"].clone(),
                c["private"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("back".to_string(), json!([]), true),
            (
                "front".to_string(),
                json!(["/api/...", "/api/exact", "/front/...", "/named/:user/..."]),
                false
            ),
            ("seven".to_string(), json!(["/v7/..."]), false),
        ]
    );
    assert!(
        components.iter().all(|c| c["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))),
        "{status}"
    );
    let metrics = get(&gateway, "/metrics").await.text();
    assert!(
        metrics.contains("function_name=\"spinapp.openfaas-fn\""),
        "{metrics}"
    );
}

/// `spin5-back`: the private component, reached only by the app's own component through
/// `http://back.spin.internal`, with its variable from a secret that follows the secret's updates;
/// and `serve -f spin.toml` deploys the app from its manifest.
#[tokio::test]
pub async fn spin5_back() {
    let gateway = InProcess::start(&[]).await;
    secret(&gateway, "POST", "first").await;
    let deployed = deploy_app(&gateway, &manifest(true), json!({})).await;
    assert_eq!(deployed.status, 202, "{}", deployed.text());
    let chained = get(&gateway, "/function/spinapp/front/chain").await;
    assert_eq!(
        chained.text(),
        "via http://back.spin.internal/inner?from=front: back /inner?from=front \
         path-info=/inner matched=/... client=0.0.0.0:0 token=token-first\n"
    );
    secret(&gateway, "PUT", "second").await;
    let chained = get(&gateway, "/function/spinapp/front/chain").await.text();
    assert!(chained.ends_with("token=token-second\n"), "{chained}");

    let dir = temp_dir("spin-serve");
    let file = dir.join("spin.toml");
    std::fs::write(&file, manifest(false)).expect("write spin.toml");
    let served = InProcess::start(&["-f".to_string(), file.display().to_string()]).await;
    let chained = get(&served, "/function/spinapp/front/chain").await;
    assert!(
        chained.text().ends_with("token=token-none\n"),
        "{}",
        chained.text()
    );
}

/// `spin7-app`: the wasi:http 0.3 generation's interfaces, `spin:variables@3.0.0`,
/// `spin:key-value@3.0.0` (its keys as a stream) and `spin:sqlite@3.1.0` (its rows as a stream),
/// in the same store and database the 0.2 component uses.
#[tokio::test]
pub async fn spin7_app() {
    let gateway = InProcess::start(&[]).await;
    let deployed = deploy_app(&gateway, &manifest(false), json!({})).await;
    assert_eq!(deployed.status, 202, "{}", deployed.text());
    assert_eq!(
        get(&gateway, "/function/spinapp/v7/var/greeting")
            .await
            .text(),
        "spin7 greeting=hello from spin-sdk 7\n"
    );
    let undefined = get(&gateway, "/function/spinapp/v7/var/token").await.text();
    assert!(undefined.contains("Undefined"), "{undefined}");
    // SQLite: the 0.3 component's insert, then the 0.2 one's in the same database.
    assert_eq!(
        get(&gateway, "/function/spinapp/v7/sql/seven").await.text(),
        "spin7 rowid=1 changes=1 notes=1: seven\n"
    );
    assert_eq!(
        get(&gateway, "/function/spinapp/front/sql/five")
            .await
            .text(),
        "notes=2: seven,five\n"
    );
    assert_eq!(
        get(&gateway, "/function/spinapp/v7/sql/six").await.text(),
        "spin7 rowid=3 changes=1 notes=3: seven,five,six\n"
    );
    let other = get(&gateway, "/function/spinapp/v7/sql-other").await.text();
    assert!(other.contains("AccessDenied"), "{other}");
    let set = send(&gateway, "POST", "/function/spinapp/v7/kv/seven", "7").await;
    assert_eq!(set.text(), "spin7 seven=7\n");
    // The 0.2 component sees the same store.
    assert_eq!(
        get(&gateway, "/function/spinapp/front/kv/seven")
            .await
            .text(),
        "seven=7\n"
    );
    send(&gateway, "POST", "/function/spinapp/front/kv/five", "5").await;
    assert_eq!(
        get(&gateway, "/function/spinapp/v7/keys").await.text(),
        "spin7 keys: five,seven\n"
    );
    let other = get(&gateway, "/function/spinapp/v7/kv-other").await.text();
    assert!(other.contains("AccessDenied"), "{other}");
}

/// An app whose component (`outbound`) may call `http://{{ upstream_host }}:PORT..PORT+1`: the
/// variable (a secret) decides the host, the allow-list follows the secret's update, the range
/// ends before its last port; a template that gives an invalid entry is refused at deploy.
#[tokio::test]
pub async fn spin_outbound_templates() {
    let upstream = Upstream::start(std::time::Duration::ZERO).await;
    let port = upstream.addr.port();
    let gateway = InProcess::start(&[]).await;
    let host = |value: &str| json!({"name": "upstream-host", "value": value});
    let created = api(
        &gateway,
        "POST",
        "/system/secrets",
        Some(host("nowhere.invalid")),
    )
    .await;
    assert!(created.status.is_success(), "{}", created.text());
    let manifest = |entry: &str| {
        format!(
            r#"spin_manifest_version = 2
[application]
name = "spinapp"
[variables]
upstream_host = {{ required = true, secret = true }}
[[trigger.http]]
route = "/..."
component = "out"
[component.out]
source = "{outbound}"
allowed_outbound_hosts = ["{entry}"]
"#,
            outbound = wasmgate_guests::OUTBOUND,
        )
    };
    let sources = format!("out={}", wasmgate_guests::OUTBOUND);
    let entry = format!("http://{{{{ upstream_host }}}}:{port}..{}", port + 1);
    let deployed = deploy_with_sources(&gateway, &manifest(&entry), &sources, json!({})).await;
    assert_eq!(deployed.status, 202, "{}", deployed.text());
    let call = |to_port: u16| {
        let gateway = &gateway;
        async move {
            get(
                gateway,
                &format!("/function/spinapp/?url=http://127.0.0.1:{to_port}/"),
            )
            .await
            .text()
        }
    };
    let denied = call(port).await;
    assert!(denied.contains("HttpRequestDenied"), "{denied}");
    let updated = api(&gateway, "PUT", "/system/secrets", Some(host("127.0.0.1"))).await;
    assert!(updated.status.is_success(), "{}", updated.text());
    assert_eq!(call(port).await, "200 upstream says hi\n");
    let past_the_range = call(port + 1).await;
    assert!(
        past_the_range.contains("HttpRequestDenied"),
        "{past_the_range}"
    );

    let bad = "http://{{ upstream_host }}/path";
    let update = json!({
        "service": "spinapp",
        "image": "spin.toml",
        "annotations": {
            "com.wasmgate.spin.manifest": manifest(bad),
            "com.wasmgate.spin.sources": sources,
        },
    });
    let refused = api(&gateway, "PUT", "/system/functions", Some(update)).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains(
            "component.out.allowed_outbound_hosts: \"http://{{ upstream_host }}/path\" is \
             \"http://127.0.0.1/path\""
        ),
        "{}",
        refused.text()
    );
    assert_eq!(
        call(port).await,
        "200 upstream says hi\n",
        "still the first"
    );
}

/// `spin5-redis`: a component that imports Spin's Redis interface is refused at deploy, the
/// interface named; so are a required variable without a value and a manifest with a wrong field.
#[tokio::test]
pub async fn spin5_redis() {
    let gateway = InProcess::start(&[]).await;
    // Given by path, so the deploy (not the upload, which refuses it too) reads and refuses it.
    let sources = format!(
        "front={},back={},seven={}",
        wasmgate_guests::SPIN5_FRONT,
        wasmgate_guests::SPIN5_REDIS,
        wasmgate_guests::SPIN7_APP,
    );
    let refused = deploy_with_sources(&gateway, &manifest(false), &sources, json!({})).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let text = refused.text();
    assert!(
        text.contains("component back")
            && text.contains("fermyon:spin/redis@2.0.0 (Spin's Redis client)")
            && text.contains("which wasmgate does not provide"),
        "{text}"
    );

    let unset = deploy_app(&gateway, &manifest(true), json!({})).await;
    assert_eq!(unset.status, 400);
    assert!(
        unset.text().contains("variables.api_token is required")
            && unset.text().contains("\"api-token\""),
        "{}",
        unset.text()
    );

    let misspelt = manifest(false).replacen("key_value_stores", "key_value_store", 1);
    let bad = deploy_with_sources(&gateway, &misspelt, "", json!({})).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("unknown field `key_value_store`"),
        "{}",
        bad.text()
    );
    assert_eq!(get(&gateway, "/function/spinapp/api/x").await.status, 404);
}

/// `wasmgate deploy -f spin.toml` deploys the app to a real gateway; its client address is the
/// socket's; its key-value data, its SQLite rows, its routes and its private component are all there after a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spin_app_deployed_by_the_cli_keeps_its_data_across_a_restart() {
    let state = temp_dir("spin-state");
    let start = || Gateway::start(&["--state-dir".to_string(), state.display().to_string()]);
    let gateway = start();
    secret(&gateway, "POST", "kept").await;
    let project = temp_dir("spin-project");
    let file = project.join("spin.toml");
    std::fs::write(&file, manifest(true)).expect("write spin.toml");
    let (status, stderr) = crate::support::run_to_exit(&[
        "deploy",
        "-f",
        &file.display().to_string(),
        "--gateway",
        &format!("http://{}", gateway.addr),
    ]);
    assert!(status.success(), "{stderr}");

    let report = get(&gateway, "/function/spinapp/api/x").await.text();
    assert!(
        header_of(&report, "spin-client-addr").starts_with("127.0.0.1:"),
        "{report}"
    );
    let set = send(&gateway, "PUT", "/function/spinapp/front/kv/kept", "yes").await;
    assert_eq!(set.text(), "kept=yes\n");
    assert_eq!(
        get(&gateway, "/function/spinapp/front/sql/before")
            .await
            .text(),
        "notes=1: before\n"
    );

    gateway.signal("TERM");
    assert!(gateway.wait().success());
    let gateway = start();
    assert_eq!(
        get(&gateway, "/function/spinapp/front/kv/kept")
            .await
            .text(),
        "kept=yes\n"
    );
    assert_eq!(
        get(&gateway, "/function/spinapp/front/sql/after")
            .await
            .text(),
        "notes=2: before,after\n"
    );
    assert_eq!(
        get(&gateway, "/function/spinapp/v7/sql/seven").await.text(),
        "spin7 rowid=3 changes=1 notes=3: before,after,seven\n"
    );
    assert_eq!(get(&gateway, "/function/spinapp/inner").await.status, 404);
    let chained = get(&gateway, "/function/spinapp/front/chain").await.text();
    assert!(chained.ends_with("token=token-kept\n"), "{chained}");
}
