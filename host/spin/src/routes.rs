//! Spin's HTTP routing, as its HTTP trigger does it: an exact route (`/api/health`) before any
//! wildcard (`/api/...`), and among wildcards the longest prefix; a trailing slash in the path does
//! not change the match; private routes are not routed at all (only `*.spin.internal` reaches their
//! components). And the `spin-*` headers a matched request carries.

/// A trigger's `route`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteSpec {
    /// A path pattern, as written in the manifest (`/hello`, `/api/...`, `/...`).
    Path(String),
    /// `{ private = true }`: no route from outside.
    Private,
}

impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteSpec::Path(raw) => f.write_str(raw),
            RouteSpec::Private => f.write_str("{ private = true }"),
        }
    }
}

/// What a route pattern means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// This path (no trailing slash; `/` for the root).
    Exact(String),
    /// This prefix (no trailing slash; empty for the root) and every path below it.
    Wildcard(String),
}

/// `path` without its trailing slashes (the root stays `/`), as routes are compared.
fn trim_trailing_slash(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

impl RouteSpec {
    /// Reads a route pattern: `/path`, `/prefix/...` (or Spin's other spelling, `/prefix/*`).
    pub fn parse(raw: &str) -> Result<RouteSpec, String> {
        pattern(raw)?;
        Ok(RouteSpec::Path(raw.to_string()))
    }
}

fn pattern(raw: &str) -> Result<Pattern, String> {
    let absolute = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("/{raw}")
    };
    let (prefix, wildcard) = match absolute
        .strip_suffix("/...")
        .or_else(|| absolute.strip_suffix("/*"))
    {
        Some(prefix) => (prefix, true),
        None => (absolute.as_str(), false),
    };
    if prefix.split('/').any(|segment| segment.starts_with(':')) {
        return Err(format!(
            "{raw:?}: named segments (`:name`) are not supported yet; use a wildcard (`/prefix/...`) \
             and read spin-path-info"
        ));
    }
    if prefix.contains('*') || prefix.contains("...") {
        return Err(format!(
            "{raw:?}: a wildcard may only end a route (`/prefix/...`)"
        ));
    }
    if prefix.contains(['?', '#']) {
        return Err(format!(
            "{raw:?}: a route is a path, without query or fragment"
        ));
    }
    if absolute.starts_with(WELL_KNOWN_PREFIX) {
        return Err(format!(
            "{raw:?}: routes under {WELL_KNOWN_PREFIX} are reserved by Spin"
        ));
    }
    Ok(if wildcard {
        Pattern::Wildcard(prefix.trim_end_matches('/').to_string())
    } else {
        Pattern::Exact(trim_trailing_slash(prefix).to_string())
    })
}

/// Routes Spin keeps for itself.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// A route of the router: the pattern, how the manifest wrote it, and its component.
#[derive(Debug, Clone)]
struct Entry {
    pattern: Pattern,
    raw: String,
    component: String,
}

/// The app's public routes.
#[derive(Debug, Clone, Default)]
pub struct Router {
    entries: Vec<Entry>,
}

/// Which component serves a path, and what Spin tells it about the match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The component's name.
    pub component: String,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw_route: String,
    /// The route with Spin's normalisation (`spin-matched-route`): absolute, no trailing slash.
    pub matched_route: String,
    /// The route without its trailing wildcard (`spin-component-route`): `/api` for `/api/...`,
    /// empty for `/...`.
    pub component_route: String,
    /// The part of the path the wildcard matched, with its leading slash (`spin-path-info`); empty
    /// for an exact route.
    pub path_info: String,
}

impl Router {
    /// The router of these routes and their components (private ones are left out); a pattern
    /// that does not parse (the manifest checks them) routes nothing.
    pub fn new(routes: impl IntoIterator<Item = (RouteSpec, String)>) -> Router {
        let entries = routes
            .into_iter()
            .filter_map(|(route, component)| match route {
                RouteSpec::Path(raw) => Some(Entry {
                    pattern: pattern(&raw).ok()?,
                    raw,
                    component,
                }),
                RouteSpec::Private => None,
            })
            .collect();
        Router { entries }
    }

    /// The component Spin would pick for `path` (the path alone, no query): an exact route first,
    /// else the wildcard with the longest prefix. `None`: no route (Spin answers 404).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let trimmed = trim_trailing_slash(path);
        let exact = self
            .entries
            .iter()
            .find(|e| matches!(&e.pattern, Pattern::Exact(p) if p == trimmed));
        let entry = exact.or_else(|| {
            self.entries
                .iter()
                .filter_map(|e| match &e.pattern {
                    Pattern::Wildcard(prefix) if under(path, prefix) => Some((prefix.len(), e)),
                    _ => None,
                })
                .max_by_key(|(length, _)| *length)
                .map(|(_, e)| e)
        })?;
        let path_info = match &entry.pattern {
            Pattern::Exact(_) => String::new(),
            Pattern::Wildcard(prefix) => path[prefix.len()..].to_string(),
        };
        Some(matched(entry.component.clone(), &entry.raw, path_info))
    }

    /// The match of a call to `http://COMPONENT.spin.internal/PATH`: as if through a `/...` route.
    pub fn chained(component: &str, path: &str) -> RouteMatch {
        matched(component.to_string(), "/...", path.to_string())
    }

    /// The components that have a public route.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.component.as_str())
    }
}

/// Whether `path` is `prefix` or below it, segment by segment (`/api` is under `/api`, `/api/x`
/// too, `/apix` is not).
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn matched(component: String, raw: &str, path_info: String) -> RouteMatch {
    let absolute = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("/{raw}")
    };
    let matched_route = if absolute.len() > 1 {
        absolute.trim_end_matches('/').to_string()
    } else {
        absolute
    };
    RouteMatch {
        component,
        raw_route: raw.to_string(),
        component_route: raw.strip_suffix("/...").unwrap_or(raw).to_string(),
        matched_route,
        path_info,
    }
}

/// The headers Spin's HTTP trigger adds to the request it gives a component.
pub mod headers {
    /// The URL the client asked for, with its query.
    pub const FULL_URL: &str = "spin-full-url";
    /// The part of the path a wildcard matched.
    pub const PATH_INFO: &str = "spin-path-info";
    /// The route, normalised.
    pub const MATCHED_ROUTE: &str = "spin-matched-route";
    /// The route without its wildcard.
    pub const COMPONENT_ROUTE: &str = "spin-component-route";
    /// The route as written.
    pub const RAW_COMPONENT_ROUTE: &str = "spin-raw-component-route";
    /// The app's base path: always `/` in manifest version 2.
    pub const BASE_PATH: &str = "spin-base-path";
    /// The client's address and port (`0.0.0.0:0` for a call from another component).
    pub const CLIENT_ADDR: &str = "spin-client-addr";
}

impl RouteMatch {
    /// The `spin-*` headers for this match, the request's full URL and its client.
    pub fn headers(&self, full_url: &str, client_addr: &str) -> [(&'static str, String); 7] {
        [
            (headers::FULL_URL, full_url.to_string()),
            (headers::PATH_INFO, self.path_info.clone()),
            (headers::MATCHED_ROUTE, self.matched_route.clone()),
            (headers::BASE_PATH, "/".to_string()),
            (headers::RAW_COMPONENT_ROUTE, self.raw_route.clone()),
            (headers::COMPONENT_ROUTE, self.component_route.clone()),
            (headers::CLIENT_ADDR, client_addr.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::new(routes.iter().map(|(route, component)| {
            let route = if *route == "private" {
                RouteSpec::Private
            } else {
                RouteSpec::parse(route).expect("valid")
            };
            (route, component.to_string())
        }))
    }

    #[test]
    fn exact_before_wildcard_and_the_longest_prefix_first() {
        let router = router(&[
            ("/...", "root"),
            ("/api/...", "api"),
            ("/api/v2/...", "v2"),
            ("/api/health", "health"),
            ("/static/*", "files"),
            ("private", "hidden"),
        ]);
        // (path, component, path info)
        let cases = [
            ("/", "root", "/"),
            ("/anything/else", "root", "/anything/else"),
            ("/api", "api", ""),
            ("/api/", "api", "/"),
            ("/api/users/7", "api", "/users/7"),
            ("/apix", "root", "/apix"),
            ("/api/v2/x/", "v2", "/x/"),
            ("/api/health", "health", ""),
            ("/api/health/", "health", ""),
            ("/api/health/deep", "api", "/health/deep"),
            ("/static/a.css", "files", "/a.css"),
        ];
        for (path, component, info) in cases {
            let found = router.route(path).expect(path);
            assert_eq!(
                (found.component.as_str(), found.path_info.as_str()),
                (component, info),
                "{path}"
            );
        }
        assert!(!router.components().any(|c| c == "hidden"));
    }

    #[test]
    fn no_route_is_none() {
        let router = router(&[("/hello", "a"), ("/api/...", "b"), ("private", "c")]);
        for path in ["/", "/hello/x", "/ap", "/other"] {
            assert_eq!(router.route(path), None, "{path}");
        }
    }

    #[test]
    fn the_headers_are_spins() {
        let router = router(&[("/foo/...", "a"), ("/exact/", "b"), ("/...", "c")]);
        let found = router.route("/foo/bar").expect("routed");
        let headers = found.headers("https://example.com/foo/bar?k=v", "127.0.0.1:8777");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .expect(name)
        };
        assert_eq!(get(headers::FULL_URL), "https://example.com/foo/bar?k=v");
        assert_eq!(get(headers::PATH_INFO), "/bar");
        assert_eq!(get(headers::MATCHED_ROUTE), "/foo/...");
        assert_eq!(get(headers::BASE_PATH), "/");
        assert_eq!(get(headers::RAW_COMPONENT_ROUTE), "/foo/...");
        assert_eq!(get(headers::COMPONENT_ROUTE), "/foo");
        assert_eq!(get(headers::CLIENT_ADDR), "127.0.0.1:8777");

        let exact = router.route("/exact").expect("routed");
        assert_eq!(
            (exact.matched_route.as_str(), exact.raw_route.as_str()),
            ("/exact", "/exact/")
        );
        let root = router.route("/x").expect("routed");
        assert_eq!(root.component_route, "");
        assert_eq!(root.matched_route, "/...");

        let chained = Router::chained("hidden", "/inner");
        assert_eq!(
            (
                chained.component.as_str(),
                chained.path_info.as_str(),
                chained.matched_route.as_str()
            ),
            ("hidden", "/inner", "/...")
        );
    }

    #[test]
    fn patterns_spin_does_not_have_or_we_do_not_support_yet_are_refused() {
        for bad in [
            "/users/:id",
            "/a/*/b",
            "/a/.../b",
            "/.well-known/spin/x",
            "/a?b",
        ] {
            assert!(RouteSpec::parse(bad).is_err(), "{bad}");
        }
        for good in ["/", "/...", "/a/...", "a", "/a/*", "/a/b/"] {
            assert!(RouteSpec::parse(good).is_ok(), "{good}");
        }
    }
}
