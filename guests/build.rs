//! Builds every function in `functions/` for `wasm32-wasip2` and writes, for each, a constant with the
//! path of its component plus a `foreach_guest!` macro that lists them all. Tests use the macro to make
//! sure no guest goes without a test.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let functions = manifest_dir.join("functions");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    // A target directory of its own: the outer cargo holds the lock on ours while this script runs.
    let target_dir = out_dir.join("wasm-target");

    println!(
        "cargo:rerun-if-changed={}",
        functions.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        functions.join("Cargo.lock").display()
    );

    let names = guest_names(&functions);
    for name in &names {
        println!("cargo:rerun-if-changed={}", functions.join(name).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(functions.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(&functions);
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        command.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str()
            && (key.starts_with("CARGO_PROFILE_")
                || key.starts_with("CARGO_TARGET_") && key != "CARGO_TARGET_DIR")
        {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .expect("run cargo to build the guest functions");
    if !status.success() {
        panic!(
            "building the guest functions failed ({status}); is the target installed? \
             Run: rustup target add {TARGET}"
        );
    }

    let mut generated = String::new();
    for name in &names {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(
            wasm.exists(),
            "the build did not produce {}",
            wasm.display()
        );
        let constant = name.to_uppercase().replace('-', "_");
        generated.push_str(&format!(
            "/// Path of the built `{name}` component (`guests/functions/{name}`).\n\
             pub const {constant}: &str = {path:?};\n",
            path = wasm.display().to_string()
        ));
    }
    generated.push_str(
        "/// Calls `$mac!(name)` once for every guest function, so a test module can require a test per guest.\n\
         #[macro_export]\nmacro_rules! foreach_guest {\n    ($mac:ident) => {\n",
    );
    for name in &names {
        generated.push_str(&format!("        $mac!({});\n", name.replace('-', "_")));
    }
    generated.push_str("    };\n}\n");
    fs::write(out_dir.join("guests.rs"), generated).expect("write guests.rs");
}

/// The members of the guest workspace, read from the directories that hold a `Cargo.toml`.
fn guest_names(functions: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(functions)
        .expect("read guests/functions")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}
