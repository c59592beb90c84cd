//! Schedules: one task per scheduled function sleeps until its next tick and invokes it with an
//! empty `POST`, `X-Connector: cron-connector` and `X-Topic: cron-function`, as OpenFaaS's
//! cron-connector does, plus `X-Scheduled-At` (the tick, RFC 3339), which says which tick a late or
//! queued run belongs to.
//!
//! **Once per tick in a cluster.** Every node runs the schedule; before invoking, a node claims the
//! tick with a create (a compare-and-set on "no value yet") of the key `<tick>.<name>.<namespace>`
//! in the JetStream key-value bucket [`CLAIMS_BUCKET`]. JetStream orders writes to a key, so exactly
//! one create succeeds: that node runs the tick, the others count it `lost`. The claims expire
//! after [`CLAIM_AGE`], which keeps the bucket bounded (one key per function and tick of the last
//! ten minutes); that is safe because a node claims a tick only while it is at most
//! [`MAX_LATENESS`] old, so no node can ask about a tick whose claim has expired unless the nodes'
//! clocks differ by more than `CLAIM_AGE - MAX_LATENESS` (over nine minutes). Nodes that join or
//! leave change nothing: a tick is run by whichever live node claims it first. A claim that cannot
//! be made (NATS unreachable) is not run here: at most once, never twice.
//!
//! **Missed ticks are not replayed.** A node computes the next tick from its clock when the
//! schedule starts and after each tick (from the later of the tick and now, so a node that woke late
//! runs the tick it woke for and not the ones it slept through); a tick that passed while no node
//! was up, or that this node reaches more than [`MAX_LATENESS`] late, is skipped, as the
//! cron-connector skips it.
//!
//! **Overlap.** A tick starts even if the last one still runs (as robfig/cron runs jobs), within
//! the function's [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) connector invocations; past that the tick
//! is counted `busy` and not run.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_nats::jetstream::{kv, stream};
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::triggers::{CRON_CONNECTOR, CRON_TOPIC, Schedule, TriggerSpec};

use super::{Shared, drain, invocation, invoke, outcome};
use crate::cluster::Cluster;

/// The key-value bucket of cron claims (key: `<tick seconds>.<name>.<namespace>`; value: the node).
pub const CLAIMS_BUCKET: &str = "wasmgate-cron-claims";
/// How long a claim is kept: far longer than a tick can be claimed late.
pub const CLAIM_AGE: Duration = Duration::from_secs(10 * 60);
/// A tick whose node wakes later than this after it is skipped (counted `late`).
pub const MAX_LATENESS: Duration = Duration::from_secs(30);
/// `X-Scheduled-At`: the tick an invocation belongs to.
const X_SCHEDULED_AT: &str = "x-scheduled-at";

/// The cluster's claims of ticks.
pub(super) struct Claims {
    bucket: kv::Store,
    node: String,
}

/// What claiming a tick found.
enum Claim {
    Won,
    Lost,
}

impl Claims {
    /// Opens (or creates) [`CLAIMS_BUCKET`].
    pub(super) async fn open(cluster: &Cluster) -> anyhow::Result<Claims> {
        let js = cluster.jetstream();
        let bucket = crate::cluster::retrying("creating the cron claims bucket", || {
            crate::cluster::key_value_with(
                &js,
                CLAIMS_BUCKET,
                "wasmgate cron ticks, each claimed by the node that runs it",
                CLAIM_AGE,
                stream::StorageType::File,
                cluster.replicas(),
            )
        })
        .await?;
        Ok(Claims {
            bucket,
            node: cluster.node().to_string(),
        })
    }

    async fn claim(&self, function: &FunctionRef, tick: u64) -> anyhow::Result<Claim> {
        let key = format!("{tick}.{}", function.key());
        match self
            .bucket
            .create(&key, Bytes::from(self.node.clone()))
            .await
        {
            Ok(_) => Ok(Claim::Won),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Claim::Lost),
            Err(error) => Err(error).with_context(|| format!("claiming {key}")),
        }
    }
}

/// One function's schedule.
pub(super) struct Cron {
    pub(super) shared: Arc<Shared>,
    pub(super) function: Arc<FunctionRef>,
    pub(super) spec: TriggerSpec,
    pub(super) schedule: Schedule,
    /// Cluster mode: claims every tick before running it.
    pub(super) claims: Option<Arc<Claims>>,
    pub(super) in_flight: Arc<Semaphore>,
}

impl Cron {
    /// Runs the schedule until `stop`.
    pub(super) async fn run(self, stop: CancellationToken) {
        let key = self.function.key();
        let counts = &self.shared.metrics.connectors;
        let mut after = SystemTime::now();
        loop {
            let Some(tick) = self.schedule.next_after(after) else {
                tracing::warn!(function = %key, schedule = self.schedule.as_str(), "the schedule has no next tick");
                return;
            };
            // A timer runs on the monotonic clock; the schedule is on the wall clock, which may be
            // set back while the timer runs: sleep again until the wall clock is there.
            while let Ok(wait) = tick.duration_since(SystemTime::now())
                && !wait.is_zero()
            {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            // The next tick comes after this one or after now, whichever is later: a node that
            // woke late runs the tick it woke for, not every tick it slept through (as robfig/cron).
            let now = SystemTime::now();
            after = tick.max(now);
            let late = now.duration_since(tick).unwrap_or_default();
            if late > MAX_LATENESS {
                tracing::warn!(function = %key, ?late, "skipped a tick that this node reached too late");
                counts.invoked(&key, "cron", "late");
                continue;
            }
            let seconds = tick.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if let Some(claims) = &self.claims {
                let claimed = tokio::select! {
                    () = stop.cancelled() => return,
                    claimed = claims.claim(&self.function, seconds) => claimed,
                };
                match claimed {
                    Ok(Claim::Won) => counts.claimed(&key, "won"),
                    Ok(Claim::Lost) => {
                        counts.claimed(&key, "lost");
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(function = %key, error = %format!("{error:#}"), "cannot claim a tick; it does not run on this node");
                        counts.claimed(&key, "error");
                        continue;
                    }
                }
            }
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                tracing::warn!(function = %key, "skipped a tick: the function has its most connector invocations running");
                counts.invoked(&key, "cron", "busy");
                continue;
            };
            let request = invocation(
                &self.function,
                &self.spec,
                crate::observe::traces::Trigger::Timer,
                CRON_CONNECTOR,
                CRON_TOPIC,
                Bytes::new(),
                &[(
                    X_SCHEDULED_AT,
                    wasmgate_openfaas::time::format_rfc3339(tick, false),
                )],
            );
            let shared = self.shared.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let run = async {
                    let response = invoke(&shared, request).await;
                    let status = response.status();
                    // The answer goes nowhere, as with the cron-connector: read it to the end so
                    // the function runs to its end.
                    drain(response.into_body()).await;
                    status
                };
                // A run outlives a change of the function's triggers, not the gateway.
                let status = tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    status = run => status,
                };
                let outcome = outcome(status);
                shared.metrics.connectors.invoked(&key, "cron", outcome);
                if outcome != "ok" {
                    tracing::warn!(function = %key, status = status.as_u16(), "a scheduled invocation failed");
                }
                drop(permit);
            });
        }
    }
}
