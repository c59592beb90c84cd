//! Spin's variables: a component's `variables` are templates (`"{{ greeting }}, world"`) over the
//! app's `[variables]`, whose values come from, in order:
//!
//! 1. for a `secret = true` variable, the secret of the function's namespace named like the variable
//!    with `-` for `_` (`api_key` reads the secret `api-key`), through the OpenFaaS secrets API;
//!    for any other, the function's environment variable `SPIN_VARIABLE_<NAME>` (`envVars` of the
//!    deployment: `SPIN_VARIABLE_GREETING`), as Spin's environment provider reads it;
//! 2. the variable's `default`.
//!
//! A `required` variable without a value refuses the deploy.

use std::collections::BTreeMap;

/// One `[variables]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Variable {
    /// Its value when no provider gives one.
    pub default: Option<String>,
    /// A deploy without a value for it is refused.
    pub required: bool,
    /// Its value comes from a secret (see [`crate::variables`]).
    pub secret: bool,
}

/// Spin's variable names: lower snake case (`api_key`, `region2`).
pub fn is_variable_name(name: &str) -> bool {
    name.split('_').all(|word| {
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }) && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// The prefix of the environment variables that give variables their values.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// The environment variable that gives `variable` its value: `SPIN_VARIABLE_API_KEY` for `api_key`.
pub fn env_name(variable: &str) -> String {
    format!("{ENV_PREFIX}{}", variable.to_ascii_uppercase())
}

/// The secret that gives a secret `variable` its value: `api-key` for `api_key`.
pub fn secret_name(variable: &str) -> String {
    variable.replace('_', "-")
}

/// A template: literal text and `{{ name }}` references, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(String),
}

impl Template {
    /// Reads `{{ name }}` references (spaces inside the braces are optional) among literal text.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("{text:?}: a `{{{{` without its `}}}}`"))?;
            let name = after[..close].trim();
            if !is_variable_name(name) {
                return Err(format!(
                    "{text:?}: {{{{ {name} }}}} does not name a variable (lower snake case)"
                ));
            }
            parts.push(Part::Variable(name.to_string()));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("{text:?}: a `}}}}` without its `{{{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// The variables it refers to.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with every reference replaced; `None` when one has no value.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Option<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(values.get(name)?),
            }
        }
        Some(out)
    }
}

/// The values of the app's variables: `env` reads the function's environment, `secret` a secret
/// of its namespace. A variable with no value is absent; a required one refuses, naming it and
/// where its value may come from.
pub fn resolve(
    variables: &BTreeMap<String, Variable>,
    env: impl Fn(&str) -> Option<String>,
    secret: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for (name, variable) in variables {
        let provided = if variable.secret {
            secret(&secret_name(name))
        } else {
            env(&env_name(name))
        };
        match provided.or_else(|| variable.default.clone()) {
            Some(value) => {
                values.insert(name.clone(), value);
            }
            None if variable.required => {
                let from = if variable.secret {
                    format!(
                        "create the secret {:?} in the function's namespace",
                        secret_name(name)
                    )
                } else {
                    format!("set {} in the deployment's envVars", env_name(name))
                };
                return Err(format!(
                    "variables.{name} is required and has no value: {from}"
                ));
            }
            None => {}
        }
    }
    Ok(values)
}

/// A component's own variables (`templates`) with their values (those whose references all have
/// one), by name.
pub fn component_values(
    templates: &BTreeMap<String, Template>,
    app_values: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    templates
        .iter()
        .filter_map(|(name, template)| Some((name.clone(), template.render(app_values)?)))
        .collect()
}

/// The secrets the app's variables read, by name.
pub fn secret_names(variables: &BTreeMap<String, Variable>) -> Vec<String> {
    variables
        .iter()
        .filter(|(_, v)| v.secret)
        .map(|(name, _)| secret_name(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_text_and_references() {
        let template = Template::parse("{{ greeting }}, {{name}}!").expect("valid");
        assert_eq!(
            template.references().collect::<Vec<_>>(),
            ["greeting", "name"]
        );
        let mut values = BTreeMap::new();
        values.insert("greeting".to_string(), "hello".to_string());
        assert_eq!(template.render(&values), None);
        values.insert("name".to_string(), "world".to_string());
        assert_eq!(template.render(&values).as_deref(), Some("hello, world!"));
        assert_eq!(
            Template::parse("plain")
                .expect("valid")
                .render(&values)
                .as_deref(),
            Some("plain")
        );
        for bad in ["{{ open", "close }}", "{{ Bad }}", "{{}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    fn app(variables: &[(&str, Variable)]) -> BTreeMap<String, Variable> {
        variables
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn values_come_from_secrets_or_the_environment_then_defaults() {
        let app = app(&[
            (
                "api_key",
                Variable {
                    secret: true,
                    required: true,
                    default: None,
                },
            ),
            (
                "greeting",
                Variable {
                    default: Some("hello".into()),
                    ..Variable::default()
                },
            ),
            (
                "mode",
                Variable {
                    default: Some("slow".into()),
                    ..Variable::default()
                },
            ),
            ("unset", Variable::default()),
        ]);
        let env = |name: &str| (name == "SPIN_VARIABLE_MODE").then(|| "fast".to_string());
        let secret = |name: &str| (name == "api-key").then(|| "s3cret".to_string());
        let values = resolve(&app, env, secret).expect("resolved");
        assert_eq!(values["api_key"], "s3cret");
        assert_eq!(values["greeting"], "hello");
        assert_eq!(values["mode"], "fast");
        assert!(!values.contains_key("unset"));
        // A secret variable is not read from the environment.
        let error = resolve(&app, |_| Some("leaked".into()), |_| None).expect_err("required");
        assert!(error.contains("variables.api_key is required"), "{error}");
        assert!(error.contains("\"api-key\""), "{error}");
        assert_eq!(secret_names(&app), ["api-key"]);
    }
}
