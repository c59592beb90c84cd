//! The repository checks its own shape, as a test (after rust-analyzer's `tidy`): the arrows between
//! crates and between modules, and the invariants of ARCHITECTURE.md that a program can check.
//!
//! - **Crates depend only downward.** Each crate has a layer ([`LAYERS`]); a crate may depend only on
//!   crates of a lower layer. Test helpers ([`OUTSIDE`]) sit outside the layers.
//! - **No module imports in a circle.** Within each crate, a module that names another (`use
//!   crate::a::b`, `super::x`, a path in code) points at it; those arrows never close a loop.
//! - **Only the runtime knows wasmtime**: no host crate depends on it or names it in code.
//! - **The runtime knows nothing of OpenFaaS**: its code never says so.
//! - **A long file says why**: every Rust file over [`LONG_FILE`] lines gives its reason in its first
//!   lines ("Over 600 lines: ...").
//!
//! The checks read the manifests and sources as text (no parser crate): each is small, and each has a
//! test below that shows it failing on the mistake it exists for.
//!
//! Over 600 lines: each check reads manifests and sources as text, with its own tests of the check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use wasmgate_tests::repository_root;

/// The layered crates, lowest layer first: package name, folder, layer. A crate may depend only on
/// crates of a strictly lower layer, so two crates of one layer know nothing of each other.
const LAYERS: &[(&str, &str, u32)] = &[
    ("wasmgate-runtime", "runtime", 0),
    ("wasmgate-openfaas", "host/openfaas", 0),
    ("wasmgate-net", "host/net", 0),
    ("wasmgate-spin", "host/spin", 0),
    ("wasmgate-oci", "host/oci", 1),
    ("wasmgate-gateway", "host/gateway", 2),
    ("wasmgate", "host/cli", 3),
];

/// Workspace members outside the layers: they may depend on any layer, and no layered crate may
/// depend on them, except on `wasmgate-guests` (the test guests) as a dev-dependency.
const OUTSIDE: &[&str] = &["wasmgate-guests", "wasmgate-benches", "wasmgate-tests"];

/// Arrows that close a circle and are known: (crate, from, to, why it is still there). None is
/// left; one added needs its reason, and the test fails once it is gone, so the list stays true.
const KNOWN_CIRCLES: &[(&str, &str, &str, &str)] = &[];

/// Lines past which a file must say, at its top, why it is that long.
const LONG_FILE: usize = 600;

/// The long files of `paths` (with their lengths) whose first 40 lines do not say why.
fn unexplained_long_files(files: &[(PathBuf, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(_, text)| text.lines().count() > LONG_FILE)
        .filter(|(_, text)| !text.lines().take(40).any(|l| l.contains("600 lines")))
        .map(|(path, text)| format!("{} ({} lines)", path.display(), text.lines().count()))
        .collect()
}

#[test]
fn a_long_file_says_why() {
    let root = repository_root();
    let files: Vec<(PathBuf, String)> = ["runtime", "host", "tests", "benches", "guests"]
        .iter()
        .flat_map(|dir| rust_files(&root.join(dir)))
        .collect();
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let unexplained = unexplained_long_files(&files);
    assert!(
        unexplained.is_empty(),
        "over {LONG_FILE} lines without a reason at the top (\"Over 600 lines: ...\"): {unexplained:?}"
    );
}

#[test]
fn the_long_file_check_finds_one_without_a_reason() {
    let long = "fn f() {}\n".repeat(LONG_FILE + 1);
    let explained = format!("//! Over 600 lines: a reason.\n{long}");
    let files = vec![
        (PathBuf::from("long.rs"), long),
        (PathBuf::from("explained.rs"), explained),
        (PathBuf::from("short.rs"), "fn f() {}\n".to_string()),
    ];
    assert_eq!(unexplained_long_files(&files), ["long.rs (601 lines)"]);
}

/// The crate every layer may use in its tests.
const TEST_GUESTS: &str = "wasmgate-guests";

/// One dependency of a crate on another member of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dependency {
    from: String,
    to: String,
    /// `dependencies`, `dev-dependencies` or `build-dependencies`.
    kind: String,
}

#[test]
fn crates_depend_only_downward() {
    let root = repository_root();
    let members = workspace_members(&root);
    let mut packages = BTreeMap::new();
    for member in &members {
        let manifest = read(&root.join(member).join("Cargo.toml"));
        packages.insert(package_name(&manifest), manifest);
    }
    let names: BTreeSet<String> = packages.keys().cloned().collect();
    let mut dependencies = Vec::new();
    for (name, manifest) in &packages {
        for (to, kind) in dependencies_of(manifest) {
            if names.contains(&to) {
                dependencies.push(Dependency {
                    from: name.clone(),
                    to,
                    kind,
                });
            }
        }
    }
    let problems = layering_problems(&names, &dependencies);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_module_imports_in_a_circle() {
    let root = repository_root();
    let mut problems = Vec::new();
    for (name, folder, _) in LAYERS {
        let sources = crate_sources(&root.join(folder).join("src"));
        let mut edges = module_arrows(&sources);
        for (_, from, to, _) in KNOWN_CIRCLES.iter().filter(|k| k.0 == *name) {
            let known = edges
                .get_mut(*from)
                .is_some_and(|targets| targets.remove(*to));
            if !known {
                problems.push(format!(
                    "{name}: {from} -> {to} is in KNOWN_CIRCLES but no longer there: remove it"
                ));
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            problems.push(format!(
                "{name}: modules import in a circle: {}",
                cycle.join(" -> ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_runtime_knows_wasmtime() {
    let root = repository_root();
    let mut problems = Vec::new();
    for (name, folder, _) in LAYERS.iter().filter(|(_, f, _)| f.starts_with("host/")) {
        let manifest = read(&root.join(folder).join("Cargo.toml"));
        for (to, _) in dependencies_of(&manifest) {
            if to.starts_with("wasmtime") {
                problems.push(format!("{name} depends on {to}"));
            }
        }
        for (path, text) in rust_files(&root.join(folder)) {
            let code = strip_comments(&text);
            if code.contains("wasmtime::") || code.contains("wasmtime_") {
                problems.push(format!("{} names wasmtime", path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_runtime_knows_nothing_of_openfaas() {
    let root = repository_root();
    let mut problems = Vec::new();
    for (path, text) in rust_files(&root.join("runtime/src")) {
        if strip_comments(&text)
            .to_ascii_lowercase()
            .contains("openfaas")
        {
            problems.push(format!("{} names OpenFaaS in its code", path.display()));
        }
    }
    let manifest = read(&root.join("runtime/Cargo.toml"));
    for (to, _) in dependencies_of(&manifest) {
        if to.contains("openfaas") {
            problems.push(format!("wasmgate-runtime depends on {to}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What is wrong with `dependencies` between the workspace's `packages`: an unplaced crate, an
/// upward or sideways arrow, a dependency on a test helper.
fn layering_problems(packages: &BTreeSet<String>, dependencies: &[Dependency]) -> Vec<String> {
    let layer = |name: &str| LAYERS.iter().find(|(n, _, _)| *n == name).map(|l| l.2);
    let mut problems = Vec::new();
    for package in packages {
        if layer(package).is_none() && !OUTSIDE.contains(&package.as_str()) {
            problems.push(format!(
                "{package} has no layer: add it to LAYERS (or OUTSIDE) in tests/tidy.rs"
            ));
        }
    }
    for d in dependencies {
        let Some(from) = layer(&d.from) else {
            continue;
        };
        match layer(&d.to) {
            Some(to) if to < from => {}
            Some(to) => problems.push(format!(
                "{} (layer {from}) depends on {} (layer {to}): a crate may depend only on lower layers",
                d.from, d.to
            )),
            None if d.to == TEST_GUESTS && d.kind == "dev-dependencies" => {}
            None => problems.push(format!(
                "{} depends on {} ({}), which is outside the layers",
                d.from, d.to, d.kind
            )),
        }
    }
    problems
}

/// The folders of the workspace's members, from `members = [...]` of the root manifest.
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest = read(&root.join("Cargo.toml"));
    let start = manifest.find("members").expect("a members list");
    let open = start + manifest[start..].find('[').expect("[");
    let close = open + manifest[open..].find(']').expect("]");
    manifest[open + 1..close]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

fn package_name(manifest: &str) -> String {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name") {
            return value
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"')
                .to_string();
        }
    }
    panic!("a manifest without [package] name");
}

/// Every dependency a manifest lists, with the kind of its section.
fn dependencies_of(manifest: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']');
            // `[target.'cfg(...)'.dependencies]` counts as its last part.
            section = header.rsplit('.').next().unwrap_or(header).to_string();
            continue;
        }
        if !section.ends_with("dependencies") || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push((name, section.clone()));
        }
    }
    found
}

/// A crate's source files by module path (`[]` for the crate root, `["http", "api"]` for
/// `src/http/api.rs`), without comments and test modules. `main.rs` beside a `lib.rs` is a separate
/// crate (the binary) and is left out.
fn crate_sources(src: &Path) -> BTreeMap<Vec<String>, String> {
    let mut sources = BTreeMap::new();
    let has_lib = src.join("lib.rs").exists();
    for (path, text) in rust_files(src) {
        let relative = path.strip_prefix(src).expect("inside src");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let file = parts.pop().expect("a file name");
        match file.as_str() {
            "lib.rs" if parts.is_empty() => {}
            "main.rs" if parts.is_empty() && has_lib => continue,
            "main.rs" if parts.is_empty() => {}
            "mod.rs" => {}
            other => parts.push(other.trim_end_matches(".rs").to_string()),
        }
        sources.insert(parts, without_test_module(&strip_comments(&text)));
    }
    sources
}

/// The arrows between the modules of one crate: from each module to every module it names. A name
/// that a module re-exports (`pub use crate::error::Error` in `lib.rs`) points at the module that
/// defines it. The crate root is left out: it declares the modules and is the crate's facade (the
/// runtime's `Runtime` lives there and the modules it calls name it), so arrows into or out of it say
/// nothing about the layers inside.
fn module_arrows(sources: &BTreeMap<Vec<String>, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<Vec<String>> = sources.keys().cloned().collect();
    let absolute_paths = |module: &Vec<String>, code: &str| -> Vec<Vec<String>> {
        named_paths(code)
            .into_iter()
            .filter_map(|path| absolute(module, &path, &modules))
            .collect()
    };
    // (module, name) -> the module the name comes from, for every name a module brings in with `use`.
    let mut reexports: BTreeMap<(Vec<String>, String), Vec<String>> = BTreeMap::new();
    for (module, code) in sources {
        for path in absolute_paths(module, code) {
            if let Some(name) = path.last() {
                let from = owning_module(&path, &modules);
                if &from != module {
                    reexports.insert((module.clone(), name.clone()), from);
                }
            }
        }
    }
    let mut arrows = BTreeMap::new();
    for (module, code) in sources.iter().filter(|(m, _)| !m.is_empty()) {
        let mut targets = BTreeSet::new();
        for path in absolute_paths(module, code) {
            let mut target = owning_module(&path, &modules);
            // Follow re-exports (a few steps at most: `pub use` chains are short).
            for _ in 0..4 {
                let Some(name) = path.get(target.len()) else {
                    break;
                };
                match reexports.get(&(target.clone(), name.clone())) {
                    Some(from) if from != &target => target = from.clone(),
                    _ => break,
                }
            }
            if &target != module && !target.is_empty() {
                targets.insert(module_name(&target));
            }
        }
        arrows.insert(module_name(module), targets);
    }
    arrows
}

/// `path` as named in `module`, from the crate root; `None` for a path into another crate.
fn absolute(
    module: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    match path.first().map(String::as_str) {
        Some("crate") => Some(path[1..].to_vec()),
        Some("super") => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let mut base = module.to_vec();
            for _ in 0..ups {
                base.pop();
            }
            base.extend(path[ups..].iter().cloned());
            Some(base)
        }
        Some("self") => {
            let mut base = module.to_vec();
            base.extend(path[1..].iter().cloned());
            Some(base)
        }
        Some(first) => {
            // A relative path into a child module (`use store::Call` in `queue/mod.rs`).
            let mut child = module.to_vec();
            child.push(first.to_string());
            modules.contains(&child).then(|| {
                let mut base = module.to_vec();
                base.extend(path.iter().cloned());
                base
            })
        }
        None => None,
    }
}

/// The longest start of `path` that is a module of the crate (the root if none is).
fn owning_module(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
        .unwrap_or_default()
}

fn module_name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

/// The paths code names: every `use` tree (expanded, `a::{b, c::d}` gives `a::b` and `a::c::d`) and
/// every `crate::`, `super::` or `self::` path elsewhere.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            i += 1;
            use_tree(&tokens, &mut i, Vec::new(), &mut paths);
        } else if matches!(tokens[i].as_str(), "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || tokens[i - 1] != "::")
        {
            let mut path = vec![tokens[i].clone()];
            i += 1;
            while tokens.get(i).is_some_and(|t| t == "::")
                && tokens.get(i + 1).is_some_and(|t| is_identifier(t))
            {
                path.push(tokens[i + 1].clone());
                i += 2;
            }
            paths.push(path);
        } else {
            i += 1;
        }
    }
    paths
}

/// Reads one `use` tree starting at `tokens[*i]`, after `prefix`, into `paths`.
fn use_tree(tokens: &[String], i: &mut usize, prefix: Vec<String>, paths: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while let Some(token) = tokens.get(*i) {
        match token.as_str() {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                loop {
                    use_tree(tokens, i, path.clone(), paths);
                    match tokens.get(*i).map(String::as_str) {
                        Some(",") => *i += 1,
                        Some("}") => {
                            *i += 1;
                            break;
                        }
                        _ => break,
                    }
                    if tokens.get(*i).is_some_and(|t| t == "}") {
                        *i += 1;
                        break;
                    }
                }
                return;
            }
            "as" => {
                *i += 2;
            }
            "*" => *i += 1,
            "," | "}" | ";" => break,
            t if is_identifier(t) => {
                path.push(t.to_string());
                *i += 1;
            }
            _ => break,
        }
    }
    if tokens.get(*i).is_some_and(|t| t == ";") {
        *i += 1;
    }
    paths.push(path);
}

fn is_identifier(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and every other character as a token of its own; string and character literals
/// are dropped (their text is not code).
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_string());
            i += 2;
        } else if c == '"' {
            i = skip_string(&chars, i);
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// The index after the string literal that starts at `chars[start]` (a `"`).
fn skip_string(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// `code` without `//` comments (doc comments included); string literals are kept whole.
fn strip_comments(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for line in code.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut end = chars.len();
        while i < chars.len() {
            match chars[i] {
                '"' => i = skip_string(&chars, i),
                '\'' if chars.get(i + 2) == Some(&'\'') => i += 3,
                '/' if chars.get(i + 1) == Some(&'/') => {
                    end = i;
                    break;
                }
                _ => i += 1,
            }
        }
        out.extend(&chars[..end.min(chars.len())]);
        out.push('\n');
    }
    out
}

/// `code` up to its `#[cfg(test)] mod tests`, which by this repository's habit ends a file.
fn without_test_module(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines[n + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_start().starts_with("mod "))
        {
            return lines[..n].join("\n");
        }
    }
    code.to_string()
}

/// One circle of arrows, if there is any: the modules along it, the first repeated at the end.
fn find_cycle(arrows: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        arrows: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|n| n == node).expect("on the stack");
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in arrows.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, arrows, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in arrows.keys() {
        if let Some(cycle) = visit(node, arrows, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// Every `.rs` file under `dir`, sorted, with its text; build outputs and embedded templates skipped.
fn rust_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.map(|e| e.expect("a folder entry")) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "templates" | "node_modules") {
                    folders.push(path);
                }
            } else if name.ends_with(".rs") {
                let text = read(&path);
                found.push((path, text));
            }
        }
    }
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The checks themselves, on made-up inputs: each must catch the mistake it is there for.
mod the_checks_catch {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn dependency(from: &str, to: &str, kind: &str) -> Dependency {
        Dependency {
            from: from.into(),
            to: to.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn an_upward_or_sideways_dependency() {
        let packages = names(&["wasmgate-openfaas", "wasmgate-gateway", "wasmgate-runtime"]);
        let fine = [dependency(
            "wasmgate-gateway",
            "wasmgate-openfaas",
            "dependencies",
        )];
        assert!(layering_problems(&packages, &fine).is_empty());
        let upward = [dependency(
            "wasmgate-openfaas",
            "wasmgate-gateway",
            "dependencies",
        )];
        assert_eq!(layering_problems(&packages, &upward).len(), 1);
        let sideways = [dependency(
            "wasmgate-runtime",
            "wasmgate-openfaas",
            "dev-dependencies",
        )];
        assert_eq!(layering_problems(&packages, &sideways).len(), 1);
    }

    #[test]
    fn a_crate_without_a_layer() {
        let problems = layering_problems(&names(&["wasmgate-new"]), &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_module_circle() {
        let mut sources = BTreeMap::new();
        sources.insert(vec![], "pub mod a;\npub mod b;\npub mod c;\n".to_string());
        sources.insert(vec!["a".to_string()], "use crate::b::Thing;\n".to_string());
        sources.insert(
            vec!["b".to_string()],
            "use crate::{c::{self, Other}, x};\n".to_string(),
        );
        sources.insert(
            vec!["c".to_string()],
            "fn f() { super::a::g(); }\n".to_string(),
        );
        let cycle = find_cycle(&module_arrows(&sources)).expect("a -> b -> c -> a");
        assert_eq!(cycle, ["a", "b", "c", "a"]);
        // Without the last arrow there is none; comments and strings name nothing.
        sources.insert(
            vec!["c".to_string()],
            strip_comments("// use crate::a;\nconst S: &str = \"crate::a::x\";\n"),
        );
        assert_eq!(find_cycle(&module_arrows(&sources)), None);
    }

    #[test]
    fn relative_paths_into_children() {
        let mut sources = BTreeMap::new();
        sources.insert(vec!["q".to_string()], "pub use store::Call;\n".to_string());
        sources.insert(
            vec!["q".to_string(), "store".to_string()],
            "use super::Policy;\n".to_string(),
        );
        let cycle = find_cycle(&module_arrows(&sources)).expect("q -> q::store -> q");
        assert_eq!(cycle, ["q", "q::store", "q"]);
    }
}
