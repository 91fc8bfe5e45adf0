//! The memory layer: the one place that reuses buffers, for tape values and gradients and for
//! kernel temporaries alike, under one budget and one policy.
//!
//! A device's buffers come from a [`BufferPool`]: [`take`](BufferPool::take) a buffer of
//! `len` f32 values (zeros, or stale values the caller overwrites), [`give`](BufferPool::give)
//! it back when done, [`report`](BufferPool::report) what the pool keeps and has done. The
//! CPU's pool works on `Vec<f32>`; a GPU's is a sibling over its device buffers.

use serde::Serialize;

/// How the values of a taken buffer start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Every value 0.0.
    Zeros,
    /// Unspecified: values an earlier use left (NaN, say), or zeros. Only for a caller that
    /// writes every value before it reads any.
    Stale,
}

/// What a buffer is taken for. The policy is the same for both; the report counts them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A value or gradient recorded on a graph's tape: lives until the graph is dropped.
    Tape,
    /// A kernel's temporary (packed weights, explicit columns, spectra): lives for one
    /// kernel call, or from an op's forward to its backward.
    Scratch,
}

/// Requests of one [`Usage`] served by a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Served from a kept buffer.
    pub hits: u64,
    /// Served by a new allocation.
    pub misses: u64,
    /// Bytes newly allocated for the misses.
    pub fresh_bytes: u64,
}

/// What a pool keeps and has done since the process started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolReport {
    /// Where the buffers live: `"cpu"`, or the GPU adapter's name.
    pub device: String,
    /// The most bytes the pool keeps idle.
    pub budget_bytes: u64,
    /// Bytes kept idle now, waiting for reuse.
    pub kept_bytes: u64,
    /// The most bytes kept idle at once.
    pub kept_peak_bytes: u64,
    /// Buffers kept idle now.
    pub kept_buffers: u64,
    /// Bytes freed to stay within the budget.
    pub evicted_bytes: u64,
    /// Tape values and gradients ([`Usage::Tape`]).
    pub tape: Counts,
    /// Kernel temporaries ([`Usage::Scratch`]).
    pub scratch: Counts,
}

/// A device's pool of f32 buffers. Implementations are shared by every thread (`&self`),
/// keep at most their budget in idle buffers, and never hand one buffer out twice.
pub trait BufferPool: Send + Sync {
    /// The buffer handed out: `Vec<f32>` on the CPU, a device buffer on a GPU.
    type Buffer;

    /// A buffer of exactly `len` f32 values for `usage`, its values as `fill` says: a kept
    /// one when the policy finds one, else a new one.
    fn take(&self, len: usize, fill: Fill, usage: Usage) -> Self::Buffer;

    /// Takes `buf` back for a later [`take`](BufferPool::take), or frees it (too small to be
    /// worth keeping, or beyond the budget).
    fn give(&self, buf: Self::Buffer);

    /// What the pool keeps and has done.
    fn report(&self) -> PoolReport;

    /// Frees every kept buffer (e.g. after training, before other work); counters stay.
    fn release(&self);
}
