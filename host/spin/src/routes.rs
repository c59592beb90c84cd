//! Spin's HTTP routing, as its HTTP trigger does it. A route is a list of segments, each literal
//! (`api`) or named (`:id`, any one non-empty segment), optionally ending in a wildcard (`/...`, any
//! rest of the path, nothing included). Of the routes that match a path, the first segment where
//! two differ decides: a literal before a named segment before the wildcard; equal all along, the
//! shorter route wins (`/api` before `/api/...` for `/api`), and between routes of the same shape
//! the manifest's first. So an exact route comes before any wildcard, and among wildcards the
//! longest prefix first, as before named segments existed. A trailing slash in the path does not
//! change the match; private routes are not routed at all (only `*.spin.internal` reaches their
//! components). And the `spin-*` headers a matched request carries, `spin-path-match-<name>` for
//! each named segment among them.
//!
//! Unlike Spin (whose router also splits at dots), a named segment is a whole segment: `/:name.json`
//! is refused rather than matched differently.

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

/// One segment of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// This text.
    Literal(String),
    /// `:name`: any one non-empty segment, told to the component as `spin-path-match-<name>`.
    Named(String),
}

/// What a route pattern means: its segments, and whether a wildcard ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<Segment>,
    wildcard: bool,
}

/// A route's match of a path: the named segments' values, and the rest of the path (the
/// wildcard's part, with its leading slash).
type Captured<'p> = (Vec<(String, String)>, &'p str);

impl Pattern {
    /// The captures of `path` (which starts with `/`) if this pattern matches it.
    fn captures<'p>(&self, path: &'p str) -> Option<Captured<'p>> {
        let mut rest = path;
        let mut named = Vec::new();
        for segment in &self.segments {
            let after = rest.strip_prefix('/')?;
            let (piece, tail) = after.split_at(after.find('/').unwrap_or(after.len()));
            match segment {
                Segment::Literal(literal) if literal == piece => {}
                Segment::Named(name) if !piece.is_empty() => {
                    named.push((name.clone(), piece.to_string()))
                }
                _ => return None,
            }
            rest = tail;
        }
        (self.wildcard || rest.bytes().all(|b| b == b'/')).then_some((named, rest))
    }

    /// Where this pattern ranks among those matching a path (the least first): segment by segment,
    /// a literal (0) before a named segment (1) before the wildcard (2), then the shorter.
    fn rank(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(_) => 0,
                Segment::Named(_) => 1,
            })
            .chain(self.wildcard.then_some(2))
            .collect()
    }
}

impl RouteSpec {
    /// Reads a route pattern: `/path`, `/users/:id`, `/prefix/...` (or Spin's other spelling,
    /// `/prefix/*`), `/users/:id/...`.
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
    let trimmed = prefix.trim_end_matches('/');
    let segments = trimmed
        .split('/')
        .skip(1)
        .map(|segment| match segment.strip_prefix(':') {
            None => Ok(Segment::Literal(segment.to_string())),
            Some(name) if is_segment_name(name) => Ok(Segment::Named(name.to_string())),
            Some(_) => Err(format!(
                "{raw:?}: a named segment is `:` and a name of letters, digits, `_` and `-`, \
                 the whole segment (`/users/:id`)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Two names one header would carry (`spin-path-match-user-id` for `user_id` and `User-Id`).
    let mut headers: Vec<String> = segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Named(name) => Some(header_name(name)),
            Segment::Literal(_) => None,
        })
        .collect();
    headers.sort_unstable();
    if let Some(twice) = headers.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "{raw:?}: two named segments would both be the header {:?}",
            twice[0]
        ));
    }
    Ok(Pattern { segments, wildcard })
}

/// The header that carries the named segment `name`'s value, as Spin names it.
fn header_name(name: &str) -> String {
    format!(
        "{}{}",
        headers::PATH_MATCH_PREFIX,
        name.to_ascii_lowercase().replace('_', "-")
    )
}

/// Whether `name` may name a segment: it becomes part of a header name.
fn is_segment_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
    /// The named segments' names and values (`spin-path-match-<name>`), in the route's order.
    pub named: Vec<(String, String)>,
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

    /// The component Spin would pick for `path` (the path alone, no query; it starts with `/`):
    /// of the routes that match, the first by the module's precedence. `None`: no route (Spin
    /// answers 404).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let (entry, (named, rest)) = self
            .entries
            .iter()
            .filter_map(|e| Some((e, e.pattern.captures(path)?)))
            .min_by_key(|(e, _)| e.pattern.rank())?;
        let path_info = if entry.pattern.wildcard {
            rest.to_string()
        } else {
            String::new()
        };
        let mut found = matched(entry.component.clone(), &entry.raw, path_info);
        found.named = named;
        Some(found)
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
        named: Vec::new(),
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
    /// Before a named segment's name (lower case, `-` for `_`): the segment's value.
    pub const PATH_MATCH_PREFIX: &str = "spin-path-match-";
}

impl RouteMatch {
    /// The `spin-*` headers for this match, the request's full URL and its client.
    pub fn headers(&self, full_url: &str, client_addr: &str) -> Vec<(String, String)> {
        let fixed = [
            (headers::FULL_URL, full_url.to_string()),
            (headers::PATH_INFO, self.path_info.clone()),
            (headers::MATCHED_ROUTE, self.matched_route.clone()),
            (headers::BASE_PATH, "/".to_string()),
            (headers::RAW_COMPONENT_ROUTE, self.raw_route.clone()),
            (headers::COMPONENT_ROUTE, self.component_route.clone()),
            (headers::CLIENT_ADDR, client_addr.to_string()),
        ];
        let named = self.named.iter().map(|(name, value)| {
            let name = name.to_ascii_lowercase().replace('_', "-");
            (
                format!("{}{name}", headers::PATH_MATCH_PREFIX),
                value.clone(),
            )
        });
        fixed
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .chain(named)
            .collect()
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
                .find(|(n, _)| n == name)
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
    fn named_segments_rank_between_literals_and_the_wildcard() {
        let router = router(&[
            ("/...", "root"),
            ("/users/...", "users-any"),
            ("/users/:id", "user"),
            ("/users/me", "me"),
            ("/users/:id/posts/:post", "post"),
            ("/users/:id/...", "user-any"),
            ("/:section/about", "about"),
            ("/docs/:page", "doc"),
            ("/a/:x", "first"),
            ("/a/:y", "second"),
        ]);
        /// A path, its component, its named segments and its path info.
        type Case = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
            &'static str,
        );
        let cases: [Case; 13] = [
            ("/users/7", "user", &[("id", "7")], ""),
            ("/users/7/", "user", &[("id", "7")], ""),
            ("/users/me", "me", &[], ""),
            ("/users", "users-any", &[], ""),
            ("/users/", "users-any", &[], "/"),
            (
                "/users/7/posts/3",
                "post",
                &[("id", "7"), ("post", "3")],
                "",
            ),
            ("/users/7/posts", "user-any", &[("id", "7")], "/posts"),
            (
                "/users/7/posts/3/x",
                "user-any",
                &[("id", "7")],
                "/posts/3/x",
            ),
            ("/users//x", "users-any", &[], "//x"),
            ("/docs/about", "doc", &[("page", "about")], ""),
            ("/blog/about", "about", &[("section", "blog")], ""),
            ("/a/b", "first", &[("x", "b")], ""),
            ("/docs", "root", &[], "/docs"),
        ];
        for (path, component, named, info) in cases {
            let found = router.route(path).expect(path);
            let named: Vec<(String, String)> = named
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(
                (
                    found.component.as_str(),
                    &found.named,
                    found.path_info.as_str()
                ),
                (component, &named, info),
                "{path}"
            );
        }
    }

    #[test]
    fn a_named_segment_is_a_header() {
        let router = router(&[("/foo/:user_ID/...", "a")]);
        let found = router.route("/foo/42/bar").expect("routed");
        let headers = found.headers("http://h/foo/42/bar", "127.0.0.1:1");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("spin-path-match-user-id"), Some("42"));
        assert_eq!(get(headers::PATH_INFO), Some("/bar"));
        assert_eq!(get(headers::MATCHED_ROUTE), Some("/foo/:user_ID/..."));
        assert_eq!(get(headers::COMPONENT_ROUTE), Some("/foo/:user_ID"));
        assert_eq!(headers.len(), 8);
    }

    #[test]
    fn patterns_spin_does_not_have_or_we_do_not_support_yet_are_refused() {
        for bad in [
            "/users/:",
            "/users/:id.json",
            "/:a/:A",
            "/:user_id/:user-id",
            "/a/*/b",
            "/a/.../b",
            "/.well-known/spin/x",
            "/a?b",
        ] {
            assert!(RouteSpec::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "/",
            "/...",
            "/a/...",
            "a",
            "/a/*",
            "/a/b/",
            "/users/:id",
            "/:a/:b/...",
            "/a:b",
        ] {
            assert!(RouteSpec::parse(good).is_ok(), "{good}");
        }
    }
}
