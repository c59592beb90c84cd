//! The languages `new` and `build` know, with the template files each one starts from (embedded in
//! the binary).

/// The componentize-js release the JavaScript template is built with. Its engine exports
/// `wasi:http/incoming-handler@0.2.10`, which is why the template's WIT is that version.
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
/// The componentize-py release the Python template is built with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The languages `new` has templates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, built with cargo for wasm32-wasip2.
    Rust,
    /// JavaScript, built with componentize-js (npm).
    #[value(alias = "javascript", alias = "node")]
    Js,
    /// Python, built with componentize-py (pip).
    #[value(alias = "py")]
    Python,
}

/// The generation of `wasi:http` a new function is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wasi {
    /// WASI 0.2: exports `wasi:http/incoming-handler@0.2` (the `wasi:http/proxy` world).
    #[value(name = "0.2")]
    P2,
    /// WASI 0.3: exports `wasi:http/handler@0.3` (the `wasi:http/service` world), async.
    #[value(name = "0.3")]
    P3,
}

impl Lang {
    /// The world a template of this language is written for, unless `wanted` names one; a world
    /// its toolchain cannot build is refused with the reason.
    pub fn world(self, wanted: Option<Wasi>) -> anyhow::Result<Wasi> {
        match (self, wanted) {
            (Lang::Rust, wanted) => Ok(wanted.unwrap_or(Wasi::P3)),
            (Lang::Js | Lang::Python, None | Some(Wasi::P2)) => Ok(Wasi::P2),
            (Lang::Js, Some(Wasi::P3)) => anyhow::bail!(
                "the js template builds with {COMPONENTIZE_JS}, which makes wasi:http 0.2 \
                 components only; leave out --wasi, or use --lang rust for 0.3"
            ),
            (Lang::Python, Some(Wasi::P3)) => anyhow::bail!(
                "the python template builds with {COMPONENTIZE_PY}, which makes wasi:http 0.2 \
                 components only; leave out --wasi, or use --lang rust for 0.3"
            ),
        }
    }

    /// The `lang:` of a stack file, as faas-cli templates spell it (with common aliases).
    pub fn from_stack(lang: &str) -> Option<Lang> {
        match lang {
            "rust" => Some(Lang::Rust),
            "js" | "javascript" | "node" => Some(Lang::Js),
            "python" | "py" | "python3" => Some(Lang::Python),
            _ => None,
        }
    }

    /// The name written into the stack file.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    /// The files of the template: path in the function folder, text with `{{name}}` to replace.
    pub(crate) fn files(self, wasi: Wasi) -> Vec<(&'static str, &'static str)> {
        let mut files = match (self, wasi) {
            (Lang::Rust, Wasi::P3) => vec![
                (
                    "Cargo.toml",
                    include_str!("../templates/rust/Cargo.toml.tmpl"),
                ),
                (
                    "src/lib.rs",
                    include_str!("../templates/rust/src/lib.rs.tmpl"),
                ),
                (".gitignore", "target/\n"),
            ],
            (Lang::Rust, Wasi::P2) => vec![
                (
                    "Cargo.toml",
                    include_str!("../templates/rust-p2/Cargo.toml.tmpl"),
                ),
                (
                    "src/lib.rs",
                    include_str!("../templates/rust-p2/src/lib.rs.tmpl"),
                ),
                (".gitignore", "target/\n"),
            ],
            (Lang::Js, _) => vec![
                (
                    "handler.js",
                    include_str!("../templates/js/handler.js.tmpl"),
                ),
                (
                    "package.json",
                    include_str!("../templates/js/package.json.tmpl"),
                ),
                (".gitignore", include_str!("../templates/js/gitignore.tmpl")),
            ],
            (Lang::Python, _) => vec![
                ("app.py", include_str!("../templates/python/app.py.tmpl")),
                (
                    ".gitignore",
                    include_str!("../templates/python/gitignore.tmpl"),
                ),
            ],
        };
        if matches!(self, Lang::Js | Lang::Python) {
            files.extend(WIT_FILES);
        }
        files
    }

    /// Where the built component lands, relative to the function folder.
    pub fn component(self, name: &str) -> String {
        match self {
            Lang::Rust => format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
            Lang::Js | Lang::Python => format!("build/{name}.wasm"),
        }
    }
}

/// The WIT world the JavaScript and Python templates build against (see `templates/wit/README.md`).
const WIT_FILES: [(&str, &str); 9] = [
    ("wit/README.md", include_str!("../templates/wit/README.md")),
    ("wit/world.wit", include_str!("../templates/wit/world.wit")),
    (
        "wit/deps/cli/package.wit",
        include_str!("../templates/wit/deps/cli/package.wit"),
    ),
    (
        "wit/deps/clocks/package.wit",
        include_str!("../templates/wit/deps/clocks/package.wit"),
    ),
    (
        "wit/deps/filesystem/package.wit",
        include_str!("../templates/wit/deps/filesystem/package.wit"),
    ),
    (
        "wit/deps/http/package.wit",
        include_str!("../templates/wit/deps/http/package.wit"),
    ),
    (
        "wit/deps/io/package.wit",
        include_str!("../templates/wit/deps/io/package.wit"),
    ),
    (
        "wit/deps/random/package.wit",
        include_str!("../templates/wit/deps/random/package.wit"),
    ),
    (
        "wit/deps/sockets/package.wit",
        include_str!("../templates/wit/deps/sockets/package.wit"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_lang_names() {
        assert_eq!(Lang::from_stack("rust"), Some(Lang::Rust));
        assert_eq!(Lang::from_stack("node"), Some(Lang::Js));
        assert_eq!(Lang::from_stack("python3"), Some(Lang::Python));
        assert_eq!(Lang::from_stack("golang-middleware"), None);
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            assert_eq!(Lang::from_stack(lang.name()), Some(lang));
        }
    }

    #[test]
    fn each_language_gets_a_world_its_toolchain_builds() {
        assert_eq!(Lang::Rust.world(None).expect("rust"), Wasi::P3);
        assert_eq!(Lang::Rust.world(Some(Wasi::P2)).expect("rust"), Wasi::P2);
        for lang in [Lang::Js, Lang::Python] {
            assert_eq!(lang.world(None).expect("default"), Wasi::P2);
            let refused = lang.world(Some(Wasi::P3)).expect_err("no 0.3 toolchain");
            assert!(
                refused.to_string().contains("0.2 components only"),
                "{refused}"
            );
        }
    }

    #[test]
    fn every_template_names_the_function() {
        for (lang, wasi) in [
            (Lang::Rust, Wasi::P3),
            (Lang::Rust, Wasi::P2),
            (Lang::Js, Wasi::P2),
            (Lang::Python, Wasi::P2),
        ] {
            let files = lang.files(wasi);
            assert!(
                files.iter().any(|(_, text)| text.contains("{{name}}")),
                "{lang:?}"
            );
            let mut paths: Vec<_> = files.iter().map(|(p, _)| *p).collect();
            paths.sort_unstable();
            paths.dedup();
            assert_eq!(paths.len(), files.len(), "{lang:?}: a path twice");
        }
    }
}
