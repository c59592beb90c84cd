//! The router of a Spin app (the runtime's [`Router`]): its requests go to the component Spin's
//! routes pick, with Spin's `spin-*` headers, and its components' calls to each other
//! (`http://NAME.spin.internal`, self-requests) follow their `allowed_outbound_hosts`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{HeaderName, HeaderValue};
use wasmgate_runtime::{CallRoute, HostPattern, Router};
use wasmgate_spin::{App, OutboundHost, RouteMatch, SERVICE_CHAINING_DOMAIN};

/// The client of a request to a Spin app, which the gateway puts in the request's extensions for
/// the `spin-full-url` and `spin-client-addr` headers.
#[derive(Debug, Clone)]
pub struct SpinClient {
    /// The URL the client asked for, as it asked (`http://host/function/app/path?query`).
    pub full_url: String,
    /// Its address.
    pub peer: Option<SocketAddr>,
}

/// The client address Spin gives a request from another component.
const CHAINED_CLIENT_ADDR: &str = "0.0.0.0:0";

/// What a component's `allowed_outbound_hosts` lets it call.
#[derive(Debug, Clone, Default)]
pub(super) struct CallRights {
    self_requests: bool,
    every_component: bool,
    components: Vec<String>,
}

impl CallRights {
    /// The rights and the outside hosts of a component's entries, read (templates resolved:
    /// [`wasmgate_spin::resolve_entries`]).
    pub(super) fn of(entries: &[OutboundHost]) -> (CallRights, Vec<HostPattern>) {
        let mut rights = CallRights::default();
        let mut hosts = Vec::new();
        for entry in entries {
            match entry {
                OutboundHost::SelfRequests => rights.self_requests = true,
                OutboundHost::Components(None) => rights.every_component = true,
                OutboundHost::Components(Some(name)) => rights.components.push(name.clone()),
                OutboundHost::Host(pattern) => {
                    // A host the runtime's syntax refuses allows nothing.
                    if let Ok(pattern) = HostPattern::parse(pattern) {
                        hosts.push(pattern);
                    }
                }
                OutboundHost::OtherScheme => {}
            }
        }
        (rights, hosts)
    }

    /// The rights of a component's literal entries: a template never names the app or its
    /// components (`wasmgate_spin` refuses it), so the rights need no variable's value.
    fn literal(component: &wasmgate_spin::Component) -> CallRights {
        let entries: Vec<OutboundHost> = component
            .allowed_outbound_hosts
            .iter()
            .filter_map(|text| OutboundHost::parse(text).ok())
            .collect();
        CallRights::of(&entries).0
    }

    fn may_call(&self, component: &str) -> bool {
        self.every_component || self.components.iter().any(|c| c == component)
    }
}

/// Routes a Spin app's requests (the runtime's [`Router`]).
#[derive(Debug)]
pub(crate) struct SpinRouter {
    router: wasmgate_spin::Router,
    rights: BTreeMap<String, CallRights>,
}

impl SpinRouter {
    pub(super) fn new(app: &App) -> SpinRouter {
        SpinRouter {
            router: app.router(),
            rights: app
                .components
                .iter()
                .map(|(name, component)| (name.clone(), CallRights::literal(component)))
                .collect(),
        }
    }
}

/// Sets the `spin-*` headers of `found` on a request, over any the client sent.
fn set_headers(head: &mut http::request::Parts, found: &RouteMatch, full_url: &str, client: &str) {
    for (name, value) in found.headers(full_url, client) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            head.headers.insert(name, value);
        }
    }
}

impl Router for SpinRouter {
    fn route(&self, head: &mut http::request::Parts) -> Option<String> {
        let found = self.router.route(head.uri.path())?;
        let (full_url, client) = match head.extensions.get::<SpinClient>() {
            Some(client) => (
                client.full_url.clone(),
                client
                    .peer
                    .map_or_else(|| CHAINED_CLIENT_ADDR.to_string(), |p| p.to_string()),
            ),
            // From another function, in process.
            None => (head.uri.to_string(), CHAINED_CLIENT_ADDR.to_string()),
        };
        set_headers(head, &found, &full_url, &client);
        Some(found.component)
    }

    fn route_call(&self, from: &str, head: &mut http::request::Parts) -> CallRoute {
        let rights = self.rights.get(from).cloned().unwrap_or_default();
        let host = head.uri.host().unwrap_or_default().to_ascii_lowercase();
        if let Some(target) = host
            .strip_suffix(SERVICE_CHAINING_DOMAIN)
            .and_then(|h| h.strip_suffix('.'))
        {
            if !rights.may_call(target) {
                return CallRoute::Denied(format!(
                    "component {from} may not call {target}: its allowed_outbound_hosts does not \
                     list http://{target}.{SERVICE_CHAINING_DOMAIN} (or http://*.{SERVICE_CHAINING_DOMAIN})"
                ));
            }
            if !self.rights.contains_key(target) {
                return CallRoute::NoRoute(format!("the app has no component {target}"));
            }
            let found = wasmgate_spin::Router::chained(target, head.uri.path());
            let full_url = head.uri.to_string();
            head.headers.remove(http::header::HOST);
            set_headers(head, &found, &full_url, CHAINED_CLIENT_ADDR);
            return CallRoute::Part(found.component);
        }
        // A self-request: a relative URL (no host), or Spin's `http://self.alt`.
        if host.is_empty() || host == "self.alt" {
            if !rights.self_requests {
                return CallRoute::Denied(format!(
                    "component {from} may not make self-requests: its allowed_outbound_hosts does \
                     not list http://self"
                ));
            }
            let Some(found) = self.router.route(head.uri.path()) else {
                return CallRoute::NoRoute(format!("no route matches {}", head.uri.path()));
            };
            let full_url = head.uri.to_string();
            set_headers(head, &found, &full_url, CHAINED_CLIENT_ADDR);
            return CallRoute::Part(found.component);
        }
        CallRoute::NotMine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
[[trigger.http]]
route = "/..."
component = "front"
[[trigger.http]]
route = { private = true }
component = "back"
[component.front]
source = "front.wasm"
allowed_outbound_hosts = ["http://back.spin.internal", "http://self", "https://api.example.com"]
[component.back]
source = "back.wasm"
"#;

    fn head(uri: &str) -> http::request::Parts {
        http::Request::get(uri)
            .body(())
            .expect("valid")
            .into_parts()
            .0
    }

    #[test]
    fn requests_are_routed_with_spins_headers() {
        let router = SpinRouter::new(&App::parse(APP).expect("valid"));
        let mut request = head("http://gw/cart?x=1");
        request.extensions.insert(SpinClient {
            full_url: "http://gw/function/shop/cart?x=1".into(),
            peer: Some("10.0.0.1:5000".parse().expect("an address")),
        });
        assert_eq!(router.route(&mut request).as_deref(), Some("front"));
        let header = |r: &http::request::Parts, name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        assert_eq!(
            header(&request, "spin-full-url").as_deref(),
            Some("http://gw/function/shop/cart?x=1")
        );
        assert_eq!(header(&request, "spin-path-info").as_deref(), Some("/cart"));
        assert_eq!(
            header(&request, "spin-client-addr").as_deref(),
            Some("10.0.0.1:5000")
        );
    }

    #[test]
    fn calls_between_components_follow_allowed_outbound_hosts() {
        let router = SpinRouter::new(&App::parse(APP).expect("valid"));
        let mut chained = head("http://back.spin.internal/inner");
        assert_eq!(
            router.route_call("front", &mut chained),
            CallRoute::Part("back".into())
        );
        assert_eq!(
            chained.headers.get("spin-path-info").map(|v| v.as_bytes()),
            Some(&b"/inner"[..])
        );
        let mut back_to_front = head("http://front.spin.internal/");
        assert!(matches!(
            router.route_call("back", &mut back_to_front),
            CallRoute::Denied(_)
        ));
        let mut own = head("http://self.alt/x");
        assert_eq!(
            router.route_call("front", &mut own),
            CallRoute::Part("front".into())
        );
        let mut from_back = head("http://self.alt/x");
        assert!(matches!(
            router.route_call("back", &mut from_back),
            CallRoute::Denied(_)
        ));
        let mut outside = head("https://api.example.com/");
        assert_eq!(router.route_call("front", &mut outside), CallRoute::NotMine);
        let mut nobody = head("http://nobody.spin.internal/");
        assert!(matches!(
            SpinRouter::new(
                &App::parse(&APP.replace("http://back.spin.internal", "http://*.spin.internal"))
                    .expect("valid")
            )
            .route_call("front", &mut nobody),
            CallRoute::NoRoute(_)
        ));
    }
}
