//! Differentiable ops recorded on a [`Graph`](super::Graph). Each file adds methods to
//! `Graph` for one group of ops; all activations are channels-last.

pub(crate) mod activation;
mod conv;
mod gate;
pub(crate) mod linear;
mod long_conv;
pub(crate) mod loss;
pub(crate) mod mlp;
pub(crate) mod norm;
mod shape;

use rayon::prelude::*;

use crate::tensor::memory::stale;

/// Element count above which elementwise loops are split across the rayon pool.
const PAR_THRESHOLD: usize = 1 << 15;

/// `f(a[i], b[i])` for every `i`, as a new buffer written across the pool for large inputs
/// (no zero fill, no copy first).
pub(crate) fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    let n = a.len().min(b.len());
    let mut out = stale(n); // every value written below
    put_zip(&mut out, true, &a[..n], &b[..n], f);
    out
}

pub(crate) use crate::tensor::memory::copied as copy_of;

/// `f(out_chunk, a_chunk)` over matching chunks of `out` and `a`, in parallel for large
/// inputs (for kernels that work on a whole slice at a time).
pub(crate) fn map_slices(out: &mut [f32], a: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(4096).zip(a.par_chunks(4096)).for_each(|(o, a)| f(o, a));
    } else {
        f(out, a);
    }
}

/// `f(acc_chunk, a_chunk, b_chunk)` over matching chunks of three equal-length slices, in
/// parallel for large inputs (for kernels that work on a whole slice at a time).
pub(crate) fn zip3_slices(acc: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync) {
    if acc.len() >= PAR_THRESHOLD {
        acc.par_chunks_mut(4096).zip(a.par_chunks(4096).zip(b.par_chunks(4096))).for_each(|(o, (a, b))| f(o, a, b));
    } else {
        f(acc, a, b);
    }
}

/// `out[i] = f(a[i], b[i])` when `fresh` (a gradient buffer just handed out by
/// `GradCtx::grad_or_fresh`, to be overwritten), else `out[i] += f(a[i], b[i])`; in
/// parallel for large inputs.
pub(crate) fn put_zip(out: &mut [f32], fresh: bool, a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    if !fresh {
        return acc_zip(out, a, b, f);
    }
    let put = |o: &mut [f32], a: &[f32], b: &[f32]| o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = f(a, b));
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(4096).zip(a.par_chunks(4096).zip(b.par_chunks(4096))).for_each(|(o, (a, b))| put(o, a, b));
    } else {
        put(out, a, b);
    }
}

/// `acc[i] += f(a[i], b[i])`, in parallel for large inputs.
pub(crate) fn acc_zip(acc: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    if acc.len() >= PAR_THRESHOLD {
        acc.par_chunks_mut(4096)
            .zip(a.par_chunks(4096).zip(b.par_chunks(4096)))
            .for_each(|(o, (a, b))| o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o += f(a, b)));
    } else {
        acc.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o += f(a, b));
    }
}
