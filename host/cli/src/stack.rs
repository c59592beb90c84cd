//! The faas-cli `stack.yml`: the functions to serve, read the way faas-cli reads it.
//!
//! `${VAR}` and `${VAR:-default}` are substituted from the environment before the YAML is parsed
//! (faas-cli does the same); an unset variable without a default becomes the empty string. Fields that
//! wasmgate does not use yet are accepted and ignored, so any faas-cli stack file parses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::{FunctionSettings, ResolvedFunction, Resources};

/// A parsed stack file.
#[derive(Debug, Deserialize)]
pub struct Stack {
    /// The faas-cli provider section, if any.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// The functions by name.
    #[serde(default)]
    pub functions: BTreeMap<String, StackFunction>,
}

/// `provider:` in a stack file.
#[derive(Debug, Deserialize)]
pub struct Provider {
    /// The provider name (`openfaas`).
    #[serde(default)]
    pub name: Option<String>,
    /// The gateway URL.
    #[serde(default)]
    pub gateway: Option<String>,
}

/// One entry of `functions:`.
#[derive(Debug, Deserialize)]
pub struct StackFunction {
    /// The template language (`rust`, ...): how `wasmgate build` builds it.
    #[serde(default)]
    pub lang: Option<String>,
    /// The folder with the function's source, relative to the stack file.
    #[serde(default)]
    pub handler: Option<String>,
    /// Where the component is: a path to a `.wasm` file, relative to the stack file; or an OCI
    /// reference (`registry/repository:tag`) that `wasmgate push` publishes and the gateway pulls.
    pub image: String,
    /// The namespace; `openfaas-fn` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Environment variables for the function. YAML numbers and booleans are taken as text.
    #[serde(default)]
    pub environment: BTreeMap<String, serde_norway::Value>,
    /// Secrets the function may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Labels, as text.
    #[serde(default)]
    pub labels: BTreeMap<String, serde_norway::Value>,
    /// Annotations, as text.
    #[serde(default)]
    pub annotations: BTreeMap<String, serde_norway::Value>,
    /// `limits: {memory, cpu}`.
    #[serde(default)]
    pub limits: Option<StackLimits>,
}

/// `limits:` of a stack function.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StackLimits {
    /// A memory quantity such as `128Mi`.
    #[serde(default)]
    pub memory: Option<String>,
    /// CPU, kept for faas-cli compatibility.
    #[serde(default)]
    pub cpu: Option<String>,
}

impl Stack {
    /// Reads, substitutes and parses a stack file.
    pub fn read(path: &Path) -> anyhow::Result<Stack> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Stack::parse(&text, |name| std::env::var(name).ok())
            .with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses stack text, looking variables up with `lookup`.
    pub fn parse(text: &str, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Stack> {
        let text = substitute(text, lookup)?;
        Ok(serde_norway::from_str(&text)?)
    }

    /// Validates every function and resolves its `image` against `base` (the stack file's folder).
    pub fn resolve(&self, base: &Path) -> anyhow::Result<Vec<ResolvedFunction>> {
        self.functions
            .iter()
            .map(|(name, f)| {
                let function = FunctionRef::new(name, f.namespace.as_deref())
                    .with_context(|| format!("function {name:?}"))?;
                let text_map = |which: &str, map: &BTreeMap<String, serde_norway::Value>| {
                    map.iter()
                        .map(|(k, v)| {
                            let text = scalar_text(v)
                                .with_context(|| format!("function {name:?}, {which} {k:?}"))?;
                            Ok((k.clone(), text))
                        })
                        .collect::<anyhow::Result<BTreeMap<String, String>>>()
                        .map(|m| (!m.is_empty()).then_some(m))
                };
                let settings = FunctionSettings {
                    env_vars: text_map("environment", &f.environment)?,
                    labels: text_map("label", &f.labels)?,
                    annotations: text_map("annotation", &f.annotations)?,
                    secrets: (!f.secrets.is_empty()).then(|| f.secrets.clone()),
                    limits: f.limits.as_ref().map(|l| Resources {
                        memory: l.memory.clone(),
                        cpu: l.cpu.clone(),
                    }),
                    ..FunctionSettings::default()
                };
                Ok(ResolvedFunction {
                    function,
                    wasm: component_path(name, f, base).unwrap_or_default(),
                    oci: wasmgate_oci::Reference::looks_like(&f.image).then(|| f.image.clone()),
                    settings,
                    archives: Vec::new(),
                })
            })
            .collect()
    }
}

/// Where a function's component is on disk: its `image` when that is a path, else (an OCI `image`)
/// where `wasmgate build` puts the component of its `handler` and `lang`.
pub fn component_path(name: &str, function: &StackFunction, base: &Path) -> Option<PathBuf> {
    if !wasmgate_oci::Reference::looks_like(&function.image) {
        return Some(base.join(&function.image));
    }
    let lang = crate::lang::Lang::from_stack(function.lang.as_deref()?)?;
    let handler = function.handler.as_deref()?;
    Some(base.join(handler).join(lang.component(name)))
}

fn scalar_text(value: &serde_norway::Value) -> anyhow::Result<String> {
    use serde_norway::Value;
    Ok(match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        _ => bail!("must be a string, a number or a boolean"),
    })
}

/// Replaces `${NAME}` and `${NAME:-default}`. A `$` not followed by `{` is left as it is.
fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!(
                "unterminated ${{ in {:?}",
                &rest[start..rest.len().min(start + 40)]
            );
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            bail!("invalid variable name in ${{{expr}}}");
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {}
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_variables() {
        let cases = [
            ("plain", Some("plain")),
            ("${HOST}:8080", Some("example:8080")),
            ("${MISSING}", Some("")),
            ("${MISSING:-fallback}", Some("fallback")),
            ("${HOST:-fallback}", Some("example")),
            ("${EMPTY:-fallback}", Some("fallback")),
            ("cost $5", Some("cost $5")),
            ("a ${HOST} b ${HOST}", Some("a example b example")),
            ("${HOST", None),
            ("${BAD-NAME}", None),
            ("${}", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                substitute(input, env).ok().as_deref(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn parses_a_faas_cli_stack() {
        let text = r#"
version: 1.0
provider:
  name: openfaas
  gateway: http://${HOST}:8080
functions:
  hello:
    lang: rust
    handler: ./hello
    image: wasm/hello.wasm
    environment:
      greeting: hi
      retries: 3
      debug: true
    labels: {}
    annotations: {}
  other:
    image: /abs/other.wasm
    namespace: team-a
"#;
        let stack = Stack::parse(text, env).expect("parses");
        assert_eq!(
            stack.provider.and_then(|p| p.gateway).as_deref(),
            Some("http://example:8080")
        );
        let resolved = Stack::parse(text, env)
            .expect("parses")
            .resolve(Path::new("/base"))
            .expect("resolves");
        assert_eq!(resolved.len(), 2);
        assert_eq!(resolved[0].function.key(), "hello.openfaas-fn");
        assert_eq!(resolved[0].wasm, Path::new("/base/wasm/hello.wasm"));
        let env: Vec<(String, String)> = resolved[0]
            .settings
            .env_vars
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(
            env,
            [
                ("debug".into(), "true".into()),
                ("greeting".into(), "hi".into()),
                ("retries".into(), "3".into())
            ]
        );
        assert_eq!(resolved[1].function.key(), "other.team-a");
        assert_eq!(resolved[1].wasm, Path::new("/abs/other.wasm"));
    }

    #[test]
    fn rejects_bad_names_and_missing_images() {
        let bad_name = "functions:\n  \"bad name\":\n    image: x.wasm\n";
        let err = Stack::parse(bad_name, env)
            .expect("parses")
            .resolve(Path::new("/"))
            .expect_err("bad name");
        assert!(
            format!("{err:#}").contains("invalid function name"),
            "{err:#}"
        );
        let no_image = "functions:\n  f:\n    lang: rust\n";
        let err = Stack::parse(no_image, env).expect_err("image is required");
        assert!(format!("{err:#}").contains("image"), "{err:#}");
    }
}
