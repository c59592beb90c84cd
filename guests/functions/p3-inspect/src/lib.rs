//! `p3-inspect`: the wasi:http 0.3 twin of `inspect`; shows what a p3 function can see of its host,
//! through the WASIp3 interfaces only (not the standard library's WASIp2 ones), to test isolation.
//!
//! - `GET /env` lists `wasi:cli/environment@0.3` `get-environment`, one `NAME=value` per line;
//! - `GET /file?<path>` answers the file's contents, read through `wasi:filesystem@0.3` from the
//!   preopened directory whose name is the longest prefix of `path` (`.` for a relative path);
//!   404 with the error text (`no preopened directory holds <path>` or the filesystem `ErrorCode`,
//!   e.g. `ErrorCode::NoEntry`) if it cannot be read;
//! - anything else answers 400 with a usage line.
//!
//! Every request writes one line `p3-inspect <path>` (the path with its query) to stdout through
//! `wasi:cli/stdout@0.3`.

use wasip3::filesystem::preopens;
use wasip3::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Inspect;

async fn log(line: String) {
    let (mut tx, rx) = wit_stream::new();
    let done = wasip3::cli::stdout::write_via_stream(rx);
    tx.write_all(line.into_bytes()).await;
    drop(tx);
    let _ = done.await;
}

fn answer(status: u16, body: Vec<u8>) -> Result<Response, ErrorCode> {
    let (mut tx, body_rx) = wit_stream::new();
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(body_rx), no_trailers);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some("status".into())))?;
    wasip3::spawn_local(async move {
        tx.write_all(body).await;
    });
    Ok(response)
}

/// The preopened directory that holds `path`, and `path` relative to it.
fn locate(path: &str) -> Option<(Descriptor, String)> {
    let mut best: Option<(Descriptor, String, usize)> = None;
    for (dir, name) in preopens::get_directories() {
        let rest = if name == "." {
            (!path.starts_with('/')).then(|| path.to_string())
        } else if name == "/" {
            path.strip_prefix('/').map(str::to_string)
        } else {
            let name = name.trim_end_matches('/');
            match path.strip_prefix(name) {
                Some("") => Some(String::new()),
                Some(rest) if rest.starts_with('/') => Some(rest.trim_start_matches('/').into()),
                _ => None,
            }
        };
        if let Some(rest) = rest
            && best.as_ref().is_none_or(|(_, _, len)| name.len() > *len)
        {
            best = Some((dir, rest, name.len()));
        }
    }
    best.map(|(dir, rest, _)| {
        let rest = if rest.is_empty() { ".".into() } else { rest };
        (dir, rest)
    })
}

async fn read_file(path: &str) -> Result<Vec<u8>, String> {
    let (dir, relative) =
        locate(path).ok_or_else(|| format!("no preopened directory holds {path}"))?;
    let file = dir
        .open_at(
            PathFlags::SYMLINK_FOLLOW,
            relative,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (contents, result) = file.read_via_stream(0);
    let bytes = contents.collect().await;
    result.await.map_err(|e| e.to_string())?;
    Ok(bytes)
}

impl wasip3::exports::http::handler::Guest for Inspect {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        log(format!("p3-inspect {path_with_query}\n")).await;
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        match (request.get_method(), path) {
            (Method::Get, "/env") => {
                let env: String = wasip3::cli::environment::get_environment()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect();
                answer(200, env.into_bytes())
            }
            (Method::Get, "/file") => match read_file(query).await {
                Ok(contents) => answer(200, contents),
                Err(error) => answer(404, error.into_bytes()),
            },
            _ => answer(400, b"try GET /env or GET /file?PATH\n".to_vec()),
        }
    }
}

wasip3::http::service::export!(Inspect);
