//! Large f32 buffers for tape values and gradients: zero-filled across the pool, or reused
//! with their old contents by ops that overwrite every value.
//!
//! A training step allocates the same large buffers every step (a W4 step: ~280 of at least
//! 128 KiB). Zero-filling them had been ~7% of the step on one thread, then ~5% across the
//! pool; most are written in full right away (GEMM outputs, activations, normalised rows,
//! fresh gradients), so a dropped [`Graph`](super::Graph) hands its buffers here and the next
//! step's ops take them back ([`stale`]) without filling them at all.

use std::collections::VecDeque;
use std::sync::Mutex;

use rayon::prelude::*;

/// Values from which a buffer is filled across the pool, and kept for reuse.
const LARGE: usize = 1 << 15;
/// At most this many bytes wait for reuse (the buffers of about two W4 steps).
const MAX_BYTES: usize = 1 << 30;
/// At most this many buffers wait for reuse.
const MAX_BUFFERS: usize = 1024;

/// Kept buffers, oldest first.
struct Kept {
    buffers: VecDeque<Vec<f32>>,
    bytes: usize,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept { buffers: VecDeque::new(), bytes: 0 });

/// A kept buffer of exactly `n` values, if any.
fn take(n: usize) -> Option<Vec<f32>> {
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let i = kept.buffers.iter().rposition(|b| b.len() == n)?; // the most recent
    let v = kept.buffers.remove(i)?;
    kept.bytes -= v.capacity() * 4;
    Some(v)
}

/// `n` zeros. Large buffers are written by the pool's threads instead of one `memset` on the
/// allocating thread while the others wait (a kept buffer when one fits).
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    if n < LARGE {
        return vec![0.0; n];
    }
    if let Some(mut v) = take(n) {
        v.par_chunks_mut(1 << 14).for_each(|c| c.fill(0.0));
        return v;
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0.0f32, n));
    v
}

/// A buffer of `n` values whose contents are unspecified (a recycled buffer's old values, or
/// zeros): only for callers that overwrite every value before reading any.
pub(crate) fn stale(n: usize) -> Vec<f32> {
    if n >= LARGE {
        if let Some(v) = take(n) {
            return v;
        }
    }
    zeroed(n)
}

/// Keeps a large buffer for [`stale`] and [`zeroed`] (small ones are freed; beyond the
/// limits the oldest kept ones are freed, so lengths no longer asked for leave).
pub(crate) fn recycle(v: Vec<f32>) {
    let bytes = v.capacity() * 4;
    if v.len() < LARGE || bytes > MAX_BYTES {
        return;
    }
    let evicted: Vec<Vec<f32>> = {
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        while kept.buffers.len() >= MAX_BUFFERS || kept.bytes + bytes > MAX_BYTES {
            let Some(old) = kept.buffers.pop_front() else { break };
            kept.bytes -= old.capacity() * 4;
            out.push(old);
        }
        kept.bytes += bytes;
        kept.buffers.push_back(v);
        out
    };
    drop(evicted); // freed outside the lock
}

/// A copy of `a`: large ones into a kept buffer, across the pool.
pub(crate) fn copied(a: &[f32]) -> Vec<f32> {
    if a.len() < LARGE {
        return a.to_vec();
    }
    let mut out = stale(a.len()); // every value written below
    out.par_chunks_mut(1 << 14).zip(a.par_chunks(1 << 14)).for_each(|(o, a)| o.copy_from_slice(a));
    out
}

/// Frees every buffer kept for reuse (e.g. after training, before other work).
pub fn release_buffers() {
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    kept.buffers = VecDeque::new();
    kept.bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_is_zero_and_stale_reuses_a_recycled_buffer_of_the_same_length() {
        for n in [0, 5, LARGE, 3 * LARGE + 7] {
            assert!(zeroed(n).len() == n && zeroed(n).iter().all(|&v| v == 0.0));
        }
        let n = 2 * LARGE + 13; // a length no other test uses
        recycle(vec![7.0; n]);
        let v = stale(n);
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|&x| x == 7.0), "the recycled buffer comes back as it was");
        let w = stale(n);
        assert!(w.iter().all(|&x| x == 0.0), "none kept: a fresh zeroed buffer");
        recycle(vec![1.0; 10]); // too small to keep
    }

    /// Every op that takes a stale buffer overwrites it: with the pool full of NaN buffers of
    /// every length a forward and backward use, the loss and every gradient come out bit for
    /// bit as with fresh buffers.
    #[test]
    fn ops_that_take_stale_buffers_overwrite_every_value() {
        use crate::tensor::{Activation, Conv1dSpec, Graph, Padding, Tensor};
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (b, t, c) = (2, 128, 136); // B·T·C = 34,816 ≥ LARGE
        let inputs = [
            Tensor::randn(vec![b, t, c], 1.0, &mut rng),
            Tensor::randn(vec![2 * c, c], 0.1, &mut rng),
            Tensor::randn(vec![2 * c], 0.1, &mut rng),
            Tensor::randn(vec![c, 1, 3], 0.5, &mut rng),
            Tensor::randn(vec![c, t], 0.1, &mut rng),
            Tensor::randn(vec![c], 1.0, &mut rng),
            Tensor::randn(vec![50, 2 * c], 1.0, &mut rng),
        ];
        let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % 50) as u32).collect();
        let run = || {
            let mut g = Graph::new(true);
            let v: Vec<_> = inputs.iter().map(|x| g.leaf(x.clone())).collect();
            let emb = g.embedding(v[6], &ids, &[b, t]).unwrap(); // (B, T, 2C)
            let h = g.linear(v[0], v[1], Some(v[2])).unwrap(); // (B, T, 2C)
            let h = g.add(h, emb).unwrap();
            let h = g.activation(h, Activation::Gelu);
            let (h0, h1) = (g.slice(h, 2, 0, c).unwrap(), g.slice(h, 2, c, 2 * c).unwrap());
            let h = g.mul(h0, h1).unwrap(); // (B, T, C)
            let spec = Conv1dSpec { in_channels: c, out_channels: c, kernel_size: 3, stride: 1, padding: Padding::causal(3, 1), dilation: 1, groups: c };
            let h = g.conv1d(h, v[3], None, &spec).unwrap();
            let h = g.layernorm(h, v[5], v[5], 1e-5).unwrap();
            let kt = g.transpose_last2(v[4]).unwrap();
            let k = g.transpose_last2(kt).unwrap();
            let h = g.long_conv(h, k, v[5]).unwrap();
            let h = g.activation(h, Activation::Tanh);
            let weights: Vec<f32> = (0..b * t * c).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
            let loss = g.weighted_sum(h, &weights).unwrap();
            g.backward(loss).unwrap();
            let mut out = vec![g.value(loss).data().to_vec()];
            out.extend(v.iter().map(|&x| g.grad(x).map(<[f32]>::to_vec).unwrap_or_default()));
            out
        };
        let clean = run();
        // Every large buffer above is (B, T, C) or (B, T, 2C).
        for n in [b * t * c, b * t * 2 * c] {
            for _ in 0..12 {
                recycle(vec![f32::NAN; n]);
            }
        }
        let dirty = run();
        for (i, (a, b)) in clean.iter().zip(&dirty).enumerate() {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "output {i} differs on stale buffers");
        }
    }
}
