//! Messages per second through a NATS topic against requests per second over HTTP, for one function
//! on one gateway, in one run: rounds alternate between the three ways in, repeated, and the medians
//! and ratios are printed. `benches/topics.sh` starts the NATS server and the gateway and runs it.
//!
//! ```text
//! topic-bench GATEWAY_ADDR NATS_URL FUNCTION SUBJECT [MESSAGES] [CONCURRENCY] [REPEATS]
//! ```
//!
//! - `publish`: MESSAGES published at once (fire and forget), timed until the gateway's
//!   `wasmgate_connector_invocations_total` for the function has grown by MESSAGES;
//! - `request`: MESSAGES NATS requests, CONCURRENCY in flight, each waiting for the function's reply;
//! - `http`: MESSAGES `POST /function/FUNCTION`, CONCURRENCY keep-alive connections.
//!
//! Only loopback addresses are ever targeted; every round is bounded by its message count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Setup {
    gateway: SocketAddr,
    nats: async_nats::Client,
    function: String,
    subject: String,
    messages: usize,
    concurrency: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: topic-bench GATEWAY_ADDR NATS_URL FUNCTION SUBJECT [MESSAGES] [CONCURRENCY] [REPEATS]"
        );
        std::process::exit(2);
    }
    let number = |i: usize, default: usize| {
        args.get(i)
            .map(|a| a.parse().expect("a whole number"))
            .unwrap_or(default)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let gateway: SocketAddr = args[1].parse().expect("GATEWAY_ADDR is host:port");
        assert!(gateway.ip().is_loopback(), "only loopback is benchmarked");
        let nats = async_nats::connect(args[2].as_str())
            .await
            .expect("connect to NATS");
        let setup = Setup {
            gateway,
            nats,
            function: args[3].clone(),
            subject: args[4].clone(),
            messages: number(5, 20_000),
            concurrency: number(6, 16),
        };
        let repeats = number(7, 5);
        // Warm up each way once (load the function, open connections).
        for way in ["publish", "request", "http"] {
            run(&setup, way, setup.messages / 10).await;
        }
        let mut rates: [(&str, Vec<f64>); 3] =
            [("publish", vec![]), ("request", vec![]), ("http", vec![])];
        for round in 0..repeats {
            // Alternate the order each round so no way always runs first.
            let order: Vec<usize> = if round % 2 == 0 {
                vec![0, 1, 2]
            } else {
                vec![2, 1, 0]
            };
            for i in order {
                let way = rates[i].0;
                let seconds = run(&setup, way, setup.messages).await;
                let rate = setup.messages as f64 / seconds;
                println!("round {round} {way:>7}: {rate:>9.0} /s");
                rates[i].1.push(rate);
            }
        }
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (publish, request, http) = (
            median(&rates[0].1),
            median(&rates[1].1),
            median(&rates[2].1),
        );
        println!();
        println!(
            "{} messages per round, {} in flight, {repeats} rounds; medians:",
            setup.messages, setup.concurrency
        );
        println!("| way in | per second (median) | / HTTP |");
        println!("|---|---|---|");
        println!(
            "| NATS publish (counted by the gateway) | {publish:.0} | {:.2} |",
            publish / http
        );
        println!(
            "| NATS request/reply | {request:.0} | {:.2} |",
            request / http
        );
        println!("| HTTP POST /function | {http:.0} | 1.00 |");
    });
}

/// Runs one round of `messages` through `way`; returns the seconds it took.
async fn run(setup: &Setup, way: &str, messages: usize) -> f64 {
    let started = Instant::now();
    match way {
        "publish" => {
            let counter = format!(
                "wasmgate_connector_invocations_total{{function_name=\"{}\",connector=\"nats\",outcome=",
                setup.function
            );
            let before = metric_sum(setup.gateway, &counter).await;
            let started = Instant::now();
            for i in 0..messages {
                setup
                    .nats
                    .publish(setup.subject.clone(), Bytes::from(format!("message {i}")))
                    .await
                    .expect("publish");
            }
            setup.nats.flush().await.expect("flush");
            let deadline = Instant::now() + Duration::from_secs(300);
            while metric_sum(setup.gateway, &counter).await < before + messages as u64 {
                assert!(Instant::now() < deadline, "the messages never all ran");
                // Coarse enough to cost the gateway little, fine enough for rounds of seconds.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return started.elapsed().as_secs_f64();
        }
        "request" => {
            let per_task = messages / setup.concurrency;
            let tasks: Vec<_> = (0..setup.concurrency)
                .map(|_| {
                    let (client, subject) = (setup.nats.clone(), setup.subject.clone());
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            let reply = client
                                .request(subject.clone(), Bytes::from_static(b"hello"))
                                .await
                                .expect("a reply");
                            assert!(!reply.payload.is_empty(), "an empty reply");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a requester");
            }
        }
        _ => {
            let per_task = messages / setup.concurrency;
            let tasks: Vec<_> = (0..setup.concurrency)
                .map(|_| {
                    let (addr, path) = (setup.gateway, format!("/function/{}", setup.function));
                    tokio::spawn(async move {
                        let mut sender = connect(addr).await;
                        for _ in 0..per_task {
                            let request = Request::post(path.as_str())
                                .header("host", addr.to_string())
                                .body(Full::new(Bytes::from_static(b"hello")))
                                .expect("a request");
                            let response = sender.send_request(request).await.expect("an answer");
                            assert!(response.status().is_success(), "{}", response.status());
                            response.into_body().collect().await.expect("a body");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a client");
            }
        }
    }
    started.elapsed().as_secs_f64()
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1 handshake");
    tokio::spawn(connection);
    sender
}

/// The sum of the gateway's metric lines that start with `prefix`.
async fn metric_sum(addr: SocketAddr, prefix: &str) -> u64 {
    let mut sender = connect(addr).await;
    let request = Request::get("/metrics")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let response = sender.send_request(request).await.expect("metrics");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
