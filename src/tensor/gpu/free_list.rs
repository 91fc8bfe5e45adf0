//! The free lists of a GPU's buffer pool ([`Pool`]): idle buffers by capacity, and those
//! waiting for the next submission, with the counters of its [`PoolReport`]. [`capacity`]
//! rounds a request to one of eight sizes per power of two (at most 12.5% unused), so
//! buffers of nearby sizes are interchangeable.

use std::collections::HashMap;

use crate::tensor::memory::{Counts, PoolReport, Usage};

/// Smallest buffer handed out, in bytes.
const MIN_BYTES: u64 = 256;

/// The pool's capacity for a request of `bytes` (never above `max` unless `bytes` is).
pub(crate) fn capacity(bytes: u64, max: u64) -> u64 {
    let b = bytes.max(MIN_BYTES);
    let step = (b.next_power_of_two() / 8).max(4);
    let rounded = b.div_ceil(step) * step;
    if rounded > max {
        b.div_ceil(4) * 4
    } else {
        rounded
    }
}

/// Free buffers by capacity, and those waiting for the next submission.
#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pending: Vec<(u64, wgpu::Buffer)>,
    /// Bytes held by free and pending buffers.
    cached: u64,
    /// The most bytes cached at once.
    cached_peak: u64,
    /// Requests served, per [`Usage::index`].
    counts: [Counts; 2],
}

impl Pool {
    /// A free buffer of `capacity` bytes for `usage`, counted as a hit; `None` (the caller
    /// makes one and counts it with [`Pool::add_new`]) when there is none.
    pub(crate) fn take(&mut self, capacity: u64, usage: Usage) -> Option<wgpu::Buffer> {
        let b = self.free.get_mut(&capacity)?.pop()?;
        self.cached -= capacity;
        self.counts[usage.index()].hits += 1;
        Some(b)
    }

    pub(crate) fn give_back(&mut self, capacity: u64, buffer: wgpu::Buffer) {
        self.cached += capacity;
        self.cached_peak = self.cached_peak.max(self.cached);
        self.pending.push((capacity, buffer));
    }

    /// Makes the buffers dropped before the last submission available.
    pub(crate) fn release_pending(&mut self) {
        for (capacity, b) in self.pending.drain(..) {
            self.free.entry(capacity).or_default().push(b);
        }
    }

    /// Frees every cached buffer (the device memory goes back to the driver).
    pub(crate) fn trim(&mut self) {
        let pending: u64 = self.pending.iter().map(|p| p.0).sum();
        self.free.clear();
        self.cached = pending;
    }

    /// Counts a new buffer of `capacity` bytes for `usage` (a miss).
    pub(crate) fn add_new(&mut self, capacity: u64, usage: Usage) {
        let counts = &mut self.counts[usage.index()];
        counts.misses += 1;
        counts.fresh_bytes += capacity;
    }

    /// What the pool keeps and has done, for the device `device`. It sets no budget: what it
    /// is given stays until [`Pool::trim`], so nothing is ever evicted.
    pub(crate) fn report(&self, device: String) -> PoolReport {
        let kept_buffers = self.free.values().map(Vec::len).sum::<usize>() + self.pending.len();
        PoolReport {
            device,
            budget_bytes: u64::MAX,
            kept_bytes: self.cached,
            kept_peak_bytes: self.cached_peak,
            kept_buffers: kept_buffers as u64,
            evicted_bytes: 0,
            tape: self.counts[Usage::Tape.index()],
            scratch: self.counts[Usage::Scratch.index()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capacity;

    #[test]
    fn capacities_waste_at_most_an_eighth_and_respect_the_limit() {
        assert_eq!(capacity(1, 1 << 30), 256);
        assert_eq!(capacity(256, 1 << 30), 256);
        assert_eq!(capacity(257, 1 << 30), 320);
        for bytes in [1000u64, 4096, 5000, 81_920_000, 123_456_789] {
            let c = capacity(bytes, 1 << 40);
            assert!(c >= bytes && (c - bytes) * 8 <= c && c.is_multiple_of(4), "{bytes} -> {c}");
        }
        assert_eq!(capacity(1000, 1000), 1000, "never rounded past the device's limit");
    }
}
