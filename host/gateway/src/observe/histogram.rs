//! A lock-free Prometheus histogram with fixed buckets, and its `_bucket`, `_sum` and `_count`
//! lines.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::prometheus::{float, sample};

/// Lock-free histogram. Buckets are stored non-cumulatively (the last one is the
/// `+Inf` overflow) and summed at render time, so `_count` always equals the
/// `+Inf` bucket even while observations race with a scrape.
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0.0f64.to_bits()),
        }
    }

    pub(crate) fn observe(&self, seconds: f64) {
        // Negative, NaN or infinite durations are bugs in the caller; record them
        // as 0 so they cannot poison `_sum` forever.
        let v = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        let i = self.bounds.iter().position(|b| v <= *b);
        self.counts[i.unwrap_or(self.bounds.len())].fetch_add(1, Relaxed);
        // The closure always returns Some, so this cannot fail.
        let _ = self.sum_bits.fetch_update(Relaxed, Relaxed, |b| {
            Some((f64::from_bits(b) + v).to_bits())
        });
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Writes `_bucket`, `_sum` and `_count` lines; `labels` is `k="v",...` or empty.
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = self.bounds.get(i).map_or(f64::INFINITY, |b| *b);
            let le = float(le);
            sample(
                out,
                &format!("{name}_bucket"),
                &format!("{labels}{sep}le=\"{le}\""),
                cumulative,
            );
        }
        let sum = float(f64::from_bits(self.sum_bits.load(Relaxed)));
        sample(out, &format!("{name}_sum"), labels, sum);
        sample(out, &format!("{name}_count"), labels, cumulative);
    }
}
