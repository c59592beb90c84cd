//! The command line. clap types stop here: [`ServeArgs::into_config`] turns them into a validated
//! [`ServeConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wasmgate_runtime::{Allocator, DEFAULT_MAX_INSTANCES, RuntimeConfig};

use crate::duration::parse_duration;
use crate::names::FunctionRef;
use crate::server::{DEFAULT_MAX_CONNECTIONS, ServerConfig};
use crate::stack::{ResolvedFunction, Stack};

/// The stack file `serve` reads when none is named and one exists in the current folder.
pub const DEFAULT_STACK_FILE: &str = "stack.yml";

/// wasmgate: an OpenFaaS-compatible gateway that runs each function as a WebAssembly component,
/// with a fresh instance for every request.
#[derive(Debug, Parser)]
#[command(name = "wasmgate", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load functions and serve them at /function/<name>.
    Serve(ServeArgs),
}

/// Arguments of `wasmgate serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is printed on stdout.
    #[arg(long, env = "WASMGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A faas-cli stack file whose functions to load; each `image` is a path to a `.wasm` component,
    /// relative to the file. Without this flag and without --function, ./stack.yml is read if it exists.
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "yaml",
        env = "WASMGATE_STACK"
    )]
    pub file: Option<PathBuf>,

    /// A function to load besides those of the stack file, as NAME=PATH (NAME may be name.namespace).
    /// Repeat for more.
    #[arg(long = "function", value_name = "NAME=PATH")]
    pub functions: Vec<String>,

    /// How long requests in flight may take to finish after SIGINT or SIGTERM (e.g. 30s, 1m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Connections served at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Instances that may run at once (one per request in flight); sizes the instance pool.
    #[arg(long, default_value_t = DEFAULT_MAX_INSTANCES)]
    pub max_instances: u32,

    /// How instances get memory: a pool reserved at start-up (fast), on demand, or pooling when the
    /// address space allows it.
    #[arg(long, value_enum, default_value_t = AllocatorArg::Auto)]
    pub allocator: AllocatorArg,
}

/// `--allocator` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AllocatorArg {
    /// Pooling when possible, else on demand.
    Auto,
    /// Pooling or fail.
    Pooling,
    /// On demand.
    OnDemand,
}

/// Everything `serve` needs, validated.
#[derive(Debug)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The functions to load, each with its component path.
    pub functions: Vec<ResolvedFunction>,
    /// The runtime's settings.
    pub runtime: RuntimeConfig,
    /// The server's settings.
    pub server: ServerConfig,
}

impl ServeArgs {
    /// Reads the stack file, parses `--function`, and checks that no function is named twice.
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        // Like faas-cli, ./stack.yml is the default, but only when nothing else says what to serve.
        let stack_file = match self.file {
            Some(file) => Some(file),
            None if self.functions.is_empty() => {
                Some(PathBuf::from(DEFAULT_STACK_FILE)).filter(|f| f.exists())
            }
            None => None,
        };
        let mut functions = Vec::new();
        if let Some(file) = stack_file {
            let stack = Stack::read(&file)?;
            let base = file.parent().map(PathBuf::from).unwrap_or_default();
            functions.extend(
                stack
                    .resolve(&base)
                    .with_context(|| format!("in {}", file.display()))?,
            );
        }
        for arg in &self.functions {
            functions.push(parse_function_arg(arg)?);
        }
        let mut keys: Vec<String> = functions.iter().map(|f| f.function.key()).collect();
        keys.sort();
        if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
            bail!("function {} is defined twice", pair[0]);
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        Ok(ServeConfig {
            listen: self.listen,
            functions,
            runtime: RuntimeConfig {
                max_instances: self.max_instances,
                allocator: match self.allocator {
                    AllocatorArg::Auto => Allocator::Auto,
                    AllocatorArg::Pooling => Allocator::Pooling,
                    AllocatorArg::OnDemand => Allocator::OnDemand,
                },
                ..RuntimeConfig::default()
            },
            server: ServerConfig {
                shutdown_timeout: self.shutdown_timeout,
                max_connections: self.max_connections,
                ..ServerConfig::default()
            },
        })
    }
}

fn parse_function_arg(arg: &str) -> anyhow::Result<ResolvedFunction> {
    let Some((name, path)) = arg.split_once('=') else {
        bail!("--function {arg:?}: expected NAME=PATH");
    };
    if path.is_empty() {
        bail!("--function {arg:?}: the path is empty");
    }
    let function = FunctionRef::parse(name).with_context(|| format!("--function {arg:?}"))?;
    Ok(ResolvedFunction {
        function,
        wasm: PathBuf::from(path),
        env: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_args() {
        let f = parse_function_arg("hello=/x/hello.wasm").expect("valid");
        assert_eq!(f.function.key(), "hello.openfaas-fn");
        assert_eq!(f.wasm, PathBuf::from("/x/hello.wasm"));
        assert_eq!(
            parse_function_arg("hi.team=a.wasm")
                .expect("valid")
                .function
                .key(),
            "hi.team"
        );
        for bad in ["hello", "hello=", "bad name=x.wasm", "=x.wasm"] {
            assert!(parse_function_arg(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_functions_are_refused() {
        let cli = Cli::try_parse_from([
            "wasmgate",
            "serve",
            "-f",
            "/nonexistent-but-unused",
            "--function",
            "a=x.wasm",
        ]);
        assert!(cli.is_ok());
        let Command::Serve(args) = Cli::try_parse_from([
            "wasmgate",
            "serve",
            "--function",
            "a=x.wasm",
            "--function",
            "a.openfaas-fn=y.wasm",
        ])
        .expect("parses")
        .command;
        let err = args.into_config().expect_err("duplicate");
        assert!(err.to_string().contains("defined twice"), "{err:#}");
    }
}
