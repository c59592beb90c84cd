//! The web portal at `/ui/`: a page to list, deploy, try and watch functions, built from plain HTML,
//! CSS and JavaScript compiled into the binary (no CDN, works offline). It talks to the gateway's own
//! management API, so it needs nothing the API does not already offer. The gateway guards it with the
//! same basic auth as `/system/*`.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use sha2::{Digest, Sha256};

use crate::http::body::{GatewayBody, text};

/// Where the portal lives; `/ui` alone redirects here.
pub const PREFIX: &str = "/ui/";

/// The policy every portal response carries: nothing but this origin, no inline script or style, no
/// framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The assets by file name. Their names carry no version, so browsers revalidate them on every load
/// (`no-cache`) against an `ETag` of their contents: a new binary is seen at once, an unchanged one
/// costs a `304`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../ui/favicon.svg"),
    ),
];

/// An asset with its `ETag`, computed once.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: HeaderValue,
}

fn assets() -> &'static [Asset] {
    static ASSETS_WITH_TAGS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS_WITH_TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|&(name, content_type, bytes)| {
                let digest = Sha256::digest(bytes);
                let etag = format!("\"{}\"", hex::encode(&digest[..12]));
                Asset {
                    name,
                    content_type,
                    bytes,
                    etag: HeaderValue::from_str(&etag)
                        .expect("hex digits are a valid header value"),
                }
            })
            .collect()
    })
}

/// Answers a request for `path` (`/ui` or under `/ui/`), already authorised.
pub fn serve(method: &Method, path: &str, request_headers: &HeaderMap) -> Response<GatewayBody> {
    if path == "/ui" {
        let mut response = with_policy(text(StatusCode::MOVED_PERMANENTLY, "see /ui/"));
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static(PREFIX));
        return response;
    }
    let name = match path.strip_prefix(PREFIX) {
        Some("") => "index.html",
        Some(name) => name,
        None => return with_policy(text(StatusCode::NOT_FOUND, "not found")),
    };
    let Some(asset) = assets().iter().find(|a| a.name == name) else {
        return with_policy(text(StatusCode::NOT_FOUND, "not found"));
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = with_policy(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the portal's files are read with GET",
        ));
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let fresh = request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == asset.etag.as_bytes()
        });
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, None)
    } else if method == Method::HEAD {
        (StatusCode::OK, None)
    } else {
        (StatusCode::OK, Some(asset.bytes))
    };
    let mut response = Response::new(match body {
        Some(bytes) => Full::new(Bytes::from_static(bytes))
            .map_err(|never| match never {})
            .boxed_unsync(),
        None => Empty::new().map_err(|never| match never {}).boxed_unsync(),
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::ETAG, asset.etag.clone());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    if status == StatusCode::OK {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.bytes.len()));
    }
    with_policy(response)
}

/// Adds the security headers every portal response carries.
fn with_policy(mut response: Response<GatewayBody>) -> Response<GatewayBody> {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names SVG elements; never fetched.
    const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

    async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        let response = serve(&Method::GET, path, &map);
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    }

    #[tokio::test]
    async fn serves_each_asset_with_its_type_and_policy() {
        for (path, kind) in [
            ("/ui/", "text/html; charset=utf-8"),
            ("/ui/index.html", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/style.css", "text/css; charset=utf-8"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let (status, headers, body) = get(path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], kind, "{path}");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(headers[header::CACHE_CONTROL], "private, no-cache");
            assert_eq!(
                headers[header::CONTENT_LENGTH],
                body.len().to_string().as_str()
            );
            assert!(!body.is_empty());
        }
        let (_, _, page) = get("/ui/", &[]).await;
        let page = String::from_utf8_lossy(&page);
        for needed in ["app.js", "style.css", "<html lang="] {
            assert!(page.contains(needed), "index.html lacks {needed}");
        }
        // No asset reaches for another origin: the page works offline and the CSP holds.
        for asset in assets() {
            let text = String::from_utf8_lossy(asset.bytes).replace(SVG_NAMESPACE, "");
            for other in ["http://", "https://", "//cdn", "@import"] {
                assert!(
                    !text.contains(other),
                    "{} refers to another origin ({other})",
                    asset.name
                );
            }
        }
    }

    #[tokio::test]
    async fn redirects_revalidates_and_refuses() {
        let (status, headers, _) = get("/ui", &[]).await;
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(headers[header::LOCATION], "/ui/");

        let (status, _, _) = get("/ui/nope.js", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get("/ui/app.js/x", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (_, headers, _) = get("/ui/app.js", &[]).await;
        let etag = headers[header::ETAG].to_str().expect("ascii").to_string();
        let (status, _, body) = get("/ui/app.js", &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, _) = get("/ui/app.js", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(status, StatusCode::OK);
        let (_, other, _) = get("/ui/style.css", &[]).await;
        assert_ne!(other[header::ETAG], etag.as_str());

        let response = serve(&Method::POST, "/ui/", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        let response = serve(&Method::HEAD, "/ui/", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.expect("body");
        assert!(body.to_bytes().is_empty());
    }
}
