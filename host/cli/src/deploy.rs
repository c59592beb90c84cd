//! `wasmgate deploy` and `wasmgate push`: the functions of the stack file (or those named) to a
//! gateway, or their components to their OCI registries. A progress bar on stderr (drawn only on a
//! terminal) follows a deploy of many functions.

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::cli::GatewayArgs;
use crate::client::ApiClient;
use crate::commands::expect;

/// `wasmgate deploy`: every function of the stack file (or those named), each uploaded only if the
/// gateway lacks its digest, then deployed as faas-cli does (PUT, and POST on 404).
pub async fn deploy(gateway: &GatewayArgs, only: &[String]) -> anyhow::Result<()> {
    if wasmgate_spin::deployment::is_manifest_path(&gateway.stack) {
        return deploy_spin(gateway).await;
    }
    let (stack, base) = gateway.read_stack()?;
    let mut functions = stack.resolve(&base)?;
    if !only.is_empty() {
        for name in only {
            if !functions.iter().any(|f| &f.function.name == name) {
                bail!("no function {name} in {}", gateway.stack.display());
            }
        }
        functions.retain(|f| only.contains(&f.function.name));
    }
    let client = gateway.client()?;
    let total = functions.len();
    let colour = crate::paint::enabled();
    // A progress bar on stderr, drawn only when stderr is a terminal; the lines go above it.
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template("deploying [{bar:30}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut failed = Vec::new();
    for (index, function) in functions.iter().enumerate() {
        progress.set_message(function.function.to_string());
        let label = format!("[{}/{total}] {}", index + 1, function.function);
        let line = match deploy_one(&client, function).await {
            Ok(uploaded) => format!(
                "{label}: {}{}",
                crate::paint::green("deployed", colour),
                match uploaded {
                    Uploaded::Now => " (component uploaded)".to_string(),
                    Uploaded::AlreadyThere => " (component already there)".to_string(),
                    Uploaded::Pulled => format!(
                        " (pulled by the gateway from {})",
                        function.oci.as_deref().unwrap_or_default()
                    ),
                }
            ),
            Err(error) => {
                failed.push(function.function.to_string());
                format!(
                    "{label}: {} {error:#}",
                    crate::paint::red("failed:", colour)
                )
            }
        };
        progress.suspend(|| println!("{line}"));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let summary = format!(
        "{} of {total} deployed to {}",
        total - failed.len(),
        client.gateway
    );
    println!("{}", crate::paint::bold(&summary, colour));
    if !failed.is_empty() {
        bail!("these failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `wasmgate push`: publishes the component of every function whose `image` is an OCI reference (or
/// those named), with the credentials of the Docker config file.
pub async fn push(gateway: &GatewayArgs, only: &[String]) -> anyhow::Result<()> {
    let (stack, base) = gateway.read_stack()?;
    let functions = stack.resolve(&base)?;
    for name in only {
        if !functions.iter().any(|f| &f.function.name == name) {
            bail!("no function {name} in {}", gateway.stack.display());
        }
    }
    let client = wasmgate_oci::RegistryClient::new()?;
    let mut pushed = 0;
    for function in &functions {
        if !only.is_empty() && !only.contains(&function.function.name) {
            continue;
        }
        let Some(image) = &function.oci else {
            println!(
                "{}: image {} is a file, not an OCI reference; nothing to push",
                function.function.name,
                function.wasm.display()
            );
            continue;
        };
        let reference = wasmgate_oci::Reference::parse(image)?;
        if function.wasm.as_os_str().is_empty() {
            bail!(
                "{}: cannot tell where its component is: give it a handler and a lang",
                function.function.name
            );
        }
        let wasm = std::fs::read(&function.wasm).with_context(|| {
            format!(
                "{}: reading {} (build it first: wasmgate build)",
                function.function.name,
                function.wasm.display()
            )
        })?;
        let digest = client
            .push(&reference, wasm)
            .await
            .with_context(|| format!("{}: pushing to {reference}", function.function.name))?;
        println!("{}: pushed {reference} ({digest})", function.function.name);
        pushed += 1;
    }
    println!("{pushed} pushed");
    Ok(())
}

/// `wasmgate deploy -f spin.toml`: the Spin app as one function named after it, each component
/// uploaded if the gateway lacks it (see `wasmgate_spin::deployment`).
async fn deploy_spin(gateway: &GatewayArgs) -> anyhow::Result<()> {
    let path = &gateway.stack;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let app = wasmgate_spin::App::parse(&text).with_context(|| format!("{}", path.display()))?;
    let base = path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let client = gateway.client()?;
    let mut sources = std::collections::BTreeMap::new();
    let mut files = std::collections::BTreeMap::new();
    for (name, component) in &app.components {
        let file = base.join(&component.source);
        let wasm = std::fs::read(&file)
            .with_context(|| format!("component {name}: reading {}", file.display()))?;
        let (digest, uploaded) = upload(&client, wasm, "application/wasm")
            .await
            .with_context(|| format!("component {name}"))?;
        println!("{name}: {}", uploaded.said());
        sources.insert(name.clone(), digest);
        if let Some(archive) = crate::spin_files::archive(&base, name, component)? {
            let (digest, uploaded) = upload(&client, archive, wasmgate_spin::files::MEDIA_TYPE)
                .await
                .with_context(|| format!("component {name}'s files"))?;
            println!("{name}: files {}", uploaded.said());
            files.insert(name.clone(), digest);
        }
    }
    let deployment = spin_deployment(&app, &text, &sources, &files);
    send(&client, &deployment).await?;
    println!(
        "{}: deployed to {} ({} components)",
        app.name,
        client.gateway,
        app.components.len()
    );
    Ok(())
}

/// The deployment of a Spin app whose components are the digests `sources`, and their files the
/// archives `files`.
fn spin_deployment(
    app: &wasmgate_spin::App,
    manifest: &str,
    sources: &std::collections::BTreeMap<String, String>,
    files: &std::collections::BTreeMap<String, String>,
) -> wasmgate_openfaas::types::FunctionDeployment {
    let annotations = wasmgate_spin::deployment::annotations(manifest, sources, files);
    wasmgate_openfaas::types::FunctionDeployment {
        service: app.name.clone(),
        // Shown by list and describe; the components are in the annotations.
        image: sources.values().next().cloned().unwrap_or_default(),
        namespace: None,
        settings: wasmgate_openfaas::types::FunctionSettings {
            annotations: Some(annotations.into_iter().collect()),
            ..Default::default()
        },
    }
}

/// Uploads a component (or, `media_type` saying so, a files archive) unless the gateway has its
/// digest; the digest and what happened.
async fn upload(
    client: &ApiClient,
    wasm: Vec<u8>,
    media_type: &str,
) -> anyhow::Result<(String, Uploaded)> {
    let digest = wasmgate_openfaas::digest::Digest::of(&wasm).to_string();
    let known = client
        .send(
            Method::GET,
            &format!("/system/artifacts/{digest}"),
            None,
            &[],
        )
        .await?;
    let uploaded = match known.status {
        StatusCode::OK => Uploaded::AlreadyThere,
        StatusCode::NOT_FOUND => {
            let headers = [("Content-Type".to_string(), media_type.to_string())];
            let reply = client
                .send(
                    Method::POST,
                    "/system/artifacts",
                    Some(Bytes::from(wasm)),
                    &headers,
                )
                .await?;
            expect(
                client,
                &reply,
                &[StatusCode::CREATED, StatusCode::OK],
                "uploading the component",
            )?;
            Uploaded::Now
        }
        _ => {
            expect(
                client,
                &known,
                &[StatusCode::OK],
                "checking for the component",
            )?;
            Uploaded::AlreadyThere
        }
    };
    Ok((digest, uploaded))
}

/// Uploads (if needed) and deploys one function; returns how its component got there.
async fn deploy_one(
    client: &ApiClient,
    function: &wasmgate_openfaas::types::ResolvedFunction,
) -> anyhow::Result<Uploaded> {
    // An OCI image is pulled by the gateway itself (push it first with `wasmgate push`).
    if let Some(reference) = &function.oci {
        send_deployment(client, function, reference.clone()).await?;
        return Ok(Uploaded::Pulled);
    }
    let wasm = std::fs::read(&function.wasm)
        .with_context(|| format!("reading {}", function.wasm.display()))?;
    let (digest, uploaded) = upload(client, wasm, "application/wasm").await?;
    send_deployment(client, function, digest).await?;
    Ok(uploaded)
}

/// How a function's component reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uploaded {
    /// Uploaded now.
    Now,
    /// The gateway had it (by digest).
    AlreadyThere,
    /// The gateway pulls it from its OCI registry.
    Pulled,
}

impl Uploaded {
    /// What a line of output says of it.
    fn said(&self) -> &'static str {
        match self {
            Uploaded::Now => "uploaded",
            Uploaded::AlreadyThere => "already there",
            Uploaded::Pulled => "pulled by the gateway",
        }
    }
}

/// PUT, then POST on 404, as faas-cli deploys.
async fn send_deployment(
    client: &ApiClient,
    function: &wasmgate_openfaas::types::ResolvedFunction,
    image: String,
) -> anyhow::Result<()> {
    let deployment = wasmgate_openfaas::types::FunctionDeployment {
        service: function.function.name.clone(),
        image,
        namespace: Some(function.function.namespace.clone()),
        settings: function.settings.clone(),
    };
    send(client, &deployment).await
}

/// PUT, then POST on 404, as faas-cli deploys.
async fn send(
    client: &ApiClient,
    deployment: &wasmgate_openfaas::types::FunctionDeployment,
) -> anyhow::Result<()> {
    let body = serde_json::to_string(deployment)?;
    let put = client
        .send(
            Method::PUT,
            "/system/functions",
            Some(body.clone().into()),
            &[],
        )
        .await?;
    let reply = if put.status == StatusCode::NOT_FOUND {
        client
            .send(Method::POST, "/system/functions", Some(body.into()), &[])
            .await?
    } else {
        put
    };
    // faas-cli accepts 200 and 202 only.
    expect(
        client,
        &reply,
        &[StatusCode::OK, StatusCode::ACCEPTED],
        "deploying",
    )?;
    Ok(())
}
