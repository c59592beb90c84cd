//! The `wasmgate` binary's library: the gateway ([`gateway`]), its server loop ([`server`]), and the
//! command line ([`cli`]). `main.rs` only parses arguments, installs logging and calls [`run`].

pub mod cli;
pub mod duration;
pub mod gateway;
pub mod names;
pub mod server;
pub mod stack;

use std::io::Write;

use anyhow::Context;
use tokio::net::TcpListener;
use wasmgate_runtime::{FunctionSpec, Runtime};

use crate::cli::{Cli, Command, ServeConfig};
use crate::gateway::Gateway;

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.into_config()?).await,
    }
}

/// Loads every function, binds, prints the address, and serves until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = Runtime::new(config.runtime.clone()).context("starting the runtime")?;
    for function in &config.functions {
        let wasm = tokio::fs::read(&function.wasm).await.with_context(|| {
            format!(
                "reading the component of function {} from {}",
                function.function,
                function.wasm.display()
            )
        })?;
        let spec = FunctionSpec {
            env: function.env.clone(),
        };
        runtime
            .load(&function.function.key(), wasm, spec)
            .await
            .with_context(|| {
                format!(
                    "loading function {} from {}",
                    function.function,
                    function.wasm.display()
                )
            })?;
        tracing::info!(function = %function.function, path = %function.wasm.display(), "function loaded");
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    // One line on stdout that scripts and tests wait for.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "wasmgate listening on http://{address}")?;
    stdout.flush()?;
    drop(stdout);

    server::serve(
        listener,
        Gateway::new(runtime),
        config.server,
        server::shutdown_signal(),
    )
    .await
}
