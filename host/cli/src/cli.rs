//! The command line: [`Cli`], its subcommands and [`GatewayArgs`], which every client command takes.
//! `serve`'s own flags and their validation are [`ServeArgs`] (`serve.rs`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmgate_openfaas::names::DEFAULT_NAMESPACE;

use crate::client::{ApiClient, resolve_gateway, saved_login};
use crate::lang::Lang;
use crate::serve::ServeArgs;
use crate::stack::Stack;

/// Where to find the gateway, shared by every client subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// The gateway URL [default: provider.gateway of the stack file, else $OPENFAAS_URL, else
    /// http://127.0.0.1:8080].
    #[arg(short = 'g', long, global = true)]
    pub gateway: Option<String>,

    /// A faas-cli stack file whose provider.gateway names the gateway (used only if it exists).
    #[arg(short = 'f', long = "yaml", global = true, default_value = "stack.yml")]
    pub stack: PathBuf,
}

impl GatewayArgs {
    /// The gateway URL, picked as faas-cli picks it.
    pub fn url(&self) -> anyhow::Result<String> {
        let stack_gateway =
            if self.stack.exists() && !wasmgate_spin::deployment::is_manifest_path(&self.stack) {
                Stack::read(&self.stack)?.provider.and_then(|p| p.gateway)
            } else {
                None
            };
        let env = std::env::var("OPENFAAS_URL").ok();
        Ok(resolve_gateway(
            self.gateway.as_deref(),
            stack_gateway.as_deref(),
            env.as_deref(),
        ))
    }

    /// The stack file and the folder its paths are relative to.
    pub fn read_stack(&self) -> anyhow::Result<(Stack, PathBuf)> {
        let stack = Stack::read(&self.stack)
            .with_context(|| format!("reading the stack file {}", self.stack.display()))?;
        let base = self
            .stack
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        Ok((stack, base))
    }

    /// A client for the gateway, with the credentials `login` saved for it.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let url = self.url()?;
        let login = saved_login(&url)?;
        ApiClient::new(&url, login)
    }
}

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
#[allow(
    missing_docs,
    reason = "the undocumented fields are the flattened `GatewayArgs`, whose flags document themselves; \
              a doc comment on them would be clap help text"
)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load functions and serve them at /function/<name>.
    Serve(Box<ServeArgs>),
    /// Create a function from a template and add it to the stack file.
    New {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The function's name (lowercase letters, digits, '-', '_').
        name: String,
        /// The template.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The wasi:http generation to write it for: 0.3 (Rust's default) or 0.2 (the only one
        /// the js and python toolchains build).
        #[arg(long, value_enum)]
        wasi: Option<crate::lang::Wasi>,
    },
    /// Build the functions of a stack file with their toolchains.
    Build {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Only these functions; repeatable.
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Build, push (functions with an OCI image), then deploy, like `faas-cli up`.
    Up {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Only these functions; repeatable.
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Publish the components of the functions whose `image` is an OCI reference
    /// (`registry/repository:tag`) to their registry, with the Docker config file's credentials.
    Push {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Only these functions; repeatable.
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Deploy the functions of a stack file (-f, default ./stack.yml): upload each component the
    /// gateway lacks, then create or update the function.
    Deploy {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Only these functions (by name); repeatable.
        #[arg(long)]
        filter: Vec<String>,
    },
    /// List the functions of a gateway.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Only this namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Print the gateway's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one function: status, replicas, invocations, image, URL, settings.
    Describe {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The function.
        name: String,
        /// Its namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        /// Print the gateway's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Call a function: the body from standard input, its answer to standard output.
    Invoke {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The function (`name` or `name.namespace`).
        name: String,
        /// The HTTP method.
        #[arg(short, long, default_value = "POST")]
        method: String,
        /// A request header, `key=value`; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// A query parameter, `key=value`; repeatable.
        #[arg(short, long)]
        query: Vec<String>,
        /// Queue the call (`/async-function/NAME`) and print its call id instead of waiting.
        #[arg(short = 'a', long = "async")]
        asynchronous: bool,
        /// With --async: where the gateway POSTs the function's answer (`X-Callback-Url`).
        #[arg(long, requires = "asynchronous")]
        callback_url: Option<String>,
    },
    /// Remove a function.
    #[command(alias = "rm")]
    Remove {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The function.
        name: String,
        /// Its namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Print a function's logs.
    Logs {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The function.
        name: String,
        /// Its namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u64>,
        /// Only lines newer than this (a duration such as 5m, or an RFC 3339 time).
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new lines as they come.
        #[arg(long)]
        follow: bool,
    },
    /// Manage secrets.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Check credentials against a gateway and save them (owner-only file) for the other commands.
    Login {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The user name.
        #[arg(short, long, default_value = "admin")]
        username: String,
        /// Read the password from standard input.
        #[arg(short = 's', long)]
        password_stdin: bool,
        /// The password (prefer --password-stdin: arguments show in `ps`).
        #[arg(short, long)]
        password: Option<String>,
    },
    /// Forget the credentials saved for a gateway.
    Logout {
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Print this program's version and the gateway's.
    Version {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `wasmgate secret ...`.
#[allow(
    missing_docs,
    reason = "the undocumented fields are the flattened `GatewayArgs`, whose flags document themselves; \
              a doc comment on them would be clap help text"
)]
#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Create a secret; the value from --from-literal, else standard input.
    Create {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The secret's name.
        name: String,
        /// Its value.
        #[arg(long)]
        from_literal: Option<String>,
        /// Its namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// List secret names (never values).
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        /// Print the gateway's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    #[command(alias = "rm")]
    Remove {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The secret's name.
        name: String,
        /// Its namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // faas-cli's spellings parse.
        for words in [
            &["wasmgate", "ls", "--json"][..],
            &["wasmgate", "rm", "hello", "-n", "team"],
            &[
                "wasmgate", "invoke", "hello", "-m", "GET", "-H", "a=b", "-q", "x=1",
            ],
            &["wasmgate", "secret", "create", "k", "--from-literal", "v"],
            &[
                "wasmgate",
                "login",
                "-u",
                "admin",
                "--password-stdin",
                "-g",
                "http://h:1",
            ],
            &[
                "wasmgate", "logs", "hello", "--tail", "5", "--since", "5m", "--follow",
            ],
        ] {
            Cli::try_parse_from(words).unwrap_or_else(|e| panic!("{words:?}: {e}"));
        }
    }
}
