//! NATS topics (cluster mode): one task per function and subject subscribes in the queue group
//! `wasmgate.<name>.<namespace>`, so each message reaches one node (and each function listing the
//! subject gets it once), and invokes the function with a `POST` of the message's payload,
//! `X-Connector: nats-connector` and `X-Topic: <subject>` (the message's `Content-Type` header is
//! passed on).
//!
//! **Replies.** A message with a reply subject (`nats request`) gets the function's answer as its
//! reply: the body, the function's headers, and `X-Function-Status` with its status (with `async:
//! "true"`, the queue's 202 and `X-Call-Id`). An answer larger than the NATS server's largest
//! message is replaced by an empty reply with `X-Function-Status: 502`.
//!
//! **Delivery.** Core NATS delivers a message at most once: a message published while no node is
//! subscribed, or dropped by the client when this node falls more than its subscription buffer
//! behind (a slow consumer), is lost and NATS says so only in its own logs and the client's events.
//! Once a message has reached this node it is invoked: a function that fails (any status but 2xx,
//! or one it could not run) is counted (`wasmgate_connector_invocations_total{outcome="failed"}`)
//! and logged with the subject and status, never retried by the connector; ask for retries with
//! `async: "true"`, which hands each message to the durable queue (its retries and callback), so
//! from there on it is at least once. What is never covered: the message between the publisher and
//! this node's buffer.
//!
//! **Back pressure.** A message waits for a place among the function's
//! [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) connector invocations; meanwhile the client buffers up to
//! [`SUBSCRIPTION_CAPACITY`](crate::cluster::SUBSCRIPTION_CAPACITY) messages per subscription.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::triggers::{NATS_CONNECTOR, TriggerSpec};

use super::{Shared, invocation, invoke, outcome};
use crate::http::body::GatewayBody;

/// On a reply: the function's HTTP status.
const X_FUNCTION_STATUS: &str = "X-Function-Status";
/// Pause before subscribing again after a subscription failed or ended.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_secs(1);

/// One function's subscription to one subject.
pub(super) struct Topic {
    pub(super) shared: Arc<Shared>,
    pub(super) client: async_nats::Client,
    pub(super) function: Arc<FunctionRef>,
    pub(super) spec: TriggerSpec,
    pub(super) subject: String,
    pub(super) in_flight: Arc<Semaphore>,
}

impl Topic {
    /// Subscribes, and invokes the function for each message, until `stop`.
    pub(super) async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let key = this.function.key();
        let group = format!("wasmgate.{key}");
        let counts = &this.shared.metrics.connectors;
        loop {
            let subscribed = tokio::select! {
                () = stop.cancelled() => return,
                subscribed = this.client.queue_subscribe(this.subject.clone(), group.clone()) => subscribed,
            };
            let mut subscriber = match subscribed {
                Ok(subscriber) => subscriber,
                Err(error) => {
                    tracing::warn!(function = %key, subject = %this.subject, %error, "cannot subscribe; trying again");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RESUBSCRIBE_PAUSE) => continue,
                    }
                }
            };
            // The server has the subscription once it has answered a ping sent after it.
            let _ = this.client.flush().await;
            counts.subscribed(&key, true);
            tracing::info!(function = %key, subject = %this.subject, %group, "subscribed");
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => None,
                    message = subscriber.next() => message,
                };
                let Some(message) = message else { break };
                let permit = tokio::select! {
                    () = stop.cancelled() => break,
                    permit = this.in_flight.clone().acquire_owned() => permit,
                };
                let Ok(permit) = permit else { break };
                let topic = this.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = topic.shared.shutdown.cancelled() => {}
                        () = topic.handle(message) => {}
                    }
                    drop(permit);
                });
            }
            counts.subscribed(&key, false);
            let _ = subscriber.unsubscribe().await;
            if stop.is_cancelled() {
                tracing::info!(function = %key, subject = %this.subject, "unsubscribed");
                return;
            }
            tracing::warn!(function = %key, subject = %this.subject, "the subscription ended; subscribing again");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
            }
        }
    }

    /// Invokes the function for one message, and replies when the message asks for it.
    async fn handle(&self, message: async_nats::Message) {
        let key = self.function.key();
        let mut extra = Vec::new();
        if let Some(content_type) = message.headers.as_ref().and_then(|h| h.get("Content-Type")) {
            extra.push(("content-type", content_type.as_str().to_string()));
        }
        // A publisher's trace context is continued (as a client's would be).
        for name in [wasmgate_runtime::TRACEPARENT, wasmgate_runtime::TRACESTATE] {
            if let Some(value) = message.headers.as_ref().and_then(|h| h.get(name)) {
                extra.push((name, value.as_str().to_string()));
            }
        }
        let request = invocation(
            &self.function,
            &self.spec,
            crate::observe::traces::Trigger::PubSub,
            NATS_CONNECTOR,
            message.subject.as_str(),
            message.payload.clone(),
            &extra,
        );
        let response = invoke(&self.shared, request).await;
        let status = response.status();
        let outcome = outcome(status);
        self.shared
            .metrics
            .connectors
            .invoked(&key, "nats", outcome);
        if outcome != "ok" {
            tracing::warn!(function = %key, subject = %message.subject, status = status.as_u16(), "a message's invocation failed; the message is not delivered again");
        }
        let Some(reply) = message.reply else {
            super::drain(response.into_body()).await;
            return;
        };
        let (parts, body) = response.into_parts();
        let limit = self
            .shared
            .cluster
            .as_ref()
            .map_or(1024 * 1024, |c| c.max_payload())
            .saturating_sub(16 * 1024);
        let mut headers = async_nats::HeaderMap::new();
        let (status, body) = match read_at_most(body, limit).await {
            Ok(body) => {
                for (name, value) in &parts.headers {
                    if let Ok(value) = value.to_str() {
                        headers.append(name.as_str(), value);
                    }
                }
                (status.as_u16(), body)
            }
            Err(error) => {
                tracing::warn!(function = %key, subject = %message.subject, %error, "the answer does not fit in a NATS reply");
                (502, Bytes::new())
            }
        };
        headers.insert(X_FUNCTION_STATUS, status.to_string().as_str());
        if let Err(error) = self.client.publish_with_headers(reply, headers, body).await {
            tracing::warn!(function = %key, %error, "cannot publish the reply");
        }
    }
}

/// The whole body, if it has at most `limit` bytes.
async fn read_at_most(mut body: GatewayBody, limit: usize) -> Result<Bytes, String> {
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > limit {
                return Err(format!("more than {limit} bytes"));
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(read.freeze())
}
