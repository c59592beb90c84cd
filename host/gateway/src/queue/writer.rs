//! The writer: one task that takes the queue's writes as they come and commits those waiting
//! together, new calls in one durable commit and outcomes in another, so one `fsync` covers every
//! call that arrived while the previous commit ran.
//!
//! Its owner is the queue: the task ends when the last [`Writer`] is dropped, after the writes sent
//! before. It does not stop on the shutdown signal, since the calls still running when shutdown
//! comes record their outcomes through it while the queue drains.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::store::{CallStore, NewCall, Outcome};

/// Writes that arrive together share one commit; at most this many.
const WRITE_BATCH: usize = 256;
/// Writes waiting for the writer (senders wait past it).
const WRITE_BACKLOG: usize = 4096;

/// Work for the writer.
enum Job {
    /// Store a new call; answer whether it was new (or why it could not be stored).
    Enqueue {
        call: NewCall,
        done: oneshot::Sender<Result<bool, String>>,
    },
    /// Record an outcome; answer whether it was stored.
    Record {
        outcome: Outcome,
        done: oneshot::Sender<bool>,
    },
    /// Delete the oldest finished calls beyond `keep`; nobody waits for it.
    Prune { keep: u64 },
}

/// Sends writes to the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task over `store`.
    pub(super) fn start(store: Arc<dyn CallStore>) -> Writer {
        let (jobs, incoming) = mpsc::channel(WRITE_BACKLOG);
        tokio::spawn(write_loop(store, incoming));
        Writer { jobs }
    }

    /// Stores a new call; `Ok(false)` when its id was seen before.
    pub(super) async fn enqueue(&self, call: NewCall) -> Result<bool, String> {
        let (done, answer) = oneshot::channel();
        match self.jobs.send(Job::Enqueue { call, done }).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err("the writer stopped".into())),
            Err(_) => Err("the writer stopped".into()),
        }
    }

    /// Records an outcome (outcomes that arrive together share a commit); whether it was stored.
    pub(super) async fn record(&self, outcome: Outcome) -> bool {
        let (done, answer) = oneshot::channel();
        if self.jobs.send(Job::Record { outcome, done }).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Asks for the history to be cut to `keep` finished calls, without waiting for it.
    pub(super) async fn prune(&self, keep: u64) {
        let _ = self.jobs.send(Job::Prune { keep }).await;
    }
}

/// Takes jobs as they come and commits those waiting together; ends when every [`Writer`] is gone.
async fn write_loop(store: Arc<dyn CallStore>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match jobs.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut calls = Vec::new();
        let mut call_answers = Vec::new();
        let mut outcomes = Vec::new();
        let mut outcome_answers = Vec::new();
        let mut prune = None;
        for job in batch {
            match job {
                Job::Enqueue { call, done } => {
                    calls.push(call);
                    call_answers.push(done);
                }
                Job::Record { outcome, done } => {
                    outcomes.push(outcome);
                    outcome_answers.push(done);
                }
                Job::Prune { keep } => prune = Some(keep),
            }
        }
        if !calls.is_empty() {
            match store.enqueue(calls).await {
                Ok(inserted) => {
                    for (done, new) in call_answers.into_iter().zip(inserted) {
                        let _ = done.send(Ok(new));
                    }
                }
                Err(error) => {
                    let text = format!("{error:#}");
                    tracing::error!(error = %text, "the async queue could not store calls");
                    for done in call_answers {
                        let _ = done.send(Err(text.clone()));
                    }
                }
            }
        }
        if !outcomes.is_empty() {
            let stored = match store.record(outcomes).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "the async queue could not record outcomes");
                    false
                }
            };
            for done in outcome_answers {
                let _ = done.send(stored);
            }
        }
        if let Some(keep) = prune
            && let Err(error) = store.prune(keep).await
        {
            tracing::warn!(error = %format!("{error:#}"), "the async queue could not prune its history");
        }
    }
}
