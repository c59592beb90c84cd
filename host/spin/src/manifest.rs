//! `spin.toml`, manifest version 2, read into an [`App`]: what wasmgate honours is kept, what it
//! ignores is read and dropped, and what it cannot do yet is refused with an error naming the field
//! (the whole list is the README's "Coming from Spin").
//!
//! Read: `[application]` (`name`; `version`, `description`, `authors`, `targets`, `trigger`, `tool`
//! ignored), `[variables]` (`default`, `required`, `secret`, `description`), `[[trigger.http]]`
//! (`route`, `component`, `id`, `executor` of type `spin`), and `[component.NAME]` (`source`,
//! `allowed_outbound_hosts`, `key_value_stores`, `sqlite_databases`, `variables`, `environment`,
//! `files`, `exclude_files`; `description`, `build`, `tool`, `profile`, `targets` ignored). Refused:
//! another manifest version, any trigger but HTTP, inline or several components on one trigger, a
//! `source` that is not a local path, `ai_models`, `dependencies`, the deprecated
//! `allowed_http_hosts`.
//!
//! Over 600 lines: every field with its validation, and the table test of every refusal.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::files::FileMount;
use crate::routes::RouteSpec;
use crate::variables::{Template, Variable, is_variable_name};

/// A manifest that cannot be served: what is wrong, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, ManifestError> {
    Err(ManifestError(message.into()))
}

/// A Spin application, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// `[application] name`: the name of the OpenFaaS function it is deployed as.
    pub name: String,
    /// `[application] version`, as written (may be empty).
    pub version: String,
    /// `[application] description` (may be empty).
    pub description: String,
    /// `[variables]`, by name.
    pub variables: BTreeMap<String, Variable>,
    /// The HTTP triggers, in manifest order.
    pub triggers: Vec<HttpTrigger>,
    /// `[component.NAME]`, by name.
    pub components: BTreeMap<String, Component>,
}

/// One `[[trigger.http]]`: a route and the component it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// The route, or private (reachable only from the app's own components).
    pub route: RouteSpec,
    /// The component's name.
    pub component: String,
}

/// One `[component.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Component {
    /// `source`: a local path to the `.wasm` file, relative to the manifest's folder.
    pub source: String,
    /// `allowed_outbound_hosts`, as written (see [`crate::outbound`]).
    pub allowed_outbound_hosts: Vec<String>,
    /// `key_value_stores`: the labels of the stores it may open.
    pub key_value_stores: Vec<String>,
    /// `sqlite_databases`: the labels of the databases it may open.
    pub sqlite_databases: Vec<String>,
    /// `variables`: its own variables, each a template over the app's.
    pub variables: BTreeMap<String, Template>,
    /// `environment`: its environment variables.
    pub environment: BTreeMap<String, String>,
    /// `files`: the static files it sees, read-only (see [`crate::files`]).
    pub files: Vec<FileMount>,
    /// `exclude_files`: globs of files that `files` leaves out, relative to the manifest's folder.
    pub exclude_files: Vec<String>,
}

impl App {
    /// The router of its public routes.
    pub fn router(&self) -> crate::routes::Router {
        crate::routes::Router::new(
            self.triggers
                .iter()
                .map(|t| (t.route.clone(), t.component.clone())),
        )
    }

    /// Reads and validates a manifest.
    pub fn parse(text: &str) -> Result<App, ManifestError> {
        let version: VersionProbe = toml::from_str(text)
            .map_err(|e| ManifestError(format!("spin.toml is not valid TOML: {e}")))?;
        match version.spin_manifest_version {
            Some(toml::Value::Integer(2)) => {}
            Some(other) => {
                return fail(format!(
                    "spin_manifest_version: only manifest version 2 is supported, this one says \
                     {other} (Spin 1's format; `spin doctor` converts it)"
                ));
            }
            None if version.spin_version.is_some() => {
                return fail(
                    "spin_version: this is a manifest of version 1; only version 2 is supported \
                     (`spin doctor` converts it)",
                );
            }
            None => return fail("spin_manifest_version: missing (it must be 2)"),
        }
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| ManifestError(format!("spin.toml: {}", e.message_with_span(text))))?;
        raw.validate()
    }
}

/// The fields that say which format a manifest is in, read before anything else.
#[derive(Deserialize)]
struct VersionProbe {
    spin_manifest_version: Option<toml::Value>,
    spin_version: Option<toml::Value>,
}

trait WithSpan {
    fn message_with_span(&self, text: &str) -> String;
}

impl WithSpan for toml::de::Error {
    /// The parser's message with the line it points at, so the field is named even where serde's
    /// message alone does not say which table it is in.
    fn message_with_span(&self, text: &str) -> String {
        let message = self.message().to_string();
        match self.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                format!("{message} (line {line}: `{source}`)")
            }
            None => message,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[allow(dead_code, reason = "checked by VersionProbe")]
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default, rename = "trigger")]
    triggers: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default, rename = "component")]
    components: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    // Read and ignored.
    #[serde(default, rename = "authors")]
    _authors: Vec<String>,
    #[serde(default, rename = "targets")]
    _targets: Vec<toml::Value>,
    #[serde(default, rename = "trigger")]
    _trigger: Option<toml::Table>,
    #[serde(default, rename = "tool")]
    _tool: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(default, rename = "description")]
    _description: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default, alias = "key-value-stores")]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default, alias = "sqlite-databases")]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    dependencies: Option<toml::Table>,
    // Read and ignored.
    #[serde(default, rename = "description")]
    _description: String,
    #[serde(default, rename = "build")]
    _build: Option<toml::Table>,
    #[serde(default, rename = "tool")]
    _tool: Option<toml::Table>,
    #[serde(default, rename = "profile")]
    _profile: Option<toml::Table>,
    #[serde(default, rename = "targets")]
    _targets: Option<Vec<toml::Value>>,
    #[serde(default, rename = "dependencies_inherit_configuration")]
    _dependencies_inherit_configuration: Option<bool>,
}

/// Spin's component names: lower kebab case (`my-component`, `api2`).
pub fn is_component_name(name: &str) -> bool {
    name.split('-').all(|word| {
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }) && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A key-value store label wasmgate can hold as a bucket name.
fn is_store_label(label: &str) -> bool {
    label.starts_with(|c: char| c.is_ascii_alphanumeric())
        && label.len() <= 128
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl RawManifest {
    fn validate(self) -> Result<App, ManifestError> {
        let name = self.application.name.trim().to_string();
        if name.is_empty() {
            return fail("application.name: must not be empty");
        }
        let mut variables = BTreeMap::new();
        for (key, raw) in self.variables {
            if !is_variable_name(&key) {
                return fail(format!(
                    "variables.{key}: a variable name is lower snake case (letters, digits and \
                     underscores, starting with a letter)"
                ));
            }
            if raw.required && raw.default.is_some() {
                return fail(format!(
                    "variables.{key}: `required` and `default` cannot both be set"
                ));
            }
            variables.insert(
                key,
                Variable {
                    default: raw.default,
                    required: raw.required,
                    secret: raw.secret,
                },
            );
        }
        let mut components = BTreeMap::new();
        for (key, raw) in self.components {
            let component = raw.validate(&key, &variables)?;
            components.insert(key, component);
        }
        let mut triggers = Vec::new();
        for (kind, entries) in self.triggers {
            if kind != "http" {
                return fail(format!(
                    "trigger.{kind}: only HTTP triggers ([[trigger.http]]) are served by wasmgate"
                ));
            }
            for (index, entry) in entries.into_iter().enumerate() {
                triggers.push(http_trigger(index, entry, &components)?);
            }
        }
        if triggers.is_empty() {
            return fail("trigger.http: the application has no HTTP trigger");
        }
        let mut seen: BTreeMap<&RouteSpec, &str> = BTreeMap::new();
        for trigger in &triggers {
            if trigger.route == RouteSpec::Private {
                continue;
            }
            if let Some(first) = seen.insert(&trigger.route, &trigger.component) {
                return fail(format!(
                    "trigger.http: the route {} is given to both {first} and {}",
                    trigger.route, trigger.component
                ));
            }
        }
        Ok(App {
            name,
            version: self.application.version,
            description: self.application.description,
            variables,
            triggers,
            components,
        })
    }
}

impl RawComponent {
    fn validate(
        self,
        key: &str,
        variables: &BTreeMap<String, Variable>,
    ) -> Result<Component, ManifestError> {
        let at = format!("component.{key}");
        if !is_component_name(key) {
            return fail(format!(
                "{at}: a component name is lower kebab case (letters, digits and dashes, starting \
                 with a letter)"
            ));
        }
        let source = match self.source {
            toml::Value::String(path) if !path.trim().is_empty() => path,
            toml::Value::String(_) => return fail(format!("{at}.source: must not be empty")),
            toml::Value::Table(table) if table.contains_key("url") => {
                return fail(format!(
                    "{at}.source: a {{ url, digest }} source is not supported (wasmgate does not \
                     download components); give a local path to the .wasm file"
                ));
            }
            toml::Value::Table(table) if table.contains_key("package") => {
                return fail(format!(
                    "{at}.source: a {{ registry, package, version }} source is not supported; give \
                     a local path to the .wasm file"
                ));
            }
            _ => {
                return fail(format!(
                    "{at}.source: must be a local path to the .wasm file"
                ));
            }
        };
        let not_yet = |field: &str, what: &str| {
            fail(format!(
                "{at}.{field}: {what} is not provided by wasmgate yet; remove it to deploy"
            ))
        };
        let files = self
            .files
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                crate::files::parse_mount(&format!("{at}.files[{index}]"), entry)
                    .map_err(ManifestError)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(pattern) = self
            .exclude_files
            .iter()
            .find(|p| p.starts_with('/') || p.split('/').any(|part| part == ".."))
        {
            return fail(format!(
                "{at}.exclude_files: {pattern:?} must be relative to the manifest's folder, \
                 without `..`"
            ));
        }
        if !self.ai_models.is_empty() {
            return not_yet("ai_models", "Spin's LLM interface");
        }
        if self.dependencies.as_ref().is_some_and(|d| !d.is_empty()) {
            return not_yet("dependencies", "composing component dependencies");
        }
        if !self.allowed_http_hosts.is_empty() {
            return fail(format!(
                "{at}.allowed_http_hosts: deprecated by Spin and not read by wasmgate; use \
                 allowed_outbound_hosts (for example \"https://api.example.com\")"
            ));
        }
        for (field, labels) in [
            ("key_value_stores", &self.key_value_stores),
            ("sqlite_databases", &self.sqlite_databases),
        ] {
            if let Some(label) = labels.iter().find(|label| !is_store_label(label)) {
                return fail(format!(
                    "{at}.{field}: {label:?} is not a label wasmgate can keep (letters, digits, \
                     `-`, `_` and `.`, starting with a letter or digit, at most 128)"
                ));
            }
        }
        for host in &self.allowed_outbound_hosts {
            crate::outbound::check_entry(host, variables)
                .map_err(|e| ManifestError(format!("{at}.allowed_outbound_hosts: {e}")))?;
        }
        let mut templates = BTreeMap::new();
        for (name, text) in self.variables {
            if !is_variable_name(&name) {
                return fail(format!(
                    "{at}.variables.{name}: a variable name is lower snake case"
                ));
            }
            let template = Template::parse(&text)
                .map_err(|e| ManifestError(format!("{at}.variables.{name}: {e}")))?;
            if let Some(unknown) = template
                .references()
                .find(|name| !variables.contains_key(*name))
            {
                return fail(format!(
                    "{at}.variables.{name}: refers to {{{{ {unknown} }}}}, which [variables] does \
                     not define"
                ));
            }
            templates.insert(name, template);
        }
        Ok(Component {
            source,
            allowed_outbound_hosts: self.allowed_outbound_hosts,
            key_value_stores: self.key_value_stores,
            sqlite_databases: self.sqlite_databases,
            variables: templates,
            environment: self.environment,
            files,
            exclude_files: self.exclude_files,
        })
    }
}

/// One `[[trigger.http]]` table, the `index`th.
fn http_trigger(
    index: usize,
    mut table: toml::Table,
    components: &BTreeMap<String, Component>,
) -> Result<HttpTrigger, ManifestError> {
    let at = format!("trigger.http[{index}]");
    let route = match table.remove("route") {
        None => return fail(format!("{at}.route: missing")),
        Some(toml::Value::String(route)) => {
            RouteSpec::parse(&route).map_err(|e| ManifestError(format!("{at}.route: {e}")))?
        }
        Some(toml::Value::Table(private)) => match private.get("private") {
            Some(toml::Value::Boolean(true)) if private.len() == 1 => RouteSpec::Private,
            _ => {
                return fail(format!(
                    "{at}.route: must be a string pattern or {{ private = true }}"
                ));
            }
        },
        Some(_) => {
            return fail(format!(
                "{at}.route: must be a string pattern or {{ private = true }}"
            ));
        }
    };
    let component = match table.remove("component") {
        Some(toml::Value::String(name)) => name,
        Some(toml::Value::Table(_)) => {
            return fail(format!(
                "{at}.component: an inline component is not supported; define it as \
                 [component.NAME] and name it here"
            ));
        }
        Some(_) => return fail(format!("{at}.component: must name a [component.NAME]")),
        None if table.contains_key("components") => {
            return fail(format!(
                "{at}.components: several components on one trigger (middleware) are not \
                 supported; give one `component`"
            ));
        }
        None => return fail(format!("{at}.component: missing")),
    };
    if !components.contains_key(&component) {
        return fail(format!(
            "{at}.component: {component:?} is not defined (no [component.{component}])"
        ));
    }
    if let Some(executor) = table.remove("executor") {
        let kind = executor
            .as_table()
            .and_then(|t| t.get("type"))
            .and_then(toml::Value::as_str);
        if kind != Some("spin") {
            return fail(format!(
                "{at}.executor: only the default executor (type \"spin\", wasi:http) is supported"
            ));
        }
    }
    table.remove("id");
    if let Some(field) = table.keys().next() {
        return fail(format!("{at}.{field}: not a field wasmgate reads"));
    }
    Ok(HttpTrigger { route, component })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "shop"
version = "1.0.0"
authors = ["someone"]

[variables]
greeting = { default = "hello" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/..."
component = "front"

[[trigger.http]]
route = { private = true }
component = "back"

[component.front]
source = "front.wasm"
key_value_stores = ["default"]
allowed_outbound_hosts = ["http://back.spin.internal"]
[component.front.variables]
message = "{{ greeting }}, world"
[component.front.build]
command = "cargo build"

[component.back]
source = "target/back.wasm"
environment = { MODE = "strict" }
files = ["static/**/*", { source = "assets", destination = "/x" }]
exclude_files = ["static/*.bak"]
"#;

    #[test]
    fn a_good_manifest_is_read() {
        let app = App::parse(GOOD).expect("valid");
        assert_eq!(app.name, "shop");
        assert_eq!(app.triggers.len(), 2);
        assert_eq!(app.triggers[1].route, RouteSpec::Private);
        assert_eq!(app.components["back"].source, "target/back.wasm");
        assert_eq!(app.components["back"].environment["MODE"], "strict");
        assert_eq!(app.components["front"].key_value_stores, ["default"]);
        assert_eq!(
            app.components["back"].files,
            [
                FileMount::Pattern("static/**/*".into()),
                FileMount::Placement {
                    source: "assets".into(),
                    destination: "/x".into()
                }
            ]
        );
        assert_eq!(app.components["back"].exclude_files, ["static/*.bak"]);
        assert!(app.variables["api_key"].secret && app.variables["api_key"].required);
        assert_eq!(
            app.components["front"].variables["message"]
                .references()
                .collect::<Vec<_>>(),
            ["greeting"]
        );
    }

    /// Each bad manifest, made from the good one by one replacement, and a part of its error.
    #[test]
    fn bad_manifests_are_refused_naming_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "spin_manifest_version = 2",
                "spin_manifest_version = \"1\"",
                "spin_manifest_version",
            ),
            ("name = \"shop\"", "name = \"\"", "application.name"),
            (
                "source = \"front.wasm\"",
                "source = { url = \"https://x/y.wasm\", digest = \"sha256:0\" }",
                "component.front.source: a { url, digest }",
            ),
            (
                "source = \"front.wasm\"",
                "source = { registry = \"ghcr.io\", package = \"a:b\", version = \"1\" }",
                "component.front.source: a { registry",
            ),
            (
                "source = \"front.wasm\"",
                "sorce = \"front.wasm\"",
                "unknown field `sorce`",
            ),
            (
                "key_value_stores = [\"default\"]",
                "sqlite_databases = [\"..\"]",
                "component.front.sqlite_databases",
            ),
            (
                "key_value_stores = [\"default\"]",
                "files = [\"static/*\", \"../up.txt\"]",
                "component.front.files[1]: a pattern must stay inside",
            ),
            (
                "key_value_stores = [\"default\"]",
                "exclude_files = [\"/abs\"]",
                "component.front.exclude_files",
            ),
            (
                "key_value_stores = [\"default\"]",
                "key_value_stores = [\"a/b\"]",
                "component.front.key_value_stores",
            ),
            (
                "component = \"front\"",
                "component = \"nowhere\"",
                "trigger.http[0].component: \"nowhere\" is not defined",
            ),
            (
                "route = \"/...\"",
                "route = \"/users/:\"",
                "trigger.http[0].route",
            ),
            (
                "route = \"/...\"",
                "route = { private = false }",
                "trigger.http[0].route",
            ),
            (
                "[[trigger.http]]\nroute = \"/...\"",
                "[[trigger.redis]]\nchannel = \"x\"",
                "trigger.redis",
            ),
            (
                "greeting = { default = \"hello\" }",
                "greeting = { default = \"hello\", required = true }",
                "variables.greeting",
            ),
            (
                "\"{{ greeting }}, world\"",
                "\"{{ nobody }}\"",
                "component.front.variables.message: refers to {{ nobody }}",
            ),
            (
                "\"{{ greeting }}, world\"",
                "\"{{ greeting \"",
                "component.front.variables.message",
            ),
            ("[component.back]", "[component.Back]", "component.Back"),
            (
                "\"http://back.spin.internal\"",
                "\"https://{{ host }}\"",
                "component.front.allowed_outbound_hosts: \"https://{{ host }}\" refers to {{ host }}",
            ),
            (
                "\"http://back.spin.internal\"",
                "\"https://{{ greeting }}:9..9\"",
                "component.front.allowed_outbound_hosts: \"https://{{ greeting }}:9..9\" is \"https://hello:9..9\" with the variables' defaults",
            ),
        ];
        for (from, to, expected) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let error = App::parse(&text).expect_err(to).to_string();
            assert!(error.contains(expected), "{to}: {error}");
        }
    }

    #[test]
    fn a_route_given_twice_is_refused() {
        let text = GOOD.replacen("route = { private = true }", "route = \"/...\"", 1);
        let error = App::parse(&text).expect_err("duplicate").to_string();
        assert!(error.contains("the route /... is given to both"), "{error}");
    }

    #[test]
    fn names_follow_spins_cases() {
        for good in ["a", "front", "api-2", "my-component"] {
            assert!(is_component_name(good), "{good}");
        }
        for bad in ["", "A", "2a", "a--b", "a-", "a_b"] {
            assert!(!is_component_name(bad), "{bad}");
        }
        for good in ["a", "api_key", "region2"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "Api", "a__b", "_a", "a-b"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}
