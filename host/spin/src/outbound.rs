//! `allowed_outbound_hosts`, in Spin's syntax (`https://api.example.com`, `http://*.example.com:8080`,
//! `*://host:*`), turned into what wasmgate enforces: a host pattern with a port
//! (`api.example.com:443`), self-requests, or calls to components (`http://NAME.spin.internal`).
//! The scheme decides the default port; wasmgate's allow-list does not enforce the scheme itself.
//! A port range is Spin's `8000..8081` (the last port excluded, as in Spin).
//!
//! An entry may be a template over the app's variables (`https://{{ api_host }}:{{ port }}`):
//! [`check_entry`] checks it when the manifest is read (every variable defined; with the variables'
//! defaults, if they all have one, a valid entry), and [`resolve_entries`] reads it with the app's
//! values at deploy, and again whenever they change (a secret's update). A template that comes
//! out empty (`""`, `"http://"`, `"https://"`) allows nothing, as in Spin.

use std::collections::BTreeMap;

use crate::variables::Template;

/// One entry of `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundHost {
    /// `http://self` or `http://self.alt`: requests to the app's own routes (relative URLs, or
    /// `http://self.alt/...`).
    SelfRequests,
    /// `http://NAME.spin.internal` (`Some(NAME)`) or `http://*.spin.internal` (`None`): calls to the
    /// app's components, private ones included.
    Components(Option<String>),
    /// A host pattern for wasmgate's allow-list (`host:port`, `*.domain:port`, `host:*`).
    Host(String),
    /// A scheme other than HTTP (`redis://`, `postgres://`, `mqtt://`...): only Spin interfaces that
    /// wasmgate refuses would use it, so it allows nothing.
    OtherScheme,
}

/// The domain of the component calls.
pub const SERVICE_CHAINING_DOMAIN: &str = "spin.internal";

impl OutboundHost {
    /// Reads one entry.
    pub fn parse(text: &str) -> Result<OutboundHost, String> {
        let text = text.trim();
        if text.contains("{{") {
            return Err(format!(
                "{text:?}: a template is read with the app's variables first (resolve_entries)"
            ));
        }
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            format!(
                "{text:?}: give a scheme, a host and an optional port (https://api.example.com)"
            )
        })?;
        let default_port = match scheme {
            "http" => Some(80),
            "https" => Some(443),
            "*" => None,
            _ => return Ok(OutboundHost::OtherScheme),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!("{text:?}: an allowed host has no path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        if host == "self" || host == "self.alt" {
            return Ok(OutboundHost::SelfRequests);
        }
        if let Some(name) = host
            .strip_suffix(SERVICE_CHAINING_DOMAIN)
            .and_then(|h| h.strip_suffix('.'))
        {
            return Ok(OutboundHost::Components(
                (name != "*").then(|| name.to_string()),
            ));
        }
        if host.is_empty() || host == "*" {
            return Err(format!(
                "{text:?}: any host (`*`) is not supported; name the hosts (`*.example.com` is)"
            ));
        }
        let port = match port {
            None => default_port.map(|p| p.to_string()),
            Some("*") => Some("*".to_string()),
            Some(range) if range.contains("..") => {
                let ends = range.split_once("..").map(|(low, high)| {
                    (
                        low.parse::<u16>().ok().filter(|p| *p > 0),
                        high.parse::<u16>().ok(),
                    )
                });
                match ends {
                    Some((Some(low), Some(high))) if low < high => {
                        Some(format!("{low}-{}", high - 1))
                    }
                    _ => {
                        return Err(format!(
                            "{text:?}: a port range is LOW..END, the END port excluded \
                             (8000..8081 for 8000 to 8080), with LOW below END"
                        ));
                    }
                }
            }
            Some(range) if range.contains('-') => {
                return Err(format!(
                    "{text:?}: Spin writes a port range as LOW..END, the END port excluded \
                     (8000..8081 for 8000 to 8080)"
                ));
            }
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => Some(port.to_string()),
                _ => return Err(format!("{text:?}: {port:?} is not a port")),
            },
        };
        Ok(OutboundHost::Host(match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }))
    }
}

/// Whether a resolved template allows nothing (Spin's optional endpoint).
fn is_empty_entry(text: &str) -> bool {
    matches!(text.trim(), "" | "http://" | "https://")
}

/// Checks one entry of `allowed_outbound_hosts` as the manifest gives it, with the app's
/// variables: a literal must parse; a template must name only defined variables and, when they
/// all have defaults, give a valid entry with them.
pub(crate) fn check_entry(
    text: &str,
    variables: &BTreeMap<String, crate::Variable>,
) -> Result<(), String> {
    if !text.contains("{{") {
        return OutboundHost::parse(text).map(drop);
    }
    let template = Template::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    if let Some(unknown) = template
        .references()
        .find(|name| !variables.contains_key(*name))
    {
        return Err(format!(
            "{text:?} refers to {{{{ {unknown} }}}}, which [variables] does not define"
        ));
    }
    let defaults: BTreeMap<String, String> = variables
        .iter()
        .filter_map(|(name, v)| Some((name.clone(), v.default.clone()?)))
        .collect();
    if let Some(resolved) = template.render(&defaults)
        && !is_empty_entry(&resolved)
    {
        let host = OutboundHost::parse(&resolved).map_err(|e| {
            format!(
                "{text:?} is {resolved:?} with the variables' defaults, which is not valid: {e}"
            )
        })?;
        only_hosts(text, &host)?;
    }
    Ok(())
}

/// A template may name outside hosts only: the app's own components and `self` are written out.
fn only_hosts(text: &str, host: &OutboundHost) -> Result<(), String> {
    match host {
        OutboundHost::SelfRequests | OutboundHost::Components(_) => Err(format!(
            "{text:?}: a template cannot name the app itself or its components; write \
             http://self or http://NAME.spin.internal as it is"
        )),
        _ => Ok(()),
    }
}

/// The entries of `allowed_outbound_hosts`, their templates read with the app's variables
/// (`values`); an entry that comes out empty allows nothing and is left out. Refuses, naming the
/// entry, a template with a variable that has no value or that gives an invalid entry.
pub fn resolve_entries(
    entries: &[String],
    values: &BTreeMap<String, String>,
) -> Result<Vec<OutboundHost>, String> {
    let mut hosts = Vec::new();
    for text in entries {
        if !text.contains("{{") {
            hosts.push(OutboundHost::parse(text)?);
            continue;
        }
        let template = Template::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
        let Some(resolved) = template.render(values) else {
            let missing = template
                .references()
                .find(|name| !values.contains_key(*name))
                .unwrap_or_default();
            return Err(format!(
                "{text:?}: the variable {missing} has no value (give it a default, or a value \
                 through envVars or its secret)"
            ));
        };
        if is_empty_entry(&resolved) {
            continue;
        }
        let host = OutboundHost::parse(&resolved)
            .map_err(|e| format!("{text:?} is {resolved:?} with the app's variables: {e}"))?;
        only_hosts(text, &host)?;
        hosts.push(host);
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_syntax_becomes_wasmgates() {
        let cases = [
            (
                "https://api.example.com",
                OutboundHost::Host("api.example.com:443".into()),
            ),
            (
                "http://api.example.com/",
                OutboundHost::Host("api.example.com:80".into()),
            ),
            (
                "https://*.example.com:8443",
                OutboundHost::Host("*.example.com:8443".into()),
            ),
            ("*://example.com", OutboundHost::Host("example.com".into())),
            (
                "http://example.com:*",
                OutboundHost::Host("example.com:*".into()),
            ),
            ("http://self", OutboundHost::SelfRequests),
            ("https://self.alt", OutboundHost::SelfRequests),
            (
                "http://back.spin.internal",
                OutboundHost::Components(Some("back".into())),
            ),
            ("http://*.spin.internal", OutboundHost::Components(None)),
            ("redis://cache:6379", OutboundHost::OtherScheme),
            (
                "https://api.example.com:8000..8081",
                OutboundHost::Host("api.example.com:8000-8080".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(OutboundHost::parse(text), Ok(expected), "{text}");
        }
        for bad in [
            "api.example.com",
            "https://{{ host }}",
            "https://*",
            "https://a.b/path",
            "http://a:5..5",
            "http://a:0..5",
            "http://a:1..x",
            "http://a:8000-8080",
            "http://a:x",
        ] {
            assert!(OutboundHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_are_read_with_the_apps_variables() {
        let values: BTreeMap<String, String> = [("host", "api.example.com"), ("empty", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let entries = [
            "https://{{ host }}:8000..8081".to_string(),
            "https://{{ empty }}".to_string(),
            "http://back.spin.internal".to_string(),
        ];
        assert_eq!(
            resolve_entries(&entries, &values),
            Ok(vec![
                OutboundHost::Host("api.example.com:8000-8080".into()),
                OutboundHost::Components(Some("back".into())),
            ])
        );
        for (entry, expected) in [
            ("https://{{ nobody }}", "the variable nobody has no value"),
            (
                "https://{{ host }}/path",
                "\"https://{{ host }}/path\" is \"https://api.example.com/path\"",
            ),
            (
                "http://{{ host }}.spin.internal",
                "cannot name the app itself",
            ),
            ("https://{{ host", "\"https://{{ host\""),
        ] {
            let error = resolve_entries(&[entry.to_string()], &values).expect_err(entry);
            assert!(error.contains(expected), "{entry}: {error}");
        }
    }
}
