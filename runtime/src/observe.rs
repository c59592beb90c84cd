//! Hooks through which the runtime reports what it does, so the host can count it (metrics) without
//! this crate knowing any metrics format.

use std::sync::Arc;

/// Receives the runtime's events. Every method has an empty default; implement what you count.
/// Called on the request path: implementations must be cheap and must not block.
pub trait Observer: Send + Sync + 'static {
    /// A request found its function unloaded and had to load it first (a miss of the loaded-code cache).
    fn cold_start(&self, _function: &str) {}
    /// A request found its function's compiled code loaded (a hit of the loaded-code cache).
    fn warm_start(&self, _function: &str) {}
    /// A function's component was compiled, taking `seconds`.
    fn compiled(&self, _function: &str, _seconds: f64) {}
    /// An instance was created from a pre-instantiated component, taking `seconds`.
    fn instantiated(&self, _seconds: f64) {}
    /// A request's store was created (an instance slot is in use).
    fn instance_acquired(&self) {}
    /// A request's store was dropped.
    fn instance_released(&self) {}
    /// The pool was full, and an instance kept idle for reuse was dropped to make room for a request.
    fn idle_instance_evicted(&self) {}
    /// A function called another by name (`http://NAME.NAMESPACE/...`), served in this process.
    fn call_started(&self, _caller: &str, _callee: &str) {}
    /// That call answered `status` (the callee's, or the runtime's when it could not run it) after
    /// `seconds`, its response head included.
    fn call_finished(&self, _caller: &str, _callee: &str, _status: u16, _seconds: f64) {}
}

/// The observer used when none is given.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Reports an instance in use for as long as it lives.
pub(crate) struct InstanceGuard(Arc<dyn Observer>);

impl InstanceGuard {
    pub(crate) fn acquire(observer: Arc<dyn Observer>) -> Self {
        observer.instance_acquired();
        InstanceGuard(observer)
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        self.0.instance_released();
    }
}
