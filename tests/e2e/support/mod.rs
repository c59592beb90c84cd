//! Helpers for the tests: a real `wasmgate` process on a free port ([`Gateway`]), a gateway built in
//! this process and called without a socket ([`InProcess`]), and requests that go to either
//! ([`Target`]).
//!
//! Over 600 lines: the two harnesses (a process, in process) and the servers tests talk to (upstream,
//! callbacks).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Upper bound for waiting on something the gateway will do; reaching it means the test failed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Every guest, loaded under its own name.
pub fn all_guests() -> Vec<String> {
    [
        ("hello", wasmgate_guests::HELLO),
        ("echo", wasmgate_guests::ECHO),
        ("trap", wasmgate_guests::TRAP),
        ("silent", wasmgate_guests::SILENT),
        ("counter", wasmgate_guests::COUNTER),
        ("markdown", wasmgate_guests::MARKDOWN),
        ("spin", wasmgate_guests::SPIN),
        ("memhog", wasmgate_guests::MEMHOG),
        ("bigstream", wasmgate_guests::BIGSTREAM),
        ("outbound", wasmgate_guests::OUTBOUND),
        ("flaky", wasmgate_guests::FLAKY),
        ("pieces", wasmgate_guests::PIECES),
        ("kvcounter", wasmgate_guests::KVCOUNTER),
        ("greeter", wasmgate_guests::GREETER),
        ("pipeline", wasmgate_guests::PIPELINE),
    ]
    .iter()
    .flat_map(|(name, path)| ["--function".to_string(), format!("{name}={path}")])
    .collect()
}

#[derive(Default)]
struct LogBuffer {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running `wasmgate serve`. Killed when dropped.
pub struct Gateway {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    logs: Arc<LogBuffer>,
}

impl Gateway {
    /// Starts `wasmgate serve --listen 127.0.0.1:0` with `args` and waits for its address.
    pub fn start(args: &[String]) -> Gateway {
        Gateway::start_in(None, args)
    }

    /// [`Gateway::start`] in the working directory `dir` (the test's own when `None`), which is
    /// where the gateway reads relative `image` paths from.
    pub fn start_in(dir: Option<&std::path::Path>, args: &[String]) -> Gateway {
        Gateway::start_with_env(dir, args, &[])
    }

    /// [`Gateway::start_in`] with `env` set in the gateway's environment.
    pub fn start_with_env(
        dir: Option<&std::path::Path>,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Gateway {
        Gateway::launch(dir, &[], args, env)
    }

    /// [`Gateway::start`] through `launcher`, a command that ends by running the rest of its
    /// arguments (`unshare ... sh -c '...; exec "$@"'`): the gateway is the launcher's process.
    pub fn start_through(launcher: &[String], args: &[String]) -> Gateway {
        Gateway::launch(None, launcher, args, &[])
    }

    fn launch(
        dir: Option<&std::path::Path>,
        launcher: &[String],
        args: &[String],
        env: &[(&str, &str)],
    ) -> Gateway {
        let state_dir = match args.iter().position(|a| a == "--state-dir") {
            Some(i) => PathBuf::from(&args[i + 1]),
            None => temp_dir("state"),
        };
        let binary = env!("CARGO_BIN_EXE_wasmgate");
        let mut command = match launcher.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        if !args.iter().any(|a| a == "--state-dir") {
            command.arg("--state-dir").arg(&state_dir);
        }
        if !args.iter().any(|a| a == "--cache-dir") {
            command.arg("--cache-dir").arg(shared_cache_dir());
        }
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        // A developer's own collector settings must not turn tracing on in every test.
        for name in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_TRACES_SAMPLER",
            "OTEL_SDK_DISABLED",
        ] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut child = command
            .env("WASMGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wasmgate");

        let logs = Arc::new(LogBuffer::default());
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lines.lock().expect("log lock").push(line);
                sink.grew.notify_all();
            }
        });

        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("read stdout");
        let announced = first.trim().strip_prefix("wasmgate listening on ");
        let Some(addr) = announced.and_then(|a| {
            a.strip_prefix("http://")
                .or_else(|| a.strip_prefix("https://"))
        }) else {
            let _ = child.wait();
            // Give the reader thread a moment to collect the last lines of stderr.
            let text = wait_for_eof(&logs);
            panic!("wasmgate did not start; stdout: {first:?}\nstderr:\n{text}");
        };
        let addr = addr.parse().expect("a socket address");
        Gateway { child, addr, logs }
    }

    /// Starts a gateway serving every guest.
    pub fn with_all_guests() -> Gateway {
        Gateway::start(&all_guests())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        self.logs.lines.lock().expect("log lock").join("\n")
    }

    /// Waits until a logged line contains every one of `needles`, and returns it.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let mut lines = self.logs.lines.lock().expect("log lock");
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(line) = lines.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no log line with {needles:?}; logs:\n{}",
                lines.join("\n")
            );
            lines = self
                .logs
                .grew
                .wait_timeout(lines, left)
                .expect("log lock")
                .0;
        }
    }

    /// CPU time the process has used so far (user and system), from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/<pid>/stat");
        // Fields after the command name (which is in parentheses and may hold spaces).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // The kernel reports clock ticks of 1/100 s on Linux (USER_HZ).
        Duration::from_millis(ticks * 10)
    }

    /// Resident memory of the process, in bytes, from `/proc/<pid>/status`.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// Sends a signal (`TERM`, `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("wait for wasmgate")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_eof(logs: &LogBuffer) -> String {
    let lines = logs.lines.lock().expect("log lock");
    let (lines, _) = logs
        .grew
        .wait_timeout(lines, Duration::from_millis(500))
        .expect("log lock");
    lines.join("\n")
}

/// Runs `wasmgate` with `args` to completion and returns its status and stderr.
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .env("WASMGATE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run wasmgate");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The compiled-code cache every gateway of this test run shares unless a test gives its own
/// `--cache-dir`: each guest is compiled once per run, not once per gateway (about a second of
/// Cranelift for all of them, on every start).
pub fn shared_cache_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| temp_dir("code-cache"))
}

/// A fresh, empty directory for one test.
pub fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wasmgate-test-{}-{label}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// What a test sends requests to: a [`Gateway`] process over a socket, or an [`InProcess`] app.
pub trait Target {
    /// The `Host` a client would send.
    fn host(&self) -> String;

    /// Sends one request and reads the whole answer.
    fn send<B>(&self, request: http::Request<B>) -> impl std::future::Future<Output = Answer>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>;
}

impl Target for Gateway {
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn send<B>(&self, request: http::Request<B>) -> impl std::future::Future<Output = Answer>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        send(self.addr, request)
    }
}

/// A gateway built in this process from `serve`'s arguments ([`wasmgate_gateway::App::build`]) and
/// called without a socket ([`wasmgate_gateway::App::handle`]): for tests of routes and the API,
/// which need no process, signal or connection of their own.
pub struct InProcess {
    app: wasmgate_gateway::App,
    /// Its state directory (a fresh one unless the test gave `--state-dir`).
    pub state_dir: PathBuf,
}

impl InProcess {
    /// Builds the gateway `wasmgate serve` would run with `args` (and a fresh state directory).
    pub async fn start(args: &[String]) -> InProcess {
        use clap::Parser;
        let state_dir = match args.iter().position(|a| a == "--state-dir") {
            Some(i) => PathBuf::from(&args[i + 1]),
            None => temp_dir("state"),
        };
        let mut words: Vec<String> = ["wasmgate", "serve", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        words.extend(args.iter().cloned());
        if !args.iter().any(|a| a == "--state-dir") {
            words.push("--state-dir".to_string());
            words.push(state_dir.display().to_string());
        }
        if !args.iter().any(|a| a == "--cache-dir") {
            words.push("--cache-dir".to_string());
            words.push(shared_cache_dir().display().to_string());
        }
        let cli = wasmgate::cli::Cli::try_parse_from(&words).expect("valid arguments");
        let wasmgate::cli::Command::Serve(serve) = cli.command else {
            panic!("serve parses as serve");
        };
        let config = serve.into_config().expect("a valid configuration");
        let app = wasmgate_gateway::App::build(config)
            .await
            .expect("the gateway starts");
        InProcess { app, state_dir }
    }

    /// A gateway serving every guest.
    pub async fn with_all_guests() -> InProcess {
        InProcess::start(&all_guests()).await
    }
}

impl Target for InProcess {
    fn host(&self) -> String {
        "127.0.0.1:8080".to_string()
    }

    async fn send<B>(&self, request: http::Request<B>) -> Answer
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let response = self.app.handle(request).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the whole body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// A response with its whole body.
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("visible ASCII")
    }
}

/// Opens a connection to `addr` and returns a request sender on it.
pub async fn connect<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    sender
}

/// Sends one request on a new connection and reads the whole answer.
pub async fn send<B>(addr: SocketAddr, request: http::Request<B>) -> Answer
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut sender = connect(addr).await;
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the whole body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A request with an empty or full body, with `Host` set as a client would.
pub fn request(
    method: &str,
    gateway: &impl Target,
    path: &str,
    body: impl Into<Bytes>,
) -> http::Request<http_body_util::Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, gateway.host())
        .body(http_body_util::Full::new(body.into()))
        .expect("valid request")
}

/// GET `path`.
pub async fn get(gateway: &impl Target, path: &str) -> Answer {
    gateway
        .send(request("GET", gateway, path, Bytes::new()))
        .await
}

/// A `/system/*` call with an optional JSON body and optional basic credentials.
pub async fn api(
    gateway: &impl Target,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    gateway.send(request(method, gateway, path, body)).await
}

/// Deploys `image` as `name` with PUT then POST, as faas-cli does; panics unless accepted.
pub async fn deploy(gateway: &impl Target, name: &str, image: &str, extra: serde_json::Value) {
    let mut body =
        serde_json::json!({"service": name, "image": image, "labels": {}, "annotations": {}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let put = api(gateway, "PUT", "/system/functions", Some(body.clone())).await;
    let answer = if put.status == 404 {
        api(gateway, "POST", "/system/functions", Some(body)).await
    } else {
        put
    };
    assert_eq!(answer.status, 202, "deploying {name}: {}", answer.text());
}

/// Uploads a component and returns its digest.
pub async fn upload(gateway: &impl Target, wasm: Vec<u8>) -> String {
    let answer = gateway
        .send(request("POST", gateway, "/system/artifacts", wasm))
        .await;
    assert_eq!(answer.status, 201, "upload: {}", answer.text());
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    json["digest"].as_str().expect("a digest").to_string()
}

/// Waits (bounded by [`PATIENCE`]) until `check` holds, polling the gateway.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` or with an offset.
pub fn is_rfc3339(text: &str) -> bool {
    wasmgate_openfaas::time::parse_rfc3339(text).is_some()
}

/// Formats a time as RFC 3339.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    wasmgate_openfaas::time::format_rfc3339(time, false)
}

/// Keeps `hello` busy from the side while something hostile runs: `connections` loops that each send
/// requests one after another until [`Background::finish`]. Every answer must be 200.
pub struct Background {
    stop: Arc<std::sync::atomic::AtomicBool>,
    served: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

impl Background {
    pub fn hello(gateway: &Gateway, connections: usize) -> Background {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks = (0..connections)
            .map(|_| {
                let stop = stop.clone();
                let served = served.clone();
                let addr = gateway.addr;
                tokio::spawn(async move {
                    let (mut ok, mut failures) = (0u64, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let request = http::Request::get("/function/hello/side")
                            .header(http::header::HOST, addr.to_string())
                            .body(http_body_util::Full::new(Bytes::new()))
                            .expect("request");
                        let answer = send(addr, request).await;
                        if answer.status == 200 {
                            ok += 1;
                            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        } else {
                            failures.push(format!("{}: {}", answer.status, answer.text()));
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Background {
            stop,
            served,
            tasks,
        }
    }

    /// Requests answered 200 so far.
    pub fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the loops and asserts that every request succeeded; returns how many did.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for task in self.tasks {
            let (ok, failures) = task.await.expect("background task");
            assert!(
                failures.is_empty(),
                "hello failed on the side: {failures:?}"
            );
            total += ok;
        }
        assert!(total > 0, "no hello request completed on the side");
        total
    }
}

/// A plain HTTP server on 127.0.0.1 for functions to call: answers `upstream says hi` after `delay`,
/// and counts connections, requests and the most requests in flight at once.
pub struct Upstream {
    pub addr: SocketAddr,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    pub peak: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub async fn start(delay: Duration) -> Upstream {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (c, r, p) = (connections.clone(), requests.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, p, now) = (r.clone(), p.clone(), now.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let (r, p, now) = (r.clone(), p.clone(), now.clone());
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                            p.fetch_max(current, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            now.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(Bytes::from_static(b"upstream says hi")),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            connections,
            requests,
            peak,
        }
    }
}

/// One callback a [`Callbacks`] server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An HTTP server on 127.0.0.1 that receives async callbacks: it keeps each one, and answers 500 to
/// the first `fail_first` of them (to test callback retries), 200 after.
pub struct Callbacks {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    grew: Arc<tokio::sync::Notify>,
    fail_first: Arc<std::sync::atomic::AtomicUsize>,
}

impl Callbacks {
    pub async fn start() -> Callbacks {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let grew = Arc::new(tokio::sync::Notify::new());
        let fail_first = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, g, f) = (received.clone(), grew.clone(), fail_first.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, g, f) = (r.clone(), g.clone(), f.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let (r, g, f) = (r.clone(), g.clone(), f.clone());
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await.map(|b| b.to_bytes());
                                let fail = f
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                                let status = if fail { 500 } else { 200 };
                                if let (false, Ok(body)) = (fail, body) {
                                    r.lock().expect("lock").push(Received {
                                        headers: parts.headers,
                                        body,
                                    });
                                    g.notify_waiters();
                                }
                                let mut response = hyper::Response::new(http_body_util::Full::new(
                                    Bytes::from_static(b"thanks"),
                                ));
                                *response.status_mut() =
                                    http::StatusCode::from_u16(status).expect("status");
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Callbacks {
            addr,
            received,
            grew,
            fail_first,
        }
    }

    /// The URL to give as `X-Callback-Url`.
    pub fn url(&self) -> String {
        format!("http://{}/done", self.addr)
    }

    /// Answers 500 to the next `n` callbacks (they are not kept).
    pub fn fail_next(&self, n: usize) {
        self.fail_first.store(n, Ordering::SeqCst);
    }

    /// Every callback kept so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` callbacks were kept (failing the test past [`PATIENCE`]).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        loop {
            let grew = self.grew.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                tokio::time::timeout_at(deadline, grew).await.is_ok() || self.received().len() >= n,
                "only {} of {n} callbacks arrived",
                self.received().len()
            );
        }
    }
}
