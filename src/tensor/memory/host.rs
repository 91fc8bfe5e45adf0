//! The CPU's [`BufferPool`]: idle `Vec<f32>` buffers by capacity, best fit, the least
//! recently given back evicted first (the policy is in the module's doc).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use super::budget::Budget;
use super::system::bypassing;
use super::{BufferPool, Counts, Fill, PoolReport, Usage};
use crate::error::Result;

/// Buffers with fewer values are not kept: `malloc` and a fill cost about as little.
pub(super) const MIN_KEPT: usize = 1 << 10;
/// From this many values on, fills and copies run across the thread pool.
pub(super) const PAR_FILL: usize = 1 << 15;
/// Values per task of a fill or copy across the pool.
const PAR_CHUNK: usize = 1 << 14;
/// At most this many buffers are kept, whatever their size.
const MAX_KEPT: usize = 4096;

/// Idle buffers and the pool's counters, behind one lock.
struct Kept {
    /// Idle buffers by (capacity, age): the first at or above a length is the best fit. The
    /// age counts down from `u64::MAX` as buffers are given back, so among equal capacities
    /// the most recent comes first, and the largest age is the oldest (evicted first).
    by_size: BTreeMap<(usize, u64), Vec<f32>>,
    /// The age of the next buffer given back.
    next_age: u64,
    /// Bytes kept by this pool (the budget also counts the allocator's blocks).
    bytes: usize,
    peak: usize,
    evicted: u64,
    /// Per [`Usage`], in the order of [`Usage::index`].
    counts: [Counts; 2],
}

/// The CPU pool: see the module's doc for what it keeps and evicts.
pub struct HostPool {
    kept: Mutex<Kept>,
    budget: &'static Budget,
}

fn bytes_of(capacity: usize) -> usize {
    capacity * std::mem::size_of::<f32>()
}

impl HostPool {
    /// An empty pool keeping what `budget` allows (which other stores may share).
    pub const fn new(budget: &'static Budget) -> Self {
        HostPool {
            kept: Mutex::new(Kept {
                by_size: BTreeMap::new(),
                next_age: u64::MAX,
                bytes: 0,
                peak: 0,
                evicted: 0,
                counts: [Counts { hits: 0, misses: 0, fresh_bytes: 0 }; 2],
            }),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees the oldest kept buffers while the budget is exceeded (after it was lowered).
    pub(super) fn trim(&self) {
        let evicted = {
            let mut kept = self.lock();
            let mut out = Vec::new();
            while self.budget.over() {
                let Some(v) = kept.evict_oldest(self.budget) else { break };
                out.push(v);
            }
            out
        };
        bypassing(|| drop(evicted)); // freed outside the lock, back to the system
    }

    /// The kept buffer that best fits `len` values (the smallest whose capacity holds them,
    /// at most a quarter larger; the most recently given back among equals), out of the pool.
    fn take_kept(&self, len: usize, usage: Usage) -> Option<Vec<f32>> {
        let mut kept = self.lock();
        let most = len + len / 4;
        let found = kept.by_size.range((len, 0)..=(most, u64::MAX)).next().map(|(&key, _)| key);
        let counts = &mut kept.counts[usage.index()];
        let Some(key) = found else {
            counts.misses += 1;
            counts.fresh_bytes += bytes_of(len) as u64;
            return None;
        };
        counts.hits += 1;
        kept.bytes -= bytes_of(key.0);
        self.budget.unkeep(bytes_of(key.0));
        kept.by_size.remove(&key)
    }
}

#[cfg(test)]
impl HostPool {
    /// Sets every value of every kept buffer, to their capacity, to `value` (NaN: a test that
    /// every op overwrites what it takes).
    pub(super) fn poison(&self, value: f32) {
        for v in self.lock().by_size.values_mut() {
            v.clear();
            v.resize(v.capacity(), value);
        }
    }
}

impl Kept {
    /// The least recently given back buffer, out of the pool and the budget (to be freed
    /// once the lock is released); `None` when nothing is kept.
    fn evict_oldest(&mut self, budget: &Budget) -> Option<Vec<f32>> {
        // A scan: evictions are rare once a run's buffers are kept.
        let (capacity, age) = self.by_size.keys().copied().max_by_key(|&(_, age)| age)?;
        let v = self.by_size.remove(&(capacity, age))?;
        self.bytes -= bytes_of(capacity);
        self.evicted += bytes_of(capacity) as u64;
        budget.unkeep(bytes_of(capacity));
        Some(v)
    }
}

/// What a new [`Fill::Stale`] buffer holds: zeros, or in debug builds (the test suites) NaN,
/// so that an op reading a value it never wrote shows up in every test, not only after a
/// pool hit.
pub(super) const STALE_VALUE: f32 = if cfg!(debug_assertions) { f32::NAN } else { 0.0 };

/// A new buffer of `len` values as `fill` says: large ones written across the pool (not one
/// `memset` on the allocating thread while the others wait).
fn fresh(len: usize, fill: Fill) -> Vec<f32> {
    let value = if fill == Fill::Zeros { 0.0 } else { STALE_VALUE };
    if len < PAR_FILL {
        return vec![value; len];
    }
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(value, len));
    v
}

/// Writes zeros into `v`, across the pool when it is large.
fn fill_zeros(v: &mut [f32]) {
    if v.len() < PAR_FILL {
        v.fill(0.0);
    } else {
        v.par_chunks_mut(PAR_CHUNK).for_each(|c| c.fill(0.0));
    }
}

/// Copies `src` into `dst` (same length), across the pool when it is large.
pub(super) fn copy_into(dst: &mut [f32], src: &[f32]) {
    if src.len() < PAR_FILL {
        dst.copy_from_slice(src);
    } else {
        dst.par_chunks_mut(PAR_CHUNK).zip(src.par_chunks(PAR_CHUNK)).for_each(|(d, s)| d.copy_from_slice(s));
    }
}

impl HostPool {
    /// [`BufferPool::take`] without the `Result`: the CPU's take never fails.
    pub fn take_vec(&self, len: usize, fill: Fill, usage: Usage) -> Vec<f32> {
        if len < MIN_KEPT {
            return fresh(len, fill);
        }
        let Some(mut v) = self.take_kept(len, usage) else { return fresh(len, fill) };
        if v.len() >= len {
            v.truncate(len); // the old values stay
        } else {
            v.resize(len, STALE_VALUE); // within the capacity: no allocation
        }
        if fill == Fill::Zeros {
            fill_zeros(&mut v);
        }
        v
    }
}

impl BufferPool for HostPool {
    type Buffer = Vec<f32>;

    fn take(&self, len: usize, fill: Fill, usage: Usage) -> Result<Vec<f32>> {
        Ok(self.take_vec(len, fill, usage))
    }

    fn give(&self, buf: Vec<f32>) {
        let (capacity, bytes) = (buf.capacity(), bytes_of(buf.capacity()));
        if capacity < MIN_KEPT {
            return;
        }
        let mut freed = Vec::new();
        {
            let mut kept = self.lock();
            // Room for one buffer more in the count and `bytes` more in the budget, made by
            // evicting the oldest; a buffer that does not fit even then is freed itself.
            while kept.by_size.len() >= MAX_KEPT {
                freed.extend(kept.evict_oldest(self.budget));
            }
            let fits = loop {
                if self.budget.try_keep(bytes) {
                    break true;
                }
                match kept.evict_oldest(self.budget) {
                    Some(old) => freed.push(old),
                    None => break false,
                }
            };
            if fits {
                let age = kept.next_age;
                kept.next_age -= 1;
                kept.by_size.insert((capacity, age), buf);
                kept.bytes += bytes;
                kept.peak = kept.peak.max(kept.bytes);
            } else {
                kept.evicted += bytes as u64;
                freed.push(buf);
            }
        }
        bypassing(|| drop(freed)); // outside the lock, back to the system
    }

    fn report(&self) -> PoolReport {
        let kept = self.lock();
        PoolReport {
            device: "cpu".to_string(),
            budget_bytes: self.budget.limit() as u64,
            kept_bytes: kept.bytes as u64,
            kept_peak_bytes: kept.peak as u64,
            kept_buffers: kept.by_size.len() as u64,
            evicted_bytes: kept.evicted,
            tape: kept.counts[Usage::Tape.index()],
            scratch: kept.counts[Usage::Scratch.index()],
        }
    }

    fn release(&self) {
        let all = {
            let mut kept = self.lock();
            self.budget.unkeep(kept.bytes);
            kept.bytes = 0;
            std::mem::take(&mut kept.by_size)
        };
        bypassing(|| drop(all)); // outside the lock, back to the system
    }
}
