//! The languages `new` and `build` know, with the template files each one starts from (embedded in
//! the binary).

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

impl Lang {
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
    pub(crate) fn files(self) -> Vec<(&'static str, &'static str)> {
        let mut files = match self {
            Lang::Rust => vec![
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
            Lang::Js => vec![
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
            Lang::Python => vec![
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
    fn every_template_names_the_function() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            let files = lang.files();
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
