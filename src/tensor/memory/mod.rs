//! The memory layer: the one place that reuses memory, for tape values and gradients and for
//! kernel temporaries alike, under one budget and one policy, with one report.
//!
//! A device's buffers come from a [`BufferPool`]: [`take`](BufferPool::take) a buffer of
//! `len` f32 values (zeros, or stale values the caller overwrites), [`give`](BufferPool::give)
//! it back when done, [`report`](BufferPool::report) what the pool keeps and has done. The
//! CPU's pool ([`HostPool`], one per process: [`host_pool`]) works on `Vec<f32>`; a GPU's is
//! a sibling over its device buffers (each `GpuDevice` is one; every `GpuTensor` takes its
//! buffer from it). A binary may also install [`CachingAlloc`] (`system`)
//! as its global allocator: it keeps the large blocks the pool never sees (other crates'
//! temporaries) under the same budget, and asks for huge pages.
//!
//! # The CPU's policy
//! - **Who gives back.** Every [`Tensor`](super::Tensor) gives its buffer back when dropped
//!   (a graph's values, a layer's temporaries); a dropped [`Graph`](super::Graph) gives back
//!   its gradients; a dropped [`Scratch`] (a kernel temporary, or a buffer an op keeps for
//!   its backward) gives back its own. A `Vec` taken out with `Tensor::into_data` is its
//!   owner's.
//! - **What is kept.** Buffers of at least 1,024 values (4 KiB; smaller ones cost `malloc`
//!   and a fill about as little), at most 4,096 of them, while the bytes kept idle — the
//!   pool's buffers and the allocator's blocks together — stay within one budget (1 GiB;
//!   [`set_budget`]).
//! - **Which one is taken.** The best fit: the smallest kept buffer that holds the request,
//!   at most a quarter larger than asked (an 82 MB logits buffer is not spent on a 6 MB
//!   request), the most recently given back among equals. A step asks for the same lengths
//!   as the step before, so after the first step nearly every request is a hit.
//! - **For how long, and what leaves first.** Until the budget or the count needs the room:
//!   then the pool frees its least recently given back buffers first, so lengths no longer
//!   asked for (an earlier model's, an evaluation's) leave before the ones each step uses;
//!   what it frees goes back to the system, not into the allocator's blocks. The blocks
//!   (at most 64, exact size and alignment) are kept while the budget has room and are
//!   not evicted for the pool. [`release`] frees everything; lowering the budget frees the
//!   pool's oldest, then the blocks.
//! - **What is zero-filled, and when.** [`Fill::Zeros`] (gradients that rules accumulate
//!   into, `Tensor::zeros`, [`Scratch::zeroed`]) writes zeros at each take, across the
//!   thread pool from 32K values on. [`Fill::Stale`] (outputs written in full: GEMM outputs,
//!   activations, normalised rows, convs, copies, [`Scratch::new`]) writes nothing: a hit
//!   keeps its old values. A new buffer is zeros (across the pool from 32K values on) for
//!   both, except that a new stale one is NaN in debug builds, so that the test suites
//!   catch an op that reads a value it did not write.

mod budget;
mod host;
mod scratch;
pub mod system;

use serde::Serialize;

use crate::error::Result;

pub use budget::Budget;
pub use host::HostPool;
pub use scratch::Scratch;
pub use system::{BlockReport, CachingAlloc};

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

impl Usage {
    /// Its place in a pool's per-usage counters: tape 0, scratch 1.
    pub(crate) fn index(self) -> usize {
        match self {
            Usage::Tape => 0,
            Usage::Scratch => 1,
        }
    }
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
    /// The most bytes the pool keeps idle (`u64::MAX` where it sets no limit: a GPU's pool
    /// keeps what it is given until [`release`](BufferPool::release)).
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
/// keep at most their budget in idle buffers, and never hand one buffer out twice: the CPU's
/// [`HostPool`] over `Vec<f32>`, and each GPU device over its device buffers
/// (`tensor::gpu::GpuDevice`, where `gpu` is built).
pub trait BufferPool: Send + Sync {
    /// The buffer handed out: `Vec<f32>` on the CPU, a device buffer on a GPU.
    type Buffer;

    /// A buffer of exactly `len` f32 values for `usage`, its values as `fill` says: a kept
    /// one when the policy finds one, else a new one. Fails only where the device cannot
    /// make a new one (a GPU out of memory, or `len` past its largest buffer), naming the
    /// device; the CPU's never fails (a `Vec` that cannot be allocated aborts, as anywhere).
    fn take(&self, len: usize, fill: Fill, usage: Usage) -> Result<Self::Buffer>;

    /// Takes `buf` back for a later [`take`](BufferPool::take), or frees it (too small to be
    /// worth keeping, or beyond the budget).
    fn give(&self, buf: Self::Buffer);

    /// What the pool keeps and has done.
    fn report(&self) -> PoolReport;

    /// Frees every kept buffer (e.g. after training, before other work); counters stay.
    fn release(&self);
}

/// The process's budget: bytes kept idle by the CPU pool and the allocator's blocks together.
static BUDGET: Budget = Budget::new(budget::DEFAULT_BUDGET);

/// The process's CPU pool: every tape buffer and kernel temporary comes from it.
static HOST: HostPool = HostPool::new(&BUDGET);

/// The process's CPU pool.
pub fn host_pool() -> &'static HostPool {
    &HOST
}

/// The CPU's memory layer at a glance: the budget, what is kept under it, the pool's and the
/// allocator's counters. `convlm bench` prints it as its `"memory"` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    /// The most bytes kept idle by the pool and the blocks together.
    pub budget_bytes: u64,
    /// Bytes kept idle now, pool and blocks.
    pub kept_bytes: u64,
    /// The most bytes kept idle at once, pool and blocks.
    pub kept_peak_bytes: u64,
    /// The CPU pool: tape values, gradients and kernel temporaries.
    pub pool: PoolReport,
    /// The allocator's blocks (other crates' large temporaries; zeros without [`CachingAlloc`]).
    pub blocks: BlockReport,
}

/// What the CPU's memory layer keeps and has done.
pub fn report() -> MemoryReport {
    MemoryReport {
        budget_bytes: BUDGET.limit() as u64,
        kept_bytes: BUDGET.kept() as u64,
        kept_peak_bytes: BUDGET.peak() as u64,
        pool: HOST.report(),
        blocks: system::report(),
    }
}

/// Frees every buffer and block kept for reuse (e.g. after training, before other work).
pub fn release() {
    HOST.release();
    system::release();
}

/// Sets the most bytes kept idle (default 1 GiB), freeing the pool's oldest buffers, then
/// the allocator's blocks, beyond it.
pub fn set_budget(bytes: usize) {
    BUDGET.set_limit(bytes);
    HOST.trim();
    if BUDGET.over() {
        system::release();
    }
}

/// A tape buffer of `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    HOST.take_vec(len, Fill::Zeros, Usage::Tape)
}

/// A tape buffer of `len` UNSPECIFIED values: only for a caller that overwrites every value
/// before reading any.
pub(crate) fn stale(len: usize) -> Vec<f32> {
    HOST.take_vec(len, Fill::Stale, Usage::Tape)
}

/// A copy of `a` in a tape buffer (large ones copied across the thread pool).
pub(crate) fn copied(a: &[f32]) -> Vec<f32> {
    if a.len() < host::MIN_KEPT {
        return a.to_vec();
    }
    let mut out = stale(a.len()); // every value written below
    host::copy_into(&mut out, a);
    out
}

/// Gives a tape buffer back to the CPU pool.
pub(crate) fn give(buf: Vec<f32>) {
    HOST.give(buf);
}

#[cfg(test)]
mod tests;
