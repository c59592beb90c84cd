//! Bounds on requests in flight: one counter for the whole runtime and one per function, taken without
//! waiting. A request past either bound is refused at once; nothing queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Requests in flight under one bound.
#[derive(Debug, Default)]
pub struct Inflight(AtomicU32);

impl Inflight {
    /// Counts one more request if fewer than `limit` are in flight.
    fn try_take(self: &Arc<Self>, limit: u32) -> Option<Taken> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Taken(self.clone()))
    }

    /// Requests in flight now.
    pub fn current(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// One request counted under one bound, until dropped.
#[derive(Debug)]
struct Taken(Arc<Inflight>);

impl Drop for Taken {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request counted under the runtime's bound and, if it has one, its function's.
#[derive(Debug)]
pub(crate) struct InflightPermit {
    _runtime: Taken,
    _function: Option<Taken>,
}

/// Which bound refused a request, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Runtime(u32),
    Function(u32),
}

impl InflightPermit {
    pub(crate) fn try_acquire(
        runtime: &Arc<Inflight>,
        runtime_limit: u32,
        function: &Arc<Inflight>,
        function_limit: Option<u32>,
    ) -> Result<Self, Refused> {
        // The function's bound first: a busy function must not take the runtime's room from others.
        let function = match function_limit {
            Some(limit) => Some(function.try_take(limit).ok_or(Refused::Function(limit))?),
            None => None,
        };
        let runtime = runtime
            .try_take(runtime_limit)
            .ok_or(Refused::Runtime(runtime_limit))?;
        Ok(InflightPermit {
            _runtime: runtime,
            _function: function,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_refuse_past_the_limit_and_free_on_drop() {
        let runtime = Arc::new(Inflight::default());
        let function = Arc::new(Inflight::default());
        let a = InflightPermit::try_acquire(&runtime, 3, &function, Some(2)).expect("first");
        let b = InflightPermit::try_acquire(&runtime, 3, &function, Some(2)).expect("second");
        assert_eq!(
            InflightPermit::try_acquire(&runtime, 3, &function, Some(2)).err(),
            Some(Refused::Function(2))
        );
        // A refused request leaves no count behind.
        assert_eq!((runtime.current(), function.current()), (2, 2));
        let other = Arc::new(Inflight::default());
        let c = InflightPermit::try_acquire(&runtime, 3, &other, None).expect("another function");
        assert_eq!(
            InflightPermit::try_acquire(&runtime, 3, &other, None).err(),
            Some(Refused::Runtime(3))
        );
        // A function without a bound of its own is not counted on its own.
        assert_eq!((runtime.current(), other.current()), (3, 0));
        drop((a, b, c));
        assert_eq!((runtime.current(), function.current()), (0, 0));
    }
}
