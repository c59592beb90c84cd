//! The event connectors of OpenFaaS, built in: functions run on a schedule (`cron.rs`, the
//! cron-connector's `topic: cron-function` and `schedule`) and for each message on NATS subjects
//! (`topics.rs`, the nats-connector's `topic: a,b`, in cluster mode). The annotations are read by
//! `wasmgate_openfaas::triggers`.
//!
//! 1. [`start`] spawns the one task that owns them all: it reads the functions' triggers
//!    ([`Functions::triggered`]), starts a task per schedule and per subject, and reads them again
//!    after every change applied ([`Functions::watch_changes`]: deploys, updates and removals, made
//!    here or replicated from another node). A function whose triggers changed has its tasks
//!    stopped and started anew; a removed one has them stopped.
//! 2. Every invocation is an HTTP request through the [`Gateway`], as the connectors of OpenFaaS
//!    make it: `POST /function/<name>.<namespace>` (or `/async-function/...` with `async: "true"`,
//!    through the durable queue, its retries and the callback of `com.wasmgate.callback-url`), with
//!    `X-Connector` and `X-Topic`. The function's limits, metrics and logs are those of any request.
//! 3. Each function has at most [`MAX_IN_FLIGHT`] connector invocations running at once; a cron tick
//!    past it is not run (counted `busy`), a NATS message waits for a place.
//!
//! Every task stops on the gateway's shutdown token (a child of it per function, cancelled when its
//! triggers change); an invocation still running then is dropped, which ends its guest as a client
//! that hangs up would.

mod cron;
mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;
use wasmgate_openfaas::headers::X_CALLBACK_URL;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::triggers::TriggerSpec;

use crate::cluster::Cluster;
use crate::control::Functions;
use crate::http::body::GatewayBody;
use crate::http::gateway::Gateway;
use crate::observe::metrics::Metrics;
use crate::observe::traces::Trigger;

/// Connector invocations of one function running at once, cron and topics together.
pub const MAX_IN_FLIGHT: usize = 64;
/// `X-Connector`: which connector made the request.
const X_CONNECTOR: &str = "x-connector";
/// `X-Topic`: `cron-function`, or the NATS subject the message came on.
const X_TOPIC: &str = "x-topic";

/// What the connectors' tasks share.
struct Shared {
    gateway: Gateway,
    metrics: Arc<Metrics>,
    /// Cluster mode: the NATS connection and the claims of cron ticks.
    cluster: Option<Arc<Cluster>>,
    /// The gateway's shutdown: invocations running then are dropped.
    shutdown: CancellationToken,
}

/// The tasks running for one function, and the triggers they run.
struct Running {
    spec: TriggerSpec,
    stop: CancellationToken,
}

/// Starts the connectors of `functions` (see the module documentation); they stop on `stopping`.
pub fn start(
    gateway: Gateway,
    functions: Arc<Functions>,
    metrics: Arc<Metrics>,
    cluster: Option<Arc<Cluster>>,
    stopping: CancellationToken,
) {
    let shared = Arc::new(Shared {
        gateway,
        metrics,
        cluster,
        shutdown: stopping.clone(),
    });
    tokio::spawn(async move {
        let claims = match &shared.cluster {
            Some(cluster) => match cron::Claims::open(cluster).await {
                Ok(claims) => Some(Arc::new(claims)),
                Err(error) => {
                    // Without claims every node would run every tick: run none here.
                    tracing::error!(error = %format!("{error:#}"), "cannot open the cron claims bucket; schedules do not run on this node");
                    None
                }
            },
            None => None,
        };
        let mut changes = functions.watch_changes();
        let mut running: BTreeMap<String, Running> = BTreeMap::new();
        let mut warned_no_nats = false;
        loop {
            changes.borrow_and_update();
            let wanted: BTreeMap<String, (FunctionRef, TriggerSpec)> = functions
                .triggered()
                .into_iter()
                .map(|(function, spec)| (function.key(), (function, spec)))
                .collect();
            running.retain(|key, tasks| {
                let keep = wanted.get(key).is_some_and(|(_, spec)| *spec == tasks.spec);
                if !keep {
                    tasks.stop.cancel();
                    tracing::info!(function = %key, "connectors stopped");
                }
                keep
            });
            for (key, (function, spec)) in wanted {
                if running.contains_key(&key) {
                    continue;
                }
                let stop = stopping.child_token();
                let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
                let function = Arc::new(function);
                if let Some(schedule) = &spec.schedule {
                    if shared.cluster.is_some() && claims.is_none() {
                        tracing::warn!(function = %key, "not scheduled on this node: no cron claims bucket");
                    } else {
                        let cron = cron::Cron {
                            shared: shared.clone(),
                            function: function.clone(),
                            spec: spec.clone(),
                            schedule: schedule.clone(),
                            claims: claims.clone(),
                            in_flight: in_flight.clone(),
                        };
                        tokio::spawn(cron.run(stop.clone()));
                    }
                }
                if !spec.subjects.is_empty() {
                    match &shared.cluster {
                        Some(cluster) => {
                            for subject in &spec.subjects {
                                let topic = topics::Topic {
                                    shared: shared.clone(),
                                    client: cluster.client(),
                                    function: function.clone(),
                                    spec: spec.clone(),
                                    subject: subject.clone(),
                                    in_flight: in_flight.clone(),
                                };
                                tokio::spawn(topic.run(stop.clone()));
                            }
                        }
                        None if !warned_no_nats => {
                            warned_no_nats = true;
                            tracing::warn!(function = %key, "topics need NATS (serve --nats): their subjects are not subscribed");
                        }
                        None => {}
                    }
                }
                tracing::info!(function = %key, schedule = spec.schedule.as_ref().map(|s| s.as_str()), subjects = ?spec.subjects, asynchronous = spec.asynchronous, "connectors started");
                running.insert(key, Running { spec, stop });
            }
            tokio::select! {
                () = stopping.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// The request a connector makes for `function`: `POST`, `X-Connector` and `X-Topic`, to the async
/// route when the function asked for it; `body` as the message brought it. `trigger` says what
/// started it, for its trace (`faas.trigger`).
fn invocation(
    function: &FunctionRef,
    spec: &TriggerSpec,
    trigger: Trigger,
    connector: &str,
    topic: &str,
    body: Bytes,
    extra: &[(&str, String)],
) -> Result<Request<Full<Bytes>>, http::Error> {
    let route = if spec.asynchronous {
        "async-function"
    } else {
        "function"
    };
    let mut request = Request::post(format!("/{route}/{}", function.key()))
        .extension(trigger)
        .header(http::header::HOST, "wasmgate")
        .header(X_CONNECTOR, connector)
        .header(X_TOPIC, topic);
    if let (true, Some(url)) = (spec.asynchronous, &spec.callback_url) {
        request = request.header(X_CALLBACK_URL, url.as_str());
    }
    for (name, value) in extra {
        request = request.header(*name, value.as_str());
    }
    request.body(Full::new(body))
}

/// Sends `request` through the gateway; a request that could not be built is a 500 of our own.
async fn invoke(
    shared: &Shared,
    request: Result<Request<Full<Bytes>>, http::Error>,
) -> Response<GatewayBody> {
    match request {
        Ok(request) => shared.gateway.handle(request, None).await,
        Err(error) => {
            tracing::error!(%error, "a connector made an invalid request");
            crate::http::body::text(StatusCode::INTERNAL_SERVER_ERROR, "invalid request")
        }
    }
}

/// Reads a body to its end, keeping nothing.
async fn drain(mut body: GatewayBody) {
    use http_body_util::BodyExt;
    while let Some(Ok(_)) = body.frame().await {}
}

/// The outcome label of an answer: `ok` for 2xx (a queued call's 202 included), else `failed`.
fn outcome(status: StatusCode) -> &'static str {
    if status.is_success() { "ok" } else { "failed" }
}
