//! Whether this node is ready to take traffic (`/readyz`), as opposed to alive (`/healthz`).
//!
//! A node is ready once its state is restored (before the server starts, so always by the time
//! anyone asks) and, in cluster mode, once the first full catch-up is applied: every bucket's
//! current records read and every one of them applied here. A change that fails keeps the node
//! unready while it is tried again. Readiness is reached once and then kept: a later change that
//! fails is the cluster watch's business (and its log's), not a reason to take the node out of a
//! load balancer that would then send its traffic to nodes in the same state.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The node's readiness: what it still waits for, if anything.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set once everything below was done at the same time; never cleared.
    ready: AtomicBool,
    catch_ups: Mutex<Vec<Arc<CatchUp>>>,
}

/// The first catch-up of one cluster bucket.
#[derive(Debug)]
pub struct CatchUp {
    bucket: &'static str,
    /// Set when every record the bucket held when the node started has been read.
    read: AtomicBool,
    /// Records read during the catch-up whose change is not applied yet (being applied, or failed
    /// and waiting to be tried again).
    unapplied: AtomicUsize,
}

impl Readiness {
    /// A node that waits for nothing (single-node mode: its state was restored before it serves).
    pub fn new() -> Arc<Readiness> {
        Arc::default()
    }

    /// Makes readiness wait for the first catch-up of `bucket`.
    pub fn catch_up(&self, bucket: &'static str) -> Arc<CatchUp> {
        let catch_up = Arc::new(CatchUp {
            bucket,
            read: AtomicBool::new(false),
            unapplied: AtomicUsize::new(0),
        });
        self.catch_ups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(catch_up.clone());
        catch_up
    }

    /// `Ok` when ready; else why not, for a person.
    pub fn check(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let catch_ups = self
            .catch_ups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let waiting: Vec<String> = catch_ups.iter().filter_map(|c| c.waiting_for()).collect();
        if waiting.is_empty() {
            self.ready.store(true, Ordering::Release);
            return Ok(());
        }
        Err(format!("not ready: {}", waiting.join("; ")))
    }
}

impl CatchUp {
    /// Whether the catch-up still waits for a record to be read.
    pub fn reading(&self) -> bool {
        !self.read.load(Ordering::Acquire)
    }

    /// Every record the bucket held at the start has been read (and counted with
    /// [`CatchUp::counted`]).
    pub fn read_all(&self) {
        self.read.store(true, Ordering::Release);
    }

    /// A record read during the catch-up, to be applied: returns what to call once it is.
    pub fn counted(self: &Arc<Self>) -> Applied {
        self.unapplied.fetch_add(1, Ordering::AcqRel);
        Applied(Some(self.clone()))
    }

    fn waiting_for(&self) -> Option<String> {
        if self.reading() {
            return Some(format!("reading the cluster's {} bucket", self.bucket));
        }
        match self.unapplied.load(Ordering::Acquire) {
            0 => None,
            n => Some(format!(
                "{n} records of the cluster's {} bucket not applied here yet",
                self.bucket
            )),
        }
    }
}

/// A record of the first catch-up not applied yet; [`Applied::done`] (or dropping it, when the
/// node stops) counts it as applied.
#[derive(Debug)]
pub struct Applied(Option<Arc<CatchUp>>);

impl Applied {
    /// A change that is not part of a catch-up.
    pub fn none() -> Applied {
        Applied(None)
    }

    /// The record is applied (or a newer revision replaced it).
    pub fn done(self) {
        drop(self);
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        if let Some(catch_up) = self.0.take() {
            catch_up.unapplied.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_is_ready_at_once() {
        assert_eq!(Readiness::new().check(), Ok(()));
    }

    #[test]
    fn ready_once_every_bucket_is_read_and_applied_and_then_for_good() {
        let readiness = Readiness::new();
        let functions = readiness.catch_up("wasmgate-functions");
        let secrets = readiness.catch_up("wasmgate-secrets");
        assert_eq!(
            readiness.check(),
            Err(
                "not ready: reading the cluster's wasmgate-functions bucket; reading the \
                 cluster's wasmgate-secrets bucket"
                    .to_string()
            )
        );
        let first = functions.counted();
        let second = functions.counted();
        functions.read_all();
        secrets.read_all();
        assert_eq!(
            readiness.check(),
            Err(
                "not ready: 2 records of the cluster's wasmgate-functions bucket not applied here yet"
                    .to_string()
            )
        );
        first.done();
        assert!(readiness.check().is_err());
        second.done();
        assert_eq!(readiness.check(), Ok(()));
        // Later changes do not take readiness back.
        let later = functions.counted();
        assert_eq!(readiness.check(), Ok(()));
        later.done();
    }
}
