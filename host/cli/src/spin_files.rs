//! A Spin component's `files`, resolved as Spin resolves them, against the manifest's folder, into
//! the archive the gateway mounts (`wasmgate_spin::files`):
//!
//! - `"path/file.txt"`: that file, at `/path/file.txt`;
//! - `"dir"` (a folder): every file below it, at its path (`/dir/...`);
//! - `"static/**/*"` (a glob): every file it matches, at its path from the manifest's folder;
//! - `{ source = "assets", destination = "/x" }`: a folder's files under `/x` (`assets/a.css` at
//!   `/x/a.css`), or one file at `destination`.
//!
//! `exclude_files` (globs from the manifest's folder) leaves out files a folder or a glob brings,
//! not a file named by itself. Only regular files are taken (a link to one is followed); a file
//! outside the manifest's folder is refused, and so is a guest path two entries give different
//! files for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wasmgate_spin::files::FileMount;

/// The archive of the files of `component` (named `name`), or `None` when it has none.
pub fn archive(
    root: &Path,
    name: &str,
    component: &wasmgate_spin::Component,
) -> anyhow::Result<Option<Vec<u8>>> {
    if component.files.is_empty() {
        return Ok(None);
    }
    let at = format!("component.{name}.files");
    let files = collect(root, component).with_context(|| at.clone())?;
    let mut contents = Vec::new();
    for (guest, host) in &files {
        let bytes =
            std::fs::read(host).with_context(|| format!("{at}: reading {}", host.display()))?;
        contents.push((guest.as_str(), bytes));
    }
    let archive = wasmgate_spin::files::pack(contents.iter().map(|(g, b)| (*g, b.as_slice())))
        .with_context(|| at.clone())?;
    Ok(Some(archive))
}

/// Each file of `component`: its guest path (without the leading `/`) and its host path.
pub fn collect(
    root: &Path,
    component: &wasmgate_spin::Component,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let excluded = component
        .exclude_files
        .iter()
        .map(|p| glob::Pattern::new(p).with_context(|| format!("exclude_files: {p:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut files = Files {
        root: &root,
        excluded,
        found: BTreeMap::new(),
    };
    for mount in &component.files {
        match mount {
            FileMount::Pattern(pattern) => {
                let path = root.join(pattern);
                if path.is_dir() {
                    files.glob(&path.join("**/*"), &root, "")?;
                } else if path.is_file() {
                    files.add(pattern.trim_start_matches("./"), &path)?;
                } else if glob::Pattern::escape(pattern) != *pattern {
                    files.glob(&path, &root, "")?;
                } else {
                    bail!("{pattern:?} does not exist and is not a glob pattern");
                }
            }
            FileMount::Placement {
                source,
                destination,
            } => {
                let path = root.join(source);
                let guest = destination.trim_matches('/');
                if path.is_dir() {
                    files.glob(&path.join("**/*"), &path, guest)?;
                } else if path.is_file() {
                    if guest.is_empty() {
                        bail!(
                            "{source:?} is a file: its destination names the file \
                             (\"/{source}\"), not a folder such as \"/\""
                        );
                    }
                    files.add(guest, &path)?;
                } else {
                    bail!("source {source:?} is neither a file nor a folder");
                }
            }
        }
    }
    Ok(files.found)
}

struct Files<'a> {
    root: &'a Path,
    excluded: Vec<glob::Pattern>,
    found: BTreeMap<String, PathBuf>,
}

impl Files<'_> {
    /// Every regular file `pattern` matches that `exclude_files` keeps, at `under` + its path
    /// from `from`.
    fn glob(&mut self, pattern: &Path, from: &Path, under: &str) -> anyhow::Result<()> {
        let text = pattern
            .to_str()
            .with_context(|| format!("{} is not UTF-8", pattern.display()))?;
        let matches = glob::glob(text).with_context(|| format!("the glob {text:?}"))?;
        for found in matches {
            let path = found.with_context(|| format!("the glob {text:?}"))?;
            if !path.is_file() {
                continue;
            }
            let Ok(in_app) = path.strip_prefix(self.root) else {
                bail!(
                    "{} is outside the manifest's folder; files must be inside it",
                    path.display()
                );
            };
            if self.excluded.iter().any(|p| p.matches_path(in_app)) {
                continue;
            }
            let relative = path.strip_prefix(from).unwrap_or(in_app);
            let relative = relative
                .to_str()
                .with_context(|| format!("{} is not UTF-8", path.display()))?;
            let guest = if under.is_empty() {
                relative.to_string()
            } else {
                format!("{under}/{relative}")
            };
            self.add(&guest, &path)?;
        }
        Ok(())
    }

    fn add(&mut self, guest: &str, host: &Path) -> anyhow::Result<()> {
        if let Some(first) = self.found.insert(guest.to_string(), host.to_path_buf())
            && first != host
        {
            bail!(
                "/{guest} is given twice: {} and {}",
                first.display(),
                host.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(files: &str) -> wasmgate_spin::Component {
        let manifest = format!(
            "spin_manifest_version = 2\n[application]\nname = \"a\"\n[[trigger.http]]\n\
             route = \"/...\"\ncomponent = \"web\"\n[component.web]\nsource = \"w.wasm\"\n{files}\n"
        );
        let app = wasmgate_spin::App::parse(&manifest).expect("valid");
        app.components["web"].clone()
    }

    #[test]
    fn files_are_placed_as_spin_places_them() {
        let root =
            std::env::temp_dir().join(format!("wasmgate-spin-collect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in [
            ("static/a.css", "a"),
            ("static/deep/b.js", "b"),
            ("static/skip.bak", "no"),
            ("assets/logo.svg", "logo"),
            ("index.html", "index"),
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let component = app(
            r#"files = ["static/**/*", "index.html", { source = "assets", destination = "/x" }, { source = "index.html", destination = "/home/i.html" }]
exclude_files = ["static/*.bak"]"#,
        );
        let found = collect(&root, &component).expect("collects");
        let guests: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(
            guests,
            [
                "home/i.html",
                "index.html",
                "static/a.css",
                "static/deep/b.js",
                "x/logo.svg"
            ]
        );
        let folder = collect(&root, &app(r#"files = ["static"]"#)).expect("a folder");
        assert!(folder.contains_key("static/deep/b.js"), "{folder:?}");

        let missing = collect(&root, &app(r#"files = ["nothing.txt"]"#)).expect_err("missing");
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        let to_root = collect(
            &root,
            &app(r#"files = [{ source = "index.html", destination = "/" }]"#),
        )
        .expect_err("a file at /");
        assert!(to_root.to_string().contains("is a file"), "{to_root}");
        let twice = collect(
            &root,
            &app(r#"files = ["index.html", { source = "assets/logo.svg", destination = "/index.html" }]"#),
        )
        .expect_err("twice");
        assert!(
            twice.to_string().contains("/index.html is given twice"),
            "{twice}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
