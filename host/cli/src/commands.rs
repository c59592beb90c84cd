//! The client subcommands that speak the API of a gateway: `list`, `describe`, `invoke`, `remove`,
//! `logs`, `secret`, `login`, `logout`, `version`. Each speaks only the OpenFaaS API, so it works
//! against any OpenFaaS gateway; `deploy` and `push`, which start from the stack file, are in
//! [`deploy`](crate::deploy).
//!
//! Output is for people by default (aligned columns; colour on a terminal unless `NO_COLOR` is set)
//! and JSON with `--json` where scripts need it. Failures exit non-zero with one line that says what
//! went wrong.
//!
//! About 600 lines: one noun, the API commands, each a short function with its output, sharing the
//! error and table helpers at the top.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::cli::GatewayArgs;
use crate::client::{ApiClient, Login, save_login};
use wasmgate_openfaas::types::FunctionStatus;

/// Explains a 401 in words a person can act on.
fn unauthorized(client: &ApiClient) -> anyhow::Error {
    anyhow::anyhow!(
        "the gateway at {} refused the credentials (401): run `wasmgate login --gateway {}`",
        client.gateway,
        client.gateway
    )
}

/// The error for a function the gateway does not have.
fn missing_function(client: &ApiClient, name: &str, namespace: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no function {name} in namespace {namespace} at {}",
        client.gateway
    )
}

/// Fails unless the reply has one of the `ok` statuses.
pub(crate) fn expect(
    client: &ApiClient,
    reply: &crate::client::Reply,
    ok: &[StatusCode],
    what: &str,
) -> anyhow::Result<()> {
    if ok.contains(&reply.status) {
        return Ok(());
    }
    if reply.status == StatusCode::UNAUTHORIZED {
        return Err(unauthorized(client));
    }
    bail!(
        "{what}: the gateway answered {} {}",
        reply.status,
        reply.text()
    )
}

fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Prints rows as aligned columns under `header`.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    if crate::paint::enabled()
        && let Some(first) = out.lines().next().map(str::to_string)
    {
        out = format!("{}\n", crate::paint::bold(&first, true));
    }
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `wasmgate list`.
pub async fn list(
    gateway: &GatewayArgs,
    namespace: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let path = match namespace {
        Some(ns) => format!("/system/functions?namespace={}", query_escape(ns)),
        None => "/system/functions".to_string(),
    };
    let reply = client.send(Method::GET, &path, None, &[]).await?;
    expect(&client, &reply, &[StatusCode::OK], "listing functions")?;
    if json {
        println!("{}", reply.text());
        return Ok(());
    }
    let functions: Vec<FunctionStatus> =
        serde_json::from_slice(&reply.body).context("reading the function list")?;
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.namespace.clone(),
                format!("{}", f.invocation_count),
                format!("{}", f.replicas),
                f.image.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["Function", "Namespace", "Invocations", "Replicas", "Image"],
            &rows
        )
    );
    Ok(())
}

/// `wasmgate describe`.
pub async fn describe(
    gateway: &GatewayArgs,
    name: &str,
    namespace: &str,
    json: bool,
) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let path = format!(
        "/system/function/{}?namespace={}&usage=1",
        query_escape(name),
        query_escape(namespace)
    );
    let reply = client.send(Method::GET, &path, None, &[]).await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Err(missing_function(&client, name, namespace));
    }
    expect(
        &client,
        &reply,
        &[StatusCode::OK],
        "describing the function",
    )?;
    if json {
        println!("{}", reply.text());
        return Ok(());
    }
    let status: FunctionStatus =
        serde_json::from_slice(&reply.body).context("reading the function's status")?;
    let url = format!("{}/function/{name}.{namespace}", client.gateway);
    let mut rows = vec![
        ("Name", status.name.clone()),
        ("Namespace", namespace.to_string()),
        (
            "Status",
            if status.available_replicas > 0 {
                "Ready"
            } else {
                "Not ready"
            }
            .into(),
        ),
        ("Replicas", status.replicas.to_string()),
        ("Available replicas", status.available_replicas.to_string()),
        ("Invocations", status.invocation_count.to_string()),
        ("Image", status.image.clone()),
        ("URL", url),
    ];
    if let Some(world) = &status.world {
        rows.push(("World", world.clone()));
    }
    if let Some(triggers) = &status.triggers {
        rows.push(("Route", triggers.route.clone()));
        let mode = if triggers.asynchronous {
            " (async)"
        } else {
            ""
        };
        if let Some(schedule) = &triggers.schedule {
            rows.push(("Schedule", format!("{schedule}{mode}")));
        }
        if !triggers.topics.is_empty() {
            rows.push(("Topics", format!("{}{mode}", triggers.topics.join(", "))));
        }
    }
    if let Some(components) = &status.components {
        let text: Vec<String> = components
            .iter()
            .map(|c| {
                let mut routes = c.routes.clone();
                if c.private {
                    routes.push("private".into());
                }
                let files = if c.files.is_some() { " (files)" } else { "" };
                format!("{} {}{files}", c.name, routes.join(" "))
            })
            .collect();
        rows.push(("Components", text.join("; ")));
    }
    if let Some(env) = &status.settings.env_vars {
        let text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("Environment", text.join(", ")));
    }
    if let Some(labels) = &status.settings.labels {
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("Labels", text.join(", ")));
    }
    if let Some(annotations) = &status.settings.annotations {
        let text: Vec<String> = annotations
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rows.push(("Annotations", text.join(", ")));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{:<width$}  {value}", format!("{key}:"), width = width + 1);
    }
    Ok(())
}

/// What `wasmgate invoke` sends.
#[derive(Debug)]
pub struct Call<'a> {
    /// The function (`name` or `name.namespace`).
    pub name: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// `key=value` headers.
    pub headers: &'a [String],
    /// `key=value` query parameters.
    pub query: &'a [String],
    /// Queue it through `/async-function` instead of waiting for the answer.
    pub asynchronous: bool,
    /// With `asynchronous`: the `X-Callback-Url`.
    pub callback_url: Option<&'a str>,
}

/// `wasmgate invoke`: the body from stdin, the answer to stdout; non-zero exit on a non-2xx answer.
/// With `--async`, the call is queued and its call id printed.
pub async fn invoke(gateway: &GatewayArgs, call: &Call<'_>) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let method: Method = call
        .method
        .to_ascii_uppercase()
        .parse()
        .with_context(|| format!("{:?} is not an HTTP method", call.method))?;
    if call.asynchronous && method != Method::POST {
        bail!("asynchronous calls are queued with POST, not {method}");
    }
    let headers = pairs(call.headers, "--header")?;
    let query = pairs(call.query, "--query")?;
    let route = if call.asynchronous {
        "async-function"
    } else {
        "function"
    };
    let mut path = format!("/{route}/{}", call.name);
    if !query.is_empty() {
        let joined: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect();
        path.push('?');
        path.push_str(&joined.join("&"));
    }
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("reading the request body from standard input")?;
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(url) = call.callback_url {
        headers.push(("X-Callback-Url".into(), url.into()));
    }
    let response = client
        .start(
            method,
            &path,
            Some(Bytes::from(body)),
            &with_default_type(headers),
        )
        .await?;
    let status = response.status();
    if call.asynchronous && status == StatusCode::ACCEPTED {
        let id = response
            .headers()
            .get("x-call-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        // The id alone on stdout, for scripts; the explanation on stderr.
        println!("{id}");
        eprintln!(
            "Queued {}: see GET /system/async/{id}, cancel with DELETE /async-function/{id}",
            call.name
        );
        return Ok(());
    }
    let mut body = response.into_body();
    let mut stdout = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the function's answer")?;
        if let Some(data) = frame.data_ref() {
            stdout.write_all(data)?;
        }
    }
    stdout.flush()?;
    if !status.is_success() {
        bail!("the function answered {status}");
    }
    Ok(())
}

/// A body without a declared type is sent as text, as faas-cli does.
fn with_default_type(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".into(), "text/plain".into()));
    }
    headers
}

/// Splits `key=value` arguments.
fn pairs<'a>(items: &'a [String], flag: &str) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .with_context(|| format!("{flag} {item:?}: expected key=value"))
        })
        .collect()
}

/// `wasmgate remove`.
pub async fn remove(gateway: &GatewayArgs, name: &str, namespace: &str) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let body = serde_json::json!({"functionName": name, "namespace": namespace}).to_string();
    let reply = client
        .send(Method::DELETE, "/system/functions", Some(body.into()), &[])
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Err(missing_function(&client, name, namespace));
    }
    expect(
        &client,
        &reply,
        &[StatusCode::OK, StatusCode::CREATED, StatusCode::ACCEPTED],
        "removing the function",
    )?;
    println!("Removed {name} ({namespace})");
    Ok(())
}

/// `wasmgate logs`.
pub async fn logs(
    gateway: &GatewayArgs,
    name: &str,
    namespace: &str,
    tail: Option<u64>,
    since: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let mut path = format!(
        "/system/logs?name={}&namespace={}&follow={follow}",
        query_escape(name),
        query_escape(namespace)
    );
    if let Some(tail) = tail {
        path.push_str(&format!("&tail={tail}"));
    }
    if let Some(since) = since {
        path.push_str(&format!("&since={}", query_escape(since)));
    }
    let response = client.start(Method::GET, &path, None, &[]).await?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        return Err(unauthorized(&client));
    }
    if status == StatusCode::NOT_FOUND {
        return Err(missing_function(&client, name, namespace));
    }
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "reading logs: the gateway answered {status} {}",
            String::from_utf8_lossy(&text).trim()
        );
    }
    let mut pending = Vec::new();
    let mut stdout = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the log stream")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(text) = format_log_line(&line) {
                writeln!(stdout, "{text}")?;
                stdout.flush()?;
            }
        }
    }
    Ok(())
}

/// `timestamp name (instance) text`, as faas-cli prints a log line.
fn format_log_line(line: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("");
    Some(format!(
        "{} {} ({}) {}",
        field("timestamp"),
        field("name"),
        field("instance"),
        field("text")
    ))
}

/// `wasmgate secret create`: the value from `--from-literal`, else standard input.
pub async fn secret_create(
    gateway: &GatewayArgs,
    name: &str,
    namespace: &str,
    literal: Option<&str>,
) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let value = match literal {
        Some(value) => value.to_string(),
        None => {
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .context("reading the secret's value from standard input")?;
            value
        }
    };
    let body =
        serde_json::json!({"name": name, "namespace": namespace, "value": value}).to_string();
    let reply = client
        .send(Method::POST, "/system/secrets", Some(body.into()), &[])
        .await?;
    if reply.status == StatusCode::CONFLICT {
        bail!("the secret {name} already exists in namespace {namespace}");
    }
    expect(
        &client,
        &reply,
        &[StatusCode::OK, StatusCode::CREATED, StatusCode::ACCEPTED],
        "creating the secret",
    )?;
    println!("Created secret {name} ({namespace})");
    Ok(())
}

/// `wasmgate secret list`.
pub async fn secret_list(gateway: &GatewayArgs, namespace: &str, json: bool) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let path = format!("/system/secrets?namespace={}", query_escape(namespace));
    let reply = client.send(Method::GET, &path, None, &[]).await?;
    expect(&client, &reply, &[StatusCode::OK], "listing secrets")?;
    if json {
        println!("{}", reply.text());
        return Ok(());
    }
    let secrets: Vec<serde_json::Value> =
        serde_json::from_slice(&reply.body).context("reading the secret list")?;
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|s| {
            let field = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            vec![field("name"), field("namespace")]
        })
        .collect();
    print!("{}", table(&["Secret", "Namespace"], &rows));
    Ok(())
}

/// `wasmgate secret remove`.
pub async fn secret_remove(
    gateway: &GatewayArgs,
    name: &str,
    namespace: &str,
) -> anyhow::Result<()> {
    let client = gateway.client()?;
    let body = serde_json::json!({"name": name, "namespace": namespace}).to_string();
    let reply = client
        .send(Method::DELETE, "/system/secrets", Some(body.into()), &[])
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        bail!("no secret {name} in namespace {namespace}");
    }
    expect(
        &client,
        &reply,
        &[StatusCode::OK, StatusCode::ACCEPTED],
        "removing the secret",
    )?;
    println!("Removed secret {name} ({namespace})");
    Ok(())
}

/// `wasmgate login`: checks the credentials with `GET /system/functions`, then saves them.
pub async fn login(
    gateway: &GatewayArgs,
    user: &str,
    password: Option<&str>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let password = match (password, password_stdin) {
        (Some(password), false) => password.to_string(),
        (None, true) => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            password.trim().to_string()
        }
        _ => bail!("give the password with --password-stdin (or --password)"),
    };
    let url = gateway.url()?;
    let login = Login {
        user: user.to_string(),
        password,
    };
    let client = ApiClient::new(&url, Some(login.clone()))?;
    let reply = client
        .send(Method::GET, "/system/functions", None, &[])
        .await?;
    match reply.status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            bail!("wrong user name or password for {url}: nothing was saved")
        }
        other => bail!(
            "checking the credentials: the gateway answered {other} {}",
            reply.text()
        ),
    }
    save_login(&url, Some(login))?;
    println!("Credentials for {url} saved");
    Ok(())
}

/// `wasmgate logout`.
pub fn logout(gateway: &GatewayArgs) -> anyhow::Result<()> {
    let url = gateway.url()?;
    if save_login(&url, None)? {
        println!("Credentials for {url} removed");
    } else {
        println!("No credentials were saved for {url}");
    }
    Ok(())
}

/// `wasmgate version`.
pub async fn version(gateway: &GatewayArgs, json: bool) -> anyhow::Result<()> {
    let client = gateway.client()?;
    // The client's own version is worth printing whatever the gateway says.
    let (info, problem) = match client.send(Method::GET, "/system/info", None, &[]).await {
        Ok(reply) if reply.status == StatusCode::OK => (
            Some(serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap_or_default()),
            None,
        ),
        Ok(reply) if reply.status == StatusCode::UNAUTHORIZED => {
            (None, Some("needs credentials (wasmgate login)".to_string()))
        }
        Ok(reply) => (None, Some(format!("answered {}", reply.status))),
        Err(error) => (None, Some(format!("{error:#}"))),
    };
    let client_version = env!("CARGO_PKG_VERSION");
    if json {
        let value = serde_json::json!({
            "client": {"version": client_version},
            "gateway": {"url": client.gateway, "info": info, "problem": problem},
        });
        println!("{value}");
        return Ok(());
    }
    println!("wasmgate (client) {client_version}");
    match info {
        Some(info) => {
            let provider = info["provider"]["provider"].as_str().unwrap_or("unknown");
            let release = info["provider"]["version"]["release"]
                .as_str()
                .unwrap_or("unknown");
            println!("gateway {}: provider {provider} {release}", client.gateway);
        }
        None => println!(
            "gateway {}: {}",
            client.gateway,
            problem.unwrap_or_default()
        ),
    }
    Ok(())
}
