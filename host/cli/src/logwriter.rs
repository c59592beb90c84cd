//! Where the gateway's log lines go: standard error, written in batches.
//!
//! Every request to a function that prints a line produces a log line here. Writing each one to
//! standard error on its own costs a system call per request and makes the worker threads queue on the
//! stderr lock; measured with `benches/load.sh`, that was about a sixth of the gateway's throughput for
//! `hello`. So lines at `INFO` and below are gathered in a buffer and written together: when the
//! buffer passes [`FLUSH_AT`], every [`FLUSH_EVERY`] from a small thread, and when the process ends.
//! Lines at `WARN` and `ERROR` are written at once, after whatever is buffered, so order is kept and
//! problems never wait.
//!
//! What can be lost: on `kill -9` or a power cut, the last [`FLUSH_EVERY`] of informational lines.
//! Guest output is also kept in each function's log ring (`/system/logs`).

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Buffered bytes past which the buffer is written out by the line that crossed it.
pub const FLUSH_AT: usize = 32 * 1024;
/// The longest a buffered line waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A [`MakeWriter`] for `tracing_subscriber::fmt` that batches writes to standard error.
#[derive(Clone, Debug)]
pub struct BatchedStderr {
    buffer: Arc<Mutex<Vec<u8>>>,
    /// Where the bytes finally go: standard error, or a test's sink.
    sink: fn(&[u8]),
}

fn to_stderr(bytes: &[u8]) {
    let mut stderr = std::io::stderr().lock();
    // Nowhere to report a failure to write the log; the bytes are dropped rather than kept growing.
    let _ = stderr.write_all(bytes);
    let _ = stderr.flush();
}

impl BatchedStderr {
    /// The writer, and a thread that writes the buffer out every [`FLUSH_EVERY`] for the life of the
    /// process.
    pub fn start() -> Self {
        let writer = BatchedStderr {
            buffer: Arc::new(Mutex::new(Vec::with_capacity(FLUSH_AT * 2))),
            sink: to_stderr,
        };
        let flusher = writer.clone();
        let started = std::thread::Builder::new()
            .name("wasmgate-log".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flusher.flush();
                }
            });
        if started.is_err() {
            // Without the thread, lines still go out when the buffer fills and at exit; say so.
            eprintln!("wasmgate: could not start the log flusher thread; log lines may be delayed");
        }
        writer
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes out what is buffered. Call before the process exits.
    pub fn flush(&self) {
        write_out(&mut self.lock(), self.sink);
    }
}

fn write_out(buffer: &mut Vec<u8>, sink: fn(&[u8])) {
    if !buffer.is_empty() {
        sink(buffer);
        buffer.clear();
    }
}

/// One log line on its way: appended to the buffer, written out when the line ends if it must be.
#[derive(Debug)]
pub struct LineWriter<'a> {
    buffer: MutexGuard<'a, Vec<u8>>,
    sink: fn(&[u8]),
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.urgent || self.buffer.len() >= FLUSH_AT {
            write_out(&mut self.buffer, self.sink);
        }
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            buffer: self.lock(),
            sink: self.sink,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            buffer: self.lock(),
            sink: self.sink,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static WRITTEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn to_test_sink(bytes: &[u8]) {
        WRITTEN.lock().expect("sink").extend_from_slice(bytes);
    }

    fn written() -> Vec<u8> {
        WRITTEN.lock().expect("sink").clone()
    }

    fn line(writer: &BatchedStderr, level: Level, text: &[u8]) {
        let mut line = LineWriter {
            buffer: writer.lock(),
            sink: writer.sink,
            urgent: level <= Level::WARN,
        };
        line.write_all(text).expect("write");
    }

    #[test]
    fn info_waits_for_the_threshold_and_warnings_go_out_at_once_in_order() {
        let writer = BatchedStderr {
            buffer: Arc::new(Mutex::new(Vec::new())),
            sink: to_test_sink,
        };
        line(&writer, Level::INFO, b"first\n");
        assert!(written().is_empty(), "an informational line waits");
        line(&writer, Level::WARN, b"warning\n");
        assert_eq!(written(), b"first\nwarning\n", "written at once, in order");
        assert!(writer.lock().is_empty());

        let big = vec![b'x'; FLUSH_AT];
        line(&writer, Level::DEBUG, &big);
        assert_eq!(
            written().len(),
            14 + FLUSH_AT,
            "a full buffer is written out"
        );

        line(&writer, Level::INFO, b"last\n");
        writer.flush();
        assert!(written().ends_with(b"xlast\n"), "flush writes out the rest");
        assert!(writer.lock().is_empty());
    }
}
