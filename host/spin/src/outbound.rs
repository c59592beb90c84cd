//! `allowed_outbound_hosts`, in Spin's syntax (`https://api.example.com`, `http://*.example.com:8080`,
//! `*://host:*`), turned into what wasmgate enforces: a host pattern with a port
//! (`api.example.com:443`), self-requests, or calls to components (`http://NAME.spin.internal`).
//! The scheme decides the default port; wasmgate's allow-list does not enforce the scheme itself.

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
                "{text:?}: templates ({{{{ variable }}}}) in allowed hosts are not supported yet"
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
            Some(port) if port.contains("..") => {
                return Err(format!("{text:?}: port ranges are not supported yet"));
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
        ];
        for (text, expected) in cases {
            assert_eq!(OutboundHost::parse(text), Ok(expected), "{text}");
        }
        for bad in [
            "api.example.com",
            "https://{{ host }}",
            "https://*",
            "https://a.b/path",
            "http://a:1..5",
            "http://a:x",
        ] {
            assert!(OutboundHost::parse(bad).is_err(), "{bad}");
        }
    }
}
