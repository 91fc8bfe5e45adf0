//! Reusable buffers for kernel temporaries that are written in full before they are read:
//! packed weights, explicit columns, GEMM outputs that start from zero, the fused head's
//! logits. A fresh `vec![0.0; n]` zero-fills `n` values only for the kernel to overwrite
//! them (W1's step did so for ~50 MB, W2's zero-fills took 8% of its time), and without a
//! caching allocator it page-faults them in as well. A [`Scratch`] takes a buffer that an
//! earlier kernel gave back, stale values and all, and gives it back when dropped.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

/// Buffers kept for reuse; a full pool keeps the largest ones (see [`Pool::give`]).
const POOL_SLOTS: usize = 12;

/// Buffers given back, for the next [`Scratch`].
struct Pool {
    bufs: Mutex<Vec<Vec<f32>>>,
    slots: usize,
}

impl Pool {
    const fn new(slots: usize) -> Self {
        Pool { bufs: Mutex::new(Vec::new()), slots }
    }

    /// The smallest kept buffer that holds `len` values (best fit: a W1 step's 82 MB
    /// logits buffer is not spent on a 6 MB request), or an empty one.
    fn take(&self, len: usize) -> Vec<f32> {
        let mut bufs = self.bufs.lock().unwrap_or_else(PoisonError::into_inner);
        let best = (0..bufs.len()).filter(|&i| bufs[i].capacity() >= len).min_by_key(|&i| bufs[i].capacity());
        best.map(|i| bufs.swap_remove(i)).unwrap_or_default()
    }

    /// Keeps `buf`; a full pool frees its smallest buffer instead (`buf` itself when that
    /// is the smallest), so the large buffers that are costly to fill stay, whatever mix
    /// of small ones passed through before.
    fn give(&self, buf: Vec<f32>) {
        if buf.capacity() == 0 || self.slots == 0 {
            return;
        }
        let mut bufs = self.bufs.lock().unwrap_or_else(PoisonError::into_inner);
        if bufs.len() < self.slots {
            bufs.push(buf);
        } else if let Some(smallest) = bufs.iter_mut().min_by_key(|b| b.capacity()).filter(|b| b.capacity() < buf.capacity()) {
            *smallest = buf;
        }
    }
}

static SHARED: Pool = Pool::new(POOL_SLOTS);

/// A buffer of `len` values with UNSPECIFIED contents (values left by an earlier use, or
/// zeros): for outputs that are written in full before they are read. Derefs to `[f32]`
/// and goes back to a shared pool when dropped.
pub struct Scratch {
    buf: Vec<f32>,
    pool: &'static Pool,
}

impl Scratch {
    /// A buffer of `len` values: the smallest pooled one that holds them, else a new one.
    pub fn new(len: usize) -> Self {
        Self::from_pool(&SHARED, len)
    }

    fn from_pool(pool: &'static Pool, len: usize) -> Self {
        let mut buf = pool.take(len);
        // Shrinking keeps the values; growing (a new buffer) writes zeros once.
        buf.resize(len, 0.0);
        Scratch { buf, pool }
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_best_fit_with_their_values_and_a_full_pool_keeps_the_largest() {
        static POOL: Pool = Pool::new(2);
        let (small, big) = {
            let (mut a, mut b) = (Scratch::from_pool(&POOL, 100), Scratch::from_pool(&POOL, 1000));
            a.fill(1.0);
            b.fill(7.0);
            (a.as_ptr() as usize, b.as_ptr() as usize)
        };
        // 600 values fit only the 1000-value buffer; it comes back shortened, values kept.
        let mid = Scratch::from_pool(&POOL, 600);
        assert_eq!((mid.as_ptr() as usize, mid.len()), (big, 600));
        assert!(mid.iter().all(|&v| v == 7.0));
        // 50 values: best fit is the 100-value buffer.
        let tiny = Scratch::from_pool(&POOL, 50);
        assert_eq!((tiny.as_ptr() as usize, tiny.len()), (small, 50));
        // Nothing left that fits: a new, zeroed buffer.
        let fresh = Scratch::from_pool(&POOL, 2000);
        assert!(fresh.len() == 2000 && fresh.iter().all(|&v| v == 0.0));
        // Three buffers back into two slots: the smallest (100 values) is the one freed.
        drop((mid, tiny, fresh));
        let mut kept: Vec<usize> = POOL.bufs.lock().unwrap().iter().map(Vec::capacity).collect();
        kept.sort();
        assert_eq!(kept, [1000, 2000]);
    }
}
