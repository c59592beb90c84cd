//! The edge of the gateway from outside: HTTPS with a certificate that changes under a running
//! process, HTTP/2 over TLS (ALPN) and as h2c with trailers both ways, a real gRPC client
//! (Python's `grpcio`) calling a function, and the refusals at start (`--require-tls`, a bad
//! certificate). Certificates are made here with `rcgen`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::support::{Gateway, run_to_exit, temp_dir};

/// The Python package the gRPC test calls the gateway with, and where `.ci/test` installs it.
const GRPCIO_INSTALL: &str = "pip install grpcio==1.85.3 (into ~/.cache/wasmgate/tools/venv, as \
                              .ci/test does, with that venv's bin/ on PATH)";

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM (certificate, key) and DER.
struct Cert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn make_cert() -> Cert {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("make a certificate");
    Cert {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// Writes `cert` as `dir/tls.crt` and `dir/tls.key`, each replaced whole (write, then rename), as
/// a careful operator or Kubernetes would.
fn install(dir: &Path, cert: &Cert) -> (PathBuf, PathBuf) {
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    for (path, text) in [(&key_path, &cert.key_pem), (&cert_path, &cert.cert_pem)] {
        let fresh = path.with_extension("new");
        std::fs::write(&fresh, text).expect("write a certificate file");
        std::fs::rename(&fresh, path).expect("rename it into place");
    }
    (cert_path, key_path)
}

fn tls_args(cert: &Path, key: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--tls-cert".to_string(),
        cert.display().to_string(),
        "--tls-key".to_string(),
        key.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// A TLS connection to `addr` that trusts `trusted`, offering `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    trusted: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).expect("a usable root");
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("TLS handshake")
}

/// The leaf certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .clone()
}

/// `GET /healthz` over HTTP/1.1 on an established stream.
async fn healthz_http1<S>(stream: S) -> http::StatusCode
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("/healthz")
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    sender
        .send_request(request)
        .await
        .expect("an answer")
        .status()
}

/// A changed certificate is served to new connections without a restart; a bad replacement keeps
/// the old one and says why in the log.
#[tokio::test]
pub async fn tls_certificate_reload() {
    let dir = temp_dir("tls-reload");
    let (first, second) = (make_cert(), make_cert());
    let (cert, key) = install(&dir, &first);
    let gateway = Gateway::start(&tls_args(&cert, &key, &["--tls-reload-interval", "50ms"]));
    let trusted = [&first.der, &second.der];

    let stream = tls_connect(gateway.addr, &trusted, &[b"http/1.1"]).await;
    assert_eq!(presented(&stream), first.der);
    assert_eq!(healthz_http1(stream).await, 200);

    // Not a certificate: logged, and the first one is still served.
    std::fs::write(&cert, "not a certificate\n").expect("write");
    let line = gateway.wait_for_log(&["keeping the current TLS certificate"]);
    assert!(line.contains("tls.crt"), "the log names the file: {line}");
    let stream = tls_connect(gateway.addr, &trusted, &[b"http/1.1"]).await;
    assert_eq!(presented(&stream), first.der);

    // The second certificate with the first one's key: not a pair, still the first one.
    let mismatched = Cert {
        cert_pem: second.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
        der: second.der.clone(),
    };
    install(&dir, &mismatched);
    gateway.wait_for_log(&["is not the key of the certificate"]);
    let stream = tls_connect(gateway.addr, &trusted, &[b"http/1.1"]).await;
    assert_eq!(presented(&stream), first.der);

    install(&dir, &second);
    gateway.wait_for_log(&["TLS certificate reloaded"]);
    let stream = tls_connect(gateway.addr, &trusted, &[b"http/1.1"]).await;
    assert_eq!(presented(&stream), second.der);
    assert_eq!(healthz_http1(stream).await, 200);
}

/// Sends `/function/p3-trailers` a body with a trailer over HTTP/2 on `stream`, and checks the
/// response's trailers.
async fn trailers_over_http2<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    let frames = vec![
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"1234567"))),
        Ok(Frame::trailers(trailers)),
    ];
    let request = http::Request::post("http://localhost/function/p3-trailers")
        .version(http::Version::HTTP_2)
        .body(StreamBody::new(futures::stream::iter(frames)))
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.expect("whole body");
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(&collected.to_bytes()[..], b"7 bytes\n");
    assert_eq!(trailers["x-request-bytes"], "7");
    assert_eq!(trailers["x-echo-x-checksum"], "abc");
}

/// HTTP/2 with trailers both ways: over TLS (ALPN `h2`) and as h2c with prior knowledge.
#[tokio::test]
pub async fn http2_trailers_over_tls_and_h2c() {
    let dir = temp_dir("h2");
    let made = make_cert();
    let (cert, key) = install(&dir, &made);
    let function = format!("p3-trailers={}", wasmgate_guests::P3_TRAILERS);
    let tls = Gateway::start(&tls_args(&cert, &key, &["--function", &function]));
    let stream = tls_connect(tls.addr, &[&made.der], &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    trailers_over_http2(stream).await;

    let plain = Gateway::start(&["--function".to_string(), function]);
    trailers_over_http2(TcpStream::connect(plain.addr).await.expect("connect")).await;
}

/// Behind `--tls-cert`, a Spin app is told its client asked for an `https://` URL
/// (`spin-full-url`); over plain HTTP it says `http://` (`spin.rs`).
#[tokio::test]
pub async fn spin_full_url_says_https_under_tls() {
    let dir = temp_dir("spin-tls");
    let made = make_cert();
    let (cert, key) = install(&dir, &made);
    let manifest = format!(
        "spin_manifest_version = 2\n[application]\nname = \"tlsapp\"\n[[trigger.http]]\n\
         route = \"/...\"\ncomponent = \"front\"\n[component.front]\nsource = \"{}\"\n",
        wasmgate_guests::SPIN5_FRONT
    );
    let file = dir.join("spin.toml");
    std::fs::write(&file, manifest).expect("write spin.toml");
    let gateway = Gateway::start(&tls_args(&cert, &key, &["-f", &file.display().to_string()]));
    let stream = tls_connect(gateway.addr, &[&made.der], &[b"http/1.1"]).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("/function/tlsapp/x?y=1")
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let answer = sender.send_request(request).await.expect("an answer");
    assert_eq!(answer.status(), 200);
    let body = answer
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.lines()
            .any(|l| l == "spin-full-url: https://localhost/function/tlsapp/x?y=1"),
        "{text}"
    );
}

/// HTTP/2 keeps the header limits: too many fields is 431, as over HTTP/1.1.
#[tokio::test]
pub async fn http2_header_limits() {
    let gateway = Gateway::start(&["--max-headers".to_string(), "20".to_string()]);
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut request = http::Request::get("http://localhost/healthz");
    for i in 0..30 {
        request = request.header(format!("x-field-{i}"), "v");
    }
    let request = request.body(Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 431);
    let request = http::Request::get("http://localhost/healthz")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 200, "the connection still serves");
}

/// `wasmgate_instances_in_use`, as `/metrics` says.
async fn instances_in_use(gateway: &Gateway) -> i64 {
    crate::support::get(gateway, "/metrics")
        .await
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("wasmgate_instances_in_use "))
        .and_then(|n| n.parse().ok())
        .expect("wasmgate_instances_in_use in /metrics")
}

/// `--max-concurrent-streams` bounds the requests one HTTP/2 connection runs at once: of three sent
/// together on a connection that allows two, two run and the third waits for one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn http2_streams_are_bounded_per_connection() {
    let gateway = Gateway::start(&[
        "--max-concurrent-streams".to_string(),
        "2".to_string(),
        "--function".to_string(),
        format!("flaky={}", wasmgate_guests::FLAKY),
    ]);
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    // One answer first: the server's SETTINGS (its preface) have arrived by then, so the client
    // knows the bound before it opens the three streams. (Sent earlier, a stream over the bound is
    // refused with REFUSED_STREAM, which is the server keeping the bound too.)
    let mut first = sender.clone();
    let request = http::Request::get("http://localhost/healthz")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let answer = first.send_request(request).await.expect("an answer");
    assert_eq!(answer.status(), 200);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut sender = sender.clone();
            tokio::spawn(async move {
                let request = http::Request::get("http://localhost/function/flaky?sleep_ms=3000")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let response = sender.send_request(request).await.expect("an answer");
                let status = response.status();
                let _ = response.into_body().collect().await;
                status
            })
        })
        .collect();
    crate::support::eventually("two of the calls to run", || async {
        instances_in_use(&gateway).await == 2
    })
    .await;
    // The third is held by the client, as the server's SETTINGS told it; the server runs two.
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(instances_in_use(&gateway).await, 2);
    }
    for call in calls {
        assert_eq!(call.await.expect("a call"), 200);
    }
}

/// A kept-alive HTTP/1.1 connection with no request in flight is closed after
/// `--header-read-timeout`, so idle clients cannot hold connections for ever.
#[tokio::test]
pub async fn an_idle_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = Gateway::start(&["--header-read-timeout".to_string(), "1s".to_string()]);
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 256];
    let n = stream.read(&mut answer).await.expect("read the answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    // Idle now: the server closes it (a read sees the end) well within the test's patience.
    let closed = tokio::time::timeout(crate::support::PATIENCE, async {
        loop {
            match stream.read(&mut answer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection stayed open");
}

/// The gRPC client of `tests/e2e/gateway/grpc_client.py`: it calls `/function/p3-grpc/...`.
fn grpc_client(args: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/gateway/grpc_client.py"
    );
    let probe = Command::new("python3")
        .args(["-c", "import grpc"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import grpc ({}); install it with: {GRPCIO_INSTALL}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(error) => panic!("python3 is missing ({error}); then: {GRPCIO_INSTALL}"),
    }
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the gRPC client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the gRPC client failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A real gRPC client (grpcio) calls a function through the gateway, over h2c and over TLS: the
/// function sees `/<package.Service>/<Method>`, the reply and its status come back in trailers.
#[tokio::test]
pub async fn p3_grpc() {
    let dir = temp_dir("grpc");
    let made = make_cert();
    let (cert, key) = install(&dir, &made);
    let function = format!("p3-grpc={}", wasmgate_guests::P3_GRPC);
    let plain = Gateway::start(&["--function".to_string(), function.clone()]);
    let tls = Gateway::start(&tls_args(&cert, &key, &["--function", &function]));
    let expected = "echo 0a0568656c6c6f\n\
                    path /wasmgate.test.Echo/Echo\n\
                    other StatusCode.UNIMPLEMENTED\n";
    let h2c = grpc_client(&["plain", &plain.addr.to_string()]);
    assert_eq!(h2c, expected);
    let ca = cert.display().to_string();
    let over_tls = grpc_client(&["tls", &tls.addr.to_string(), &ca]);
    assert_eq!(over_tls, expected);
}

/// `--require-tls` without a certificate, and a certificate that is not one, stop the start with a
/// reason.
#[test]
pub fn tls_refusals_at_start() {
    let dir = temp_dir("tls-refusals");
    let (status, stderr) = run_to_exit(&["serve", "--listen", "127.0.0.1:0", "--require-tls"]);
    assert!(!status.success());
    assert!(
        stderr.contains("--require-tls") && stderr.contains("--tls-cert"),
        "{stderr}"
    );

    let (cert, key) = (dir.join("bad.crt"), dir.join("bad.key"));
    std::fs::write(&cert, "not a certificate\n").expect("write");
    std::fs::write(&key, "not a key\n").expect("write");
    let state = dir.join("state");
    let (status, stderr) = run_to_exit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("bad.crt"), "{stderr}");
}

/// Basic auth over plain HTTP on a non-loopback address is served, with a warning at start.
#[test]
pub fn basic_auth_over_plain_http_warns() {
    let state = temp_dir("auth-warning");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["serve", "--listen", "0.0.0.0:0", "--state-dir"])
        .arg(&state)
        .env("WASMGATE_LOG", "warn")
        .env("WASMGATE_BASIC_AUTH_USER", "admin")
        .env("WASMGATE_BASIC_AUTH_PASSWORD", "secret")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wasmgate");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).expect("read stdout");
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        first.starts_with("wasmgate listening on http://"),
        "{first}\n{stderr}"
    );
    assert!(
        stderr.contains("basic auth over plain HTTP") && stderr.contains("--require-tls"),
        "{stderr}"
    );
}
