//! `wasmgate`: parse the command line, install logging, run, and print the error chain on failure.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmgate::cli::Cli;
use wasmgate::logwriter::BatchedStderr;

/// mimalloc instead of the C library's allocator: a request allocates on one worker thread and may free
/// on another, and glibc's per-thread arenas then contend on a lock (a `futex` call per request or so
/// in `benches/load.sh`); mimalloc frees across threads without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // WASMGATE_LOG (or RUST_LOG) picks what is logged, e.g. `debug` or `wasmgate=debug`.
    let filter = std::env::var("WASMGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let log = BatchedStderr::start();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(log.clone())
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let outcome = run(cli);
    // What was logged comes before the final word.
    log.flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(wasmgate::run(cli))
}
