//! Guest output, captured line by line and kept per function.
//!
//! Each function owns a [`FunctionLogs`]: a bounded ring of its most recent lines plus a broadcast
//! channel for followers. A request's `stdout` and `stderr` are each one [`PendingLine`] that every
//! output stream the guest opens writes into: it assembles what the guest writes into whole lines
//! (a line written in pieces, through several streams, is one line), cuts a line at
//! [`MAX_LINE_BYTES`], and ends an unfinished one when the request ends, so nothing a guest prints
//! can grow without bound in the host.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::broadcast;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How many lines each function keeps for readers that arrive later.
pub const DEFAULT_LOG_LINES_KEPT: usize = 1000;
/// Longest line kept; a longer line is cut into pieces of this size.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// How many lines a slow follower may fall behind before it misses some.
const FOLLOW_BUFFER: usize = 256;
/// What `check-write` grants the guest each time: output is consumed at once, so this only bounds
/// the size of a single write.
const WRITE_PERMIT: usize = 64 * 1024;

/// Which of the guest's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The guest's `wasi:cli/stdout`.
    Stdout,
    /// The guest's `wasi:cli/stderr`.
    Stderr,
    /// A `wasi:logging` call; the text starts with the level (and the context, when there is one).
    Logging,
}

/// The level of a `wasi:logging` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The flow of a program, in detail.
    Trace,
    /// For someone debugging it.
    Debug,
    /// For someone monitoring it.
    Info,
    /// Hazardous situations.
    Warn,
    /// Serious errors.
    Error,
    /// Fatal errors.
    Critical,
}

impl Level {
    /// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` or `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

impl LogStream {
    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Logging => "logging",
        }
    }
}

/// One line a function wrote, without its line ending.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The function that wrote it.
    pub function: Arc<str>,
    /// When the host received the line.
    pub timestamp: SystemTime,
    /// The stream it was written to.
    pub stream: LogStream,
    /// The text, with invalid UTF-8 replaced.
    pub text: String,
    /// The trace of the request that wrote it, when that request was traced (32 hex digits).
    pub trace_id: Option<Arc<str>>,
}

/// The recent output of one function and a channel to follow it.
#[derive(Debug)]
pub struct FunctionLogs {
    function: Arc<str>,
    capacity: usize,
    recent: Mutex<VecDeque<LogLine>>,
    follow: broadcast::Sender<LogLine>,
}

impl FunctionLogs {
    /// Logs for `function` keeping at most `capacity` lines.
    pub fn new(function: &str, capacity: usize) -> Self {
        FunctionLogs {
            function: function.into(),
            capacity,
            recent: Mutex::new(VecDeque::with_capacity(capacity.min(64))),
            follow: broadcast::channel(FOLLOW_BUFFER).0,
        }
    }

    /// The lines kept, oldest first.
    pub fn recent(&self) -> Vec<LogLine> {
        self.lock().iter().cloned().collect()
    }

    /// A receiver of every line written from now on.
    pub fn follow(&self) -> broadcast::Receiver<LogLine> {
        self.follow.subscribe()
    }

    /// A `wasi:logging` line: `LEVEL context: message` (or `LEVEL message` without a context), kept
    /// like output and sent to `tracing` at the matching level. A message with several lines becomes
    /// several log lines.
    pub(crate) fn log(
        &self,
        level: Level,
        context: &str,
        message: &str,
        trace_id: Option<&Arc<str>>,
    ) {
        for text in message.lines() {
            let line = if context.is_empty() {
                format!("{} {text}", level.as_str())
            } else {
                format!("{} {context}: {text}", level.as_str())
            };
            let function = &self.function;
            let trace_id = trace_id.map(|id| &**id);
            match level {
                Level::Trace => {
                    tracing::trace!(target: "wasmgate::guest", trace_id, "{function}: {line}");
                }
                Level::Debug => {
                    tracing::debug!(target: "wasmgate::guest", trace_id, "{function}: {line}");
                }
                Level::Info => {
                    tracing::info!(target: "wasmgate::guest", trace_id, "{function}: {line}");
                }
                Level::Warn => {
                    tracing::warn!(target: "wasmgate::guest", trace_id, "{function}: {line}");
                }
                Level::Error | Level::Critical => {
                    tracing::error!(target: "wasmgate::guest", trace_id, "{function}: {line}");
                }
            }
            self.keep(LogLine {
                function: self.function.clone(),
                timestamp: SystemTime::now(),
                stream: LogStream::Logging,
                text: line,
                trace_id: trace_id.map(Arc::from),
            });
        }
    }

    fn push(&self, stream: LogStream, bytes: &[u8], trace_id: Option<&Arc<str>>) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = LogLine {
            function: self.function.clone(),
            timestamp: SystemTime::now(),
            stream,
            text: String::from_utf8_lossy(bytes).into_owned(),
            trace_id: trace_id.cloned(),
        };
        tracing::info!(
            target: "wasmgate::guest",
            stream = stream.as_str(),
            trace_id = trace_id.map(|id| &**id),
            "{}: {}",
            self.function,
            line.text
        );
        self.keep(line);
    }

    /// Keeps a line in the ring and sends it to followers.
    fn keep(&self, line: LogLine) {
        {
            let mut recent = self.lock();
            if recent.len() == self.capacity {
                recent.pop_front();
            }
            if self.capacity > 0 {
                recent.push_back(line.clone());
            }
        }
        // No followers is not an error.
        let _ = self.follow.send(line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LogLine>> {
        // A panic while holding this lock cannot leave the deque inconsistent, so poisoning is ignored.
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A [`StdoutStream`] that feeds a function's logs: one per request and stream, made with the
/// request's store. Every output stream the guest opens on it shares one [`PendingLine`].
#[derive(Debug, Clone)]
pub(crate) struct GuestOutputFactory {
    line: Arc<PendingLine>,
}

impl GuestOutputFactory {
    /// `trace_id`: the trace of the request the lines belong to, if it is traced.
    pub(crate) fn new(
        logs: Arc<FunctionLogs>,
        stream: LogStream,
        trace_id: Option<Arc<str>>,
    ) -> Self {
        GuestOutputFactory {
            line: Arc::new(PendingLine {
                logs,
                stream,
                partial: Mutex::new(Partial {
                    bytes: Vec::new(),
                    trace_id,
                }),
            }),
        }
    }

    /// The lines from now on belong to the request of `trace_id` (a kept instance serves a new
    /// request).
    pub(crate) fn set_trace_id(&self, trace_id: Option<Arc<str>>) {
        self.line.lock().trace_id = trace_id;
    }

    /// Ends the line the guest left unfinished, if any: called when its request ends.
    pub(crate) fn flush(&self) {
        self.line.flush();
    }

    fn writer(&self) -> GuestOutput {
        GuestOutput {
            line: self.line.clone(),
        }
    }
}

impl IsTerminal for GuestOutputFactory {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutputFactory {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    // Implemented directly rather than through the default adapter, which spawns a task per stream.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

/// The line a guest is writing on one of its streams, assembled across writes and across output
/// streams: WASI hands out a new stream for every `get-stdout`, and a guest that takes one per
/// piece it writes (directly, or through its toolchain's library) sends one line through several. A line is
/// kept until its `\n`; one longer than [`MAX_LINE_BYTES`] is cut at that length; what is left
/// unfinished is a line of its own when the request ends ([`GuestOutputFactory::flush`]) or, at the
/// latest, when the store that holds the streams is dropped.
#[derive(Debug)]
struct PendingLine {
    logs: Arc<FunctionLogs>,
    stream: LogStream,
    partial: Mutex<Partial>,
}

/// The unfinished line and the trace it belongs to.
#[derive(Debug)]
struct Partial {
    /// Never longer than [`MAX_LINE_BYTES`] between calls.
    bytes: Vec<u8>,
    trace_id: Option<Arc<str>>,
}

impl PendingLine {
    fn accept(&self, mut bytes: &[u8]) {
        let mut guard = self.lock();
        let Partial {
            bytes: partial,
            trace_id,
        } = &mut *guard;
        let trace_id = trace_id.as_ref();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(end);
            if partial.is_empty() {
                self.emit(line, trace_id);
            } else {
                partial.extend_from_slice(line);
                let whole = std::mem::take(partial);
                self.emit(&whole, trace_id);
            }
            bytes = &rest[1..];
        }
        partial.extend_from_slice(bytes);
        while partial.len() >= MAX_LINE_BYTES {
            let rest = partial.split_off(MAX_LINE_BYTES);
            let full = std::mem::replace(partial, rest);
            self.emit(&full, trace_id);
        }
    }

    fn flush(&self) {
        let mut guard = self.lock();
        if !guard.bytes.is_empty() {
            let unfinished = std::mem::take(&mut guard.bytes);
            self.emit(&unfinished, guard.trace_id.as_ref());
        }
    }

    fn emit(&self, line: &[u8], trace_id: Option<&Arc<str>>) {
        for piece in line.chunks(MAX_LINE_BYTES) {
            self.logs.push(self.stream, piece, trace_id);
        }
        if line.is_empty() {
            self.logs.push(self.stream, line, trace_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Partial> {
        // A panic while holding this lock leaves at worst a partial line; poisoning is ignored.
        self.partial
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for PendingLine {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One output stream the guest opened; what it writes goes to the request's [`PendingLine`].
#[derive(Debug)]
struct GuestOutput {
    line: Arc<PendingLine>,
}

impl GuestOutput {
    fn accept(&mut self, bytes: &[u8]) {
        self.line.accept(bytes);
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(logs: &FunctionLogs) -> Vec<String> {
        logs.recent().into_iter().map(|line| line.text).collect()
    }

    #[test]
    fn splits_lines_across_writes() {
        let logs = Arc::new(FunctionLogs::new("f", 10));
        let factory = GuestOutputFactory::new(logs.clone(), LogStream::Stdout, None);
        let mut out = factory.writer();
        out.accept(b"one\ntw");
        out.accept(b"o\r\nthree\n\nfour");
        assert_eq!(texts(&logs), ["one", "two", "three", ""]);
        drop(out);
        factory.flush();
        assert_eq!(texts(&logs), ["one", "two", "three", "", "four"]);
    }

    #[test]
    fn a_line_written_through_several_streams_is_one_line() {
        let logs = Arc::new(FunctionLogs::new("f", 10));
        let factory = GuestOutputFactory::new(logs.clone(), LogStream::Stdout, None);
        // What `print!("start "); print!("1"); print!("2"); println!()` can look like to the host:
        // a stream per write, each dropped before the next is opened.
        for piece in ["start ", "1", "2", "\n", "next"] {
            factory.writer().accept(piece.as_bytes());
        }
        assert_eq!(texts(&logs), ["start 12"]);
        factory.flush();
        assert_eq!(texts(&logs), ["start 12", "next"]);
        factory.flush();
        assert_eq!(texts(&logs), ["start 12", "next"], "flushed once");
    }

    #[test]
    fn an_unfinished_line_is_kept_until_the_store_goes() {
        let logs = Arc::new(FunctionLogs::new("f", 10));
        let factory = GuestOutputFactory::new(logs.clone(), LogStream::Stderr, None);
        let mut out = factory.writer();
        out.accept(b"half");
        drop(out);
        assert!(texts(&logs).is_empty(), "a dropped stream ends no line");
        drop(factory);
        assert_eq!(texts(&logs), ["half"]);
    }

    #[test]
    fn keeps_only_the_newest_lines() {
        let logs = Arc::new(FunctionLogs::new("f", 2));
        let mut out = GuestOutputFactory::new(logs.clone(), LogStream::Stderr, None).writer();
        out.accept(b"a\nb\nc\n");
        assert_eq!(texts(&logs), ["b", "c"]);
        assert!(
            logs.recent()
                .iter()
                .all(|l| l.stream == LogStream::Stderr && &*l.function == "f")
        );
    }

    #[test]
    fn cuts_endless_lines() {
        let logs = Arc::new(FunctionLogs::new("f", 10));
        let mut out = GuestOutputFactory::new(logs.clone(), LogStream::Stdout, None).writer();
        out.accept(&vec![b'x'; MAX_LINE_BYTES * 2 + 5]);
        let lens: Vec<usize> = logs.recent().iter().map(|l| l.text.len()).collect();
        assert_eq!(lens, [MAX_LINE_BYTES, MAX_LINE_BYTES]);
        drop(out);
        assert_eq!(logs.recent().last().map(|l| l.text.len()), Some(5));
    }

    #[test]
    fn followers_see_new_lines() {
        let logs = Arc::new(FunctionLogs::new("f", 10));
        let mut follower = logs.follow();
        GuestOutputFactory::new(logs.clone(), LogStream::Stdout, None)
            .writer()
            .accept(b"hi\n");
        assert_eq!(
            follower.try_recv().map(|l| l.text).ok().as_deref(),
            Some("hi")
        );
    }
}
