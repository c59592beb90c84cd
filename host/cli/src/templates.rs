//! `new` and `build`: function folders from the templates embedded in the binary, and the toolchain
//! of each language.
//!
//! | lang | source | toolchain | component | world |
//! |---|---|---|---|---|
//! | `rust` | `src/lib.rs` | cargo, target `wasm32-wasip2` | `target/wasm32-wasip2/release/NAME.wasm` | wasi:http 0.3 (`wasip3` crate); 0.2 with `--wasi 0.2` (`wasip2` crate) |
//! | `js` | `handler.js` | npm package `@bytecodealliance/componentize-js` | `build/NAME.wasm` | wasi:http 0.2 |
//! | `python` | `app.py` | PyPI package `componentize-py` | `build/NAME.wasm` | wasi:http 0.2 |
//!
//! A toolchain that is missing stops `build` with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::cli::GatewayArgs;
use crate::lang::{Lang, Wasi};
use crate::stack::Stack;

pub use crate::lang::{COMPONENTIZE_JS, COMPONENTIZE_PY};

/// `wasmgate new NAME --lang L`: a function folder from the template, added to the stack file.
pub fn new_function(
    gateway: &GatewayArgs,
    name: &str,
    lang: Lang,
    wasi: Option<Wasi>,
) -> anyhow::Result<()> {
    wasmgate_openfaas::names::FunctionRef::new(name, None)?;
    let wasi = lang.world(wasi)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!(
            "name the function in lowercase letters, digits, '-' and '_', starting with a letter"
        );
    }
    let stack_path = &gateway.stack;
    let base = stack_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let folder = base.join(name);
    if folder.exists() {
        bail!("{} already exists", folder.display());
    }
    let existing = if stack_path.exists() {
        let stack = Stack::read(stack_path)?;
        if stack.functions.contains_key(name) {
            bail!("{name} is already in {}", stack_path.display());
        }
        Some(std::fs::read_to_string(stack_path)?)
    } else {
        None
    };
    let entry = format!(
        "  {name}:\n    lang: {lang}\n    handler: ./{name}\n    image: {name}/{component}\n",
        lang = lang.name(),
        component = lang.component(name),
    );
    let text = match &existing {
        Some(text) => {
            let mut text = text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text + &entry
        }
        None => format!(
            "version: 1.0\nprovider:\n  name: openfaas\n  gateway: ${{OPENFAAS_URL:-http://127.0.0.1:8080}}\nfunctions:\n{entry}"
        ),
    };
    // Appending is only right when `functions:` is the last section; check by reading it back.
    let parsed = Stack::parse(&text, |_| None)?;
    if !parsed.functions.contains_key(name) {
        bail!(
            "could not add {name} to {}: put `functions:` last, or add this by hand:\n{entry}",
            stack_path.display()
        );
    }
    if let Err(error) = write_template(&folder, name, lang, wasi) {
        let _ = std::fs::remove_dir_all(&folder);
        return Err(error);
    }
    let faas_cli_template = match write_faas_cli_template(&base, lang) {
        Ok(written) => written,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&folder);
            return Err(error);
        }
    };
    std::fs::write(stack_path, text)
        .with_context(|| format!("writing {}", stack_path.display()))?;
    println!(
        "Created {} ({}, wasi:http {}) and added {name} to {}",
        folder.display(),
        lang.name(),
        match wasi {
            Wasi::P2 => "0.2",
            Wasi::P3 => "0.3",
        },
        stack_path.display()
    );
    if let Some(path) = faas_cli_template {
        println!(
            "Wrote {} so that `faas-cli deploy` accepts the stack file",
            path.display()
        );
    }
    match lang {
        Lang::Rust => {}
        Lang::Js => println!(
            "Install its build tool once with: npm install --prefix {}",
            folder.display()
        ),
        Lang::Python => println!(
            "It builds with componentize-py; install it once with: pip install {COMPONENTIZE_PY}"
        ),
    }
    Ok(())
}

/// Where faas-cli looks for a language's template, relative to the folder it runs in.
const FAAS_CLI_TEMPLATE_DIR: &str = "template";

/// `faas-cli deploy -f stack.yml` reads `./template/<lang>/template.yml` for every function whose
/// `lang` is not `dockerfile`, to take the `fprocess` it sends as `envProcess`, and stops before any
/// request when the file is missing. A component has no process to start, so the file wasmgate
/// writes names the language and nothing else; faas-cli then sends no `envProcess`. It is written
/// beside the stack file (faas-cli runs where the stack file is), once: an existing one is left as
/// it is. Returns its path when it was written.
fn write_faas_cli_template(base: &Path, lang: Lang) -> anyhow::Result<Option<PathBuf>> {
    let folder = base.join(FAAS_CLI_TEMPLATE_DIR).join(lang.name());
    let path = folder.join("template.yml");
    if path.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    std::fs::write(&path, faas_cli_template(lang))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

/// The text of `template/<lang>/template.yml` (faas-cli's `LanguageTemplate`).
fn faas_cli_template(lang: Lang) -> String {
    format!(
        "# Written by `wasmgate new` for faas-cli, which reads this file before it deploys a function\n\
         # whose `lang` is {lang} (`faas-cli deploy -f stack.yml`). wasmgate runs the function as a\n\
         # WebAssembly component, so there is no `fprocess` to start and no Dockerfile to build:\n\
         # build with `wasmgate build`, then deploy with `faas-cli deploy` or `wasmgate deploy`.\n\
         language: {lang}\n",
        lang = lang.name()
    )
}

fn write_template(folder: &Path, name: &str, lang: Lang, wasi: Wasi) -> anyhow::Result<()> {
    for (path, text) in lang.files(wasi) {
        let path = folder.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text.replace("{{name}}", name))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `wasmgate build`: builds every function of the stack file (or those named) with its toolchain.
pub fn build(gateway: &GatewayArgs, only: &[String]) -> anyhow::Result<()> {
    let (stack, base) = gateway.read_stack()?;
    for name in only {
        if !stack.functions.contains_key(name) {
            bail!("no function {name} in {}", gateway.stack.display());
        }
    }
    for (name, function) in &stack.functions {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let Some(handler) = &function.handler else {
            println!(
                "{name}: no handler folder, nothing to build (image {})",
                function.image
            );
            continue;
        };
        let folder = base.join(handler);
        let Some(image) = crate::stack::component_path(name, function, &base) else {
            bail!("{name}: cannot tell where to build it: give it a known lang (rust, js, python)");
        };
        let lang = function.lang.as_deref().unwrap_or("(none)");
        match Lang::from_stack(lang) {
            Some(Lang::Rust) => build_rust(name, &folder)?,
            Some(Lang::Js) => build_js(name, &folder, &image)?,
            Some(Lang::Python) => build_python(name, &folder, &image)?,
            None => {
                bail!("{name}: cannot build lang {lang}: the templates are rust, js and python")
            }
        }
    }
    Ok(())
}

fn build_rust(name: &str, folder: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Without the target, cargo's own message is confusing; say what to run instead.
    if let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        && output.status.success()
        && !String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
    {
        bail!(
            "{name}: the wasm32-wasip2 target is missing; install it with: rustup target add wasm32-wasip2"
        );
    }
    println!("{name}: cargo build --release --target wasm32-wasip2");
    let mut command = Command::new(&cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(folder.join("Cargo.toml"))
        // The image path in the stack file points into the function's own target folder, whatever
        // CARGO_TARGET_DIR says.
        .arg("--target-dir")
        .arg(folder.join("target"));
    run(name, &mut command, "install Rust with https://rustup.rs")
}

fn build_js(name: &str, folder: &Path, image: &Path) -> anyhow::Result<()> {
    if which("node").is_none() {
        bail!("{name}: Node.js is missing; install Node.js 20 or newer (https://nodejs.org)");
    }
    // The function's own copy (from its package.json) first, then one on PATH.
    let local = folder.join("node_modules/.bin/componentize-js");
    let Some(componentize) = local
        .is_file()
        .then_some(local)
        .or_else(|| which("componentize-js"))
    else {
        bail!(
            "{name}: componentize-js is missing; install it with: npm install --prefix {} {COMPONENTIZE_JS}",
            folder.display()
        );
    };
    let source = folder.join("handler.js");
    if !source.is_file() {
        bail!("{name}: {} is missing", source.display());
    }
    create_parent(image)?;
    println!("{name}: componentize-js handler.js");
    let mut command = Command::new(componentize);
    command
        .arg("--wit")
        .arg(folder.join("wit"))
        .args(["--world-name", "function", "--out"])
        .arg(image)
        .arg(source)
        .current_dir(folder);
    run(name, &mut command, "")
}

fn build_python(name: &str, folder: &Path, image: &Path) -> anyhow::Result<()> {
    // A virtual environment inside the function folder first, then one on PATH.
    let local = folder.join(".venv/bin/componentize-py");
    let Some(componentize) = local
        .is_file()
        .then_some(local)
        .or_else(|| which("componentize-py"))
    else {
        bail!("{name}: componentize-py is missing; install it with: pip install {COMPONENTIZE_PY}");
    };
    if !folder.join("app.py").is_file() {
        bail!("{name}: {} is missing", folder.join("app.py").display());
    }
    create_parent(image)?;
    println!("{name}: componentize-py componentize app");
    let mut command = Command::new(componentize);
    command
        .arg("--wit-path")
        .arg(folder.join("wit"))
        .args(["--world", "function", "componentize", "--python-path"])
        .arg(folder)
        .args(["app", "--output"])
        .arg(image)
        .current_dir(folder);
    run(name, &mut command, "")
}

/// Runs a build command; its output goes straight to the terminal.
fn run(name: &str, command: &mut Command, install_hint: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command.status().map_err(|e| {
        anyhow::anyhow!(
            "{name}: cannot run {program}: {e}{}{install_hint}",
            if install_hint.is_empty() { "" } else { "; " }
        )
    })?;
    if !status.success() {
        bail!("{name}: the build failed ({status})");
    }
    Ok(())
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(())
}

/// The program `name` as found on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
