//! `pieces`: writes its log lines in pieces, as programs that print progress do, so the host's
//! capture of stdout and stderr can be shown to keep a line whole.
//!
//! Each request writes, on stdout, `start a print 1234` as the pieces `start a print `, `1`, `2`,
//! `3`, `4` and the newline, each through a stream of its own (`get-stdout` for every piece, as a
//! guest that opens one per write does), then `std a print 1234` the same way through `print!` and
//! a flush per piece (Rust's standard library keeps one stream); on stderr, `err in pieces` in three pieces. With
//! `?long=N` it writes a line of `N` `x`s, 1000 at a time, then its newline. Last it writes
//! `unfinished` with no newline, which ends when the request ends. It answers `ok`.

use std::io::Write;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Pieces;

/// Writes `piece` through a stdout stream opened for it alone, dropped after the write.
fn stdout_piece(piece: &str) {
    let stream = wasip2::cli::stdout::get_stdout();
    stream
        .blocking_write_and_flush(piece.as_bytes())
        .expect("write to stdout");
}

/// Writes `piece` through a stderr stream opened for it alone.
fn stderr_piece(piece: &str) {
    let stream = wasip2::cli::stderr::get_stderr();
    stream
        .blocking_write_and_flush(piece.as_bytes())
        .expect("write to stderr");
}

impl Guest for Pieces {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request
            .path_with_query()
            .and_then(|p| p.split_once('?').map(|(_, q)| q.to_string()))
            .unwrap_or_default();
        let long: usize = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("long="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);

        for piece in ["start a print ", "1", "2", "3", "4", "\n"] {
            stdout_piece(piece);
        }
        let mut stdout = std::io::stdout();
        for piece in ["std a print ", "1", "2", "3", "4"] {
            print!("{piece}");
            stdout.flush().expect("flush stdout");
        }
        println!();
        for piece in ["err ", "in ", "pieces\n"] {
            stderr_piece(piece);
        }
        if long > 0 {
            let chunk = "x".repeat(1000);
            let mut left = long;
            while left > 0 {
                let n = left.min(chunk.len());
                stdout_piece(&chunk[..n]);
                left -= n;
            }
            stdout_piece("\n");
        }
        stdout_piece("unfinished");

        let headers = Fields::new();
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(b"ok")
            .expect("write the answer");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(Pieces);
