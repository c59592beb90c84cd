//! The `wasmgate` command line: the gateway's `serve`, and the client commands of faas-cli (`new`,
//! `build`, `push`, `deploy`, `invoke`, ...) that talk to a gateway over its API. `main.rs` only parses
//! arguments, installs logging and calls [`run`].
//!
//! Modules: [`cli`] (arguments) and [`serve`] (`serve`'s flags, validated into a `ServeConfig`),
//! [`client`] (the API client), [`commands`] (one function per API command) and [`deploy`] (`deploy`
//! and `push`), project files ([`stack`], [`lang`], [`templates`], a Spin component's files:
//! [`spin_files`]), and terminal output ([`paint`],
//! [`logwriter`]).

#![deny(missing_docs)]

pub mod cli;
pub mod client;
pub mod commands;
pub mod deploy;
pub mod lang;
pub mod logwriter;
pub mod otel;
pub mod paint;
pub mod serve;
pub mod spin_files;
pub mod stack;
pub mod templates;

use crate::cli::{Cli, Command, SecretAction};

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => wasmgate_gateway::serve(args.into_config()?).await,
        Command::New {
            gateway,
            name,
            lang,
            wasi,
        } => templates::new_function(&gateway, &name, lang, wasi),
        Command::Build { gateway, filter } => templates::build(&gateway, &filter),
        Command::Up { gateway, filter } => {
            // As faas-cli up: build, push (the functions with an OCI image), deploy.
            templates::build(&gateway, &filter)?;
            let (stack, _) = gateway.read_stack()?;
            if stack.functions.iter().any(|(name, f)| {
                (filter.is_empty() || filter.contains(name))
                    && wasmgate_oci::Reference::looks_like(&f.image)
            }) {
                deploy::push(&gateway, &filter).await?;
            }
            deploy::deploy(&gateway, &filter).await
        }
        Command::Push { gateway, filter } => deploy::push(&gateway, &filter).await,
        Command::Deploy { gateway, filter } => deploy::deploy(&gateway, &filter).await,
        Command::List {
            gateway,
            namespace,
            json,
        } => commands::list(&gateway, namespace.as_deref(), json).await,
        Command::Describe {
            gateway,
            name,
            namespace,
            json,
        } => commands::describe(&gateway, &name, &namespace, json).await,
        Command::Invoke {
            gateway,
            name,
            method,
            headers,
            query,
            asynchronous,
            callback_url,
        } => {
            let call = commands::Call {
                name: &name,
                method: &method,
                headers: &headers,
                query: &query,
                asynchronous,
                callback_url: callback_url.as_deref(),
            };
            commands::invoke(&gateway, &call).await
        }
        Command::Remove {
            gateway,
            name,
            namespace,
        } => commands::remove(&gateway, &name, &namespace).await,
        Command::Logs {
            gateway,
            name,
            namespace,
            tail,
            since,
            follow,
        } => commands::logs(&gateway, &name, &namespace, tail, since.as_deref(), follow).await,
        Command::Secret { action } => match action {
            SecretAction::Create {
                gateway,
                name,
                from_literal,
                namespace,
            } => {
                commands::secret_create(&gateway, &name, &namespace, from_literal.as_deref()).await
            }
            SecretAction::List {
                gateway,
                namespace,
                json,
            } => commands::secret_list(&gateway, &namespace, json).await,
            SecretAction::Remove {
                gateway,
                name,
                namespace,
            } => commands::secret_remove(&gateway, &name, &namespace).await,
        },
        Command::Login {
            gateway,
            username,
            password_stdin,
            password,
        } => commands::login(&gateway, &username, password.as_deref(), password_stdin).await,
        Command::Logout { gateway } => commands::logout(&gateway),
        Command::Version { gateway, json } => commands::version(&gateway, json).await,
    }
}
