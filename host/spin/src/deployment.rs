//! How a Spin app travels in an OpenFaaS deployment: the function is named after
//! `[application] name`, [`ANNOTATION_MANIFEST`] holds the manifest as written, and
//! [`ANNOTATION_SOURCES`] says where each component's code is (`COMPONENT=IMAGE,...`, each IMAGE
//! what a deployment's `image` accepts: an uploaded `sha256:` digest, a path the gateway reads, an
//! OCI reference). `wasmgate deploy -f spin.toml` uploads the components and sends their digests;
//! [`ANNOTATION_FILES`] names, the same way, the archive of each component's static files.

use std::collections::BTreeMap;

/// The annotation that holds a Spin app's manifest, as written.
pub const ANNOTATION_MANIFEST: &str = "com.wasmgate.spin.manifest";
/// The annotation that says where each component's code is: `COMPONENT=IMAGE,...`.
pub const ANNOTATION_SOURCES: &str = "com.wasmgate.spin.sources";
/// The annotation that says where the archive of each component's static files is
/// (`COMPONENT=sha256:...,...`, as [`ANNOTATION_SOURCES`]; see [`crate::files`]), for the
/// components that have `files`.
pub const ANNOTATION_FILES: &str = "com.wasmgate.spin.files";

/// Whether `path` names a Spin manifest rather than a stack file: its name ends in `.toml`.
pub fn is_manifest_path(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// Reads `COMPONENT=IMAGE,...`.
pub fn parse_sources(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut sources = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (component, image) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not COMPONENT=IMAGE"))?;
        if sources
            .insert(component.trim().to_string(), image.trim().to_string())
            .is_some()
        {
            return Err(format!("component {} is given twice", component.trim()));
        }
    }
    Ok(sources)
}

/// The annotations of a Spin app's deployment: the manifest as written, each component's image
/// (`sources`) and, for the components that have `files`, the archive of their files (`files`).
pub fn annotations(
    manifest: &str,
    sources: &BTreeMap<String, String>,
    files: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_MANIFEST.to_string(), manifest.to_string());
    annotations.insert(ANNOTATION_SOURCES.to_string(), format_sources(sources));
    if !files.is_empty() {
        annotations.insert(ANNOTATION_FILES.to_string(), format_sources(files));
    }
    annotations
}

/// Writes `COMPONENT=IMAGE,...`.
pub fn format_sources(sources: &BTreeMap<String, String>) -> String {
    sources
        .iter()
        .map(|(component, image)| format!("{component}={image}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_component_image_pairs() {
        let sources = parse_sources("front=sha256:ab, back = ./b.wasm").expect("valid");
        assert_eq!(sources["back"], "./b.wasm");
        assert_eq!(format_sources(&sources), "back=./b.wasm,front=sha256:ab");
        assert!(parse_sources("front").is_err());
        assert!(parse_sources("a=x,a=y").is_err());
        assert!(is_manifest_path(std::path::Path::new("app/spin.toml")));
        assert!(!is_manifest_path(std::path::Path::new("stack.yml")));
    }
}
