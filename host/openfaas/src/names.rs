//! Function names and namespaces as OpenFaaS spells them.
//!
//! On `/function/<name>` the name is split at its last dot: `figlet.openfaas-fn` is the function
//! `figlet` in the namespace `openfaas-fn`; with no dot the namespace is [`DEFAULT_NAMESPACE`].

use std::fmt;

/// The namespace of a function when none is given.
pub const DEFAULT_NAMESPACE: &str = "openfaas-fn";

/// A function's name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionRef {
    /// The function's name within its namespace.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// A name or namespace that OpenFaaS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The function name is empty or has a character outside `[-a-zA-Z0-9_.]`.
    #[error("invalid function name {0:?}: use letters, digits, '-', '_' and '.'")]
    Name(String),
    /// The namespace is not a DNS label.
    #[error(
        "invalid namespace {0:?}: use lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    Namespace(String),
    /// A namespace call names one namespace in its path and another in its body.
    #[error(
        "the path names namespace {path:?} and the body {body:?}; name one, or the same in both"
    )]
    NamespaceMismatch {
        /// The name in `/system/namespace/{name}`.
        path: String,
        /// The body's `name`.
        body: String,
    },
    /// A namespace call names no namespace, in its path or in its body.
    #[error(
        "no namespace named: use /system/namespace/NAME, or POST /system/namespace/ with {{\"name\":\"NAME\"}}"
    )]
    NoNamespace,
}

/// The namespace a `/system/namespace/{name}` call is about, validated. The path names it; the
/// OpenFaaS Go SDK (and so `faas-cli namespace create`) creates one with `POST /system/namespace/`,
/// an empty name in the path and the name in the JSON body only, so an empty path takes the body's
/// `name`. When both are given they must agree.
pub fn namespace_of_call<'a>(path: &'a str, body: &'a str) -> Result<&'a str, NameError> {
    let name = match (path, body) {
        ("", "") => return Err(NameError::NoNamespace),
        ("", body) => body,
        (path, "") => path,
        (path, body) if path == body => path,
        (path, body) => {
            return Err(NameError::NamespaceMismatch {
                path: path.to_string(),
                body: body.to_string(),
            });
        }
    };
    validate_namespace(name)?;
    Ok(name)
}

impl FunctionRef {
    /// A reference from separate parts, both validated.
    pub fn new(name: &str, namespace: Option<&str>) -> Result<Self, NameError> {
        let namespace = namespace
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        validate_name(name)?;
        validate_namespace(namespace)?;
        Ok(FunctionRef {
            name: name.to_string(),
            namespace: namespace.to_string(),
        })
    }

    /// Parses `name` or `name.namespace`, splitting at the last dot.
    pub fn parse(qualified: &str) -> Result<Self, NameError> {
        match qualified.rsplit_once('.') {
            Some((name, namespace)) => FunctionRef::new(name, Some(namespace)),
            None => FunctionRef::new(qualified, None),
        }
    }

    /// The key the runtime knows the function by, and the `function_name` label of the metrics:
    /// `name.namespace`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

impl fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

fn validate_name(name: &str) -> Result<(), NameError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(NameError::Name(name.to_string()))
    }
}

fn validate_namespace(namespace: &str) -> Result<(), NameError> {
    let bytes = namespace.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = namespace.len() <= 63
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-');
    if valid {
        Ok(())
    } else {
        Err(NameError::Namespace(namespace.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route_names() {
        let cases = [
            ("hello", Some(("hello", "openfaas-fn"))),
            ("hello.openfaas-fn", Some(("hello", "openfaas-fn"))),
            ("hello.team-a", Some(("hello", "team-a"))),
            ("a.b.team", Some(("a.b", "team"))),
            ("under_score-1", Some(("under_score-1", "openfaas-fn"))),
            ("", None),
            (".openfaas-fn", None),
            ("hello.", Some(("hello", "openfaas-fn"))),
            ("hello.Upper", None),
            ("hello.-x", None),
            ("he llo", None),
            ("hé", None),
        ];
        for (input, expected) in cases {
            let parsed = FunctionRef::parse(input).ok();
            let parsed = parsed
                .as_ref()
                .map(|f| (f.name.as_str(), f.namespace.as_str()));
            assert_eq!(parsed, expected, "{input:?}");
        }
    }

    #[test]
    fn a_namespace_call_is_named_by_its_path_or_its_body() {
        let cases: [(&str, &str, Result<&str, NameError>); 7] = [
            // `faas-cli namespace create team-a`: POST /system/namespace/ {"name":"team-a"}.
            ("", "team-a", Ok("team-a")),
            ("team-a", "", Ok("team-a")),
            ("team-a", "team-a", Ok("team-a")),
            (
                "team-a",
                "team-b",
                Err(NameError::NamespaceMismatch {
                    path: "team-a".into(),
                    body: "team-b".into(),
                }),
            ),
            ("", "", Err(NameError::NoNamespace)),
            ("", "Team_A", Err(NameError::Namespace("Team_A".into()))),
            ("-a", "", Err(NameError::Namespace("-a".into()))),
        ];
        for (path, body, expected) in cases {
            assert_eq!(namespace_of_call(path, body), expected, "{path:?} {body:?}");
        }
    }

    #[test]
    fn key_is_name_dot_namespace() {
        let f = FunctionRef::parse("hello").expect("valid");
        assert_eq!(f.key(), "hello.openfaas-fn");
        assert_eq!(f.to_string(), "hello.openfaas-fn");
    }
}
