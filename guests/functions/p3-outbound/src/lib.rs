//! `p3-outbound`: calls another HTTP server through the wasi:http 0.3 client (`wasi:http/client`
//! `send`) and reports what happened, to test outbound rules. `GET /?url=<url>` (`http://` or
//! `https://`, default `http://127.0.0.1:1/`) sends one GET to `url` and answers 200
//! `<status> <first 40 bytes of the body, trimmed>\n`, or 502 `error <error-code>\n` (the `ErrorCode`
//! in Rust debug form, e.g. `error ErrorCode::HttpRequestDenied`) if the request could not be sent.

use wasip3::http::client;
use wasip3::http::types::{ErrorCode, Fields, Request, Response, Scheme};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

struct Outbound;

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// Sends one GET of `url` (`http[s]://host[:port][/path]`) and describes its answer.
async fn get(url: &str) -> Result<String, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("unsupported url {url}"));
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, no_trailers, None);
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let response = client::send(request)
        .await
        .map_err(|code| format!("error {code:?}"))?;
    let status = response.get_status_code();
    let (done, done_rx) = wit_future::new(|| Ok(()));
    let (mut body, _trailers) = Response::consume_body(response, done_rx);
    let mut bytes = Vec::with_capacity(64);
    while bytes.len() < 40 {
        let (result, read) = body.read(bytes).await;
        bytes = read;
        if !matches!(result, StreamResult::Complete(_)) {
            break;
        }
        bytes.reserve(64);
    }
    drop(body);
    drop(done);
    bytes.truncate(40);
    Ok(format!(
        "{status} {}",
        String::from_utf8_lossy(&bytes).trim()
    ))
}

impl wasip3::exports::http::handler::Guest for Outbound {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let url = param(query, "url").unwrap_or("http://127.0.0.1:1/");
        let (status, line) = match get(url).await {
            Ok(line) => (200, line),
            Err(error) => (502, error),
        };
        let (mut body, body_rx) = wit_stream::new();
        let (_, no_trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(body_rx), no_trailers);
        response
            .set_status_code(status)
            .map_err(|()| ErrorCode::InternalError(Some("status".into())))?;
        wasip3::spawn_local(async move {
            body.write_all(format!("{line}\n").into_bytes()).await;
        });
        Ok(response)
    }
}

wasip3::http::service::export!(Outbound);
