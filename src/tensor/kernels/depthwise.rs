//! Depthwise 1-D convolution (groups = C_in = C_out, stride 1): one K-tap filter per
//! channel, forward and backward, over channels-last rows.
//!
//! As a grouped conv this was one tiny GEMM per tap, group and batch item (`tap_gemm`): at
//! Hyena's short conv (B = 4, T = 1024, C = 384, K = 3) 4,608 products of a column by a
//! scalar, each packed like a real GEMM, ~20% of a W4 training step. Here every inner loop
//! runs over the contiguous channels of one row: `out[b, t] = bias + Σ_j w[:, j] ⊙ x[b, t +
//! j·d − pad]`, with the taps transposed to (K, C) once per call. Rows are split into blocks
//! across the pool; the weight and bias gradients sum per block in a fixed order, so the
//! result does not depend on the thread count.

use rayon::prelude::*;

use crate::tensor::cpu::{avx2_fma, simd_fn};

/// Rows per parallel task.
const ROWS: usize = 64;

/// The geometry of one depthwise convolution call.
#[derive(Clone, Copy, Debug)]
pub(super) struct Depthwise {
    /// Input rows per item.
    pub len: usize,
    /// Output rows per item.
    pub t_out: usize,
    /// C: channels in = channels out.
    pub ch: usize,
    /// K: taps.
    pub k: usize,
    pub dilation: usize,
    pub pad_left: usize,
}

impl Depthwise {
    /// Input row read by output row `t` through tap `j`, or `None` in the padding.
    #[inline(always)]
    fn src(&self, t: usize, j: usize) -> Option<usize> {
        (t + j * self.dilation).checked_sub(self.pad_left).filter(|&s| s < self.len)
    }

    /// Output row that reads input row `s` through tap `j`, or `None`.
    #[inline(always)]
    fn dst(&self, s: usize, j: usize) -> Option<usize> {
        (s + self.pad_left).checked_sub(j * self.dilation).filter(|&t| t < self.t_out)
    }

    /// The weight (C, 1, K) as (K, C) rows.
    fn taps(&self, weight: &[f32]) -> Vec<f32> {
        let mut wt = vec![0.0f32; self.k * self.ch]; // (K, C)
        for (c, w) in weight.chunks_exact(self.k).enumerate() {
            for (j, &v) in w.iter().enumerate() {
                wt[j * self.ch + c] = v;
            }
        }
        wt
    }
}

/// `acc[i] += a[i]·b[i]`.
#[inline(always)]
fn mul_add_row(acc: &mut [f32], a: &[f32], b: &[f32]) {
    acc.iter_mut().zip(a.iter().zip(b)).for_each(|(s, (&p, &q))| *s += p * q);
}

/// Forward: overwrites `out` (B, T_out, C) with `bias + Σ_j w[:, j] ⊙ x[b, t + j·d − pad]`.
pub(super) fn forward(dw: &Depthwise, x: &[f32], weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let ch = dw.ch;
    if ch == 0 || dw.t_out == 0 {
        return;
    }
    let wt = dw.taps(weight); // (K, C)
    let simd = avx2_fma();
    out.par_chunks_mut(ROWS * ch).enumerate().for_each(|(blk, dst)| forward_rows(simd, dw, blk, dst, &wt, x, bias));
}

simd_fn! {
    /// Output rows of block `blk` (`dst`, ROWS rows or fewer) of [`forward`].
    fn forward_rows(simd: Option<Avx2Fma>, dw: &Depthwise, blk: usize, dst: &mut [f32], wt: &[f32], x: &[f32], bias: Option<&[f32]>) {
        let ch = dw.ch;
        for (r, orow) in dst.chunks_exact_mut(ch).enumerate() {
            let (b, t) = ((blk * ROWS + r) / dw.t_out, (blk * ROWS + r) % dw.t_out);
            match bias {
                Some(bias) => orow.copy_from_slice(bias),
                None => orow.fill(0.0),
            }
            for (j, wrow) in wt.chunks_exact(ch).enumerate() {
                if let Some(s) = dw.src(t, j) {
                    mul_add_row(orow, wrow, &x[(b * dw.len + s) * ch..][..ch]);
                }
            }
        }
    }
}

simd_fn! {
    /// Rows of block `blk` (`dst`) of the input gradient in [`backward`].
    fn grad_x_rows(simd: Option<Avx2Fma>, dw: &Depthwise, blk: usize, dst: &mut [f32], wt: &[f32], grad_out: &[f32]) {
        let ch = dw.ch;
        for (r, grow) in dst.chunks_exact_mut(ch).enumerate() {
            let (b, s) = ((blk * ROWS + r) / dw.len, (blk * ROWS + r) % dw.len);
            for (j, wrow) in wt.chunks_exact(ch).enumerate() {
                if let Some(t) = dw.dst(s, j) {
                    mul_add_row(grow, wrow, &grad_out[(b * dw.t_out + t) * ch..][..ch]);
                }
            }
        }
    }
}

simd_fn! {
    /// `acc` (K + 1, C) += the taps' and the bias's sums over the output rows of block
    /// `blk` (`rows` of the output gradient) in [`backward`].
    fn weight_sums(simd: Option<Avx2Fma>, dw: &Depthwise, blk: usize, rows: &[f32], x: &[f32], acc: &mut [f32]) {
        let ch = dw.ch;
        let (taps, bias) = acc.split_at_mut(dw.k * ch);
        for (r, grow) in rows.chunks_exact(ch).enumerate() {
            let (b, t) = ((blk * ROWS + r) / dw.t_out, (blk * ROWS + r) % dw.t_out);
            bias.iter_mut().zip(grow).for_each(|(a, &g)| *a += g);
            for (j, arow) in taps.chunks_exact_mut(ch).enumerate() {
                if let Some(s) = dw.src(t, j) {
                    mul_add_row(arow, grow, &x[(b * dw.len + s) * ch..][..ch]);
                }
            }
        }
    }
}

/// Backward: ADDS the gradients with respect to x (B, T, C), the weight (C, 1, K) and the
/// bias (C) into whichever buffers are given.
pub(super) fn backward(
    dw: &Depthwise,
    x: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_w: Option<&mut [f32]>,
    grad_b: Option<&mut [f32]>,
) {
    let ch = dw.ch;
    if ch == 0 || dw.t_out == 0 || dw.len == 0 {
        return;
    }
    let simd = avx2_fma();
    if let Some(gx) = grad_x {
        let wt = dw.taps(weight); // (K, C)
        gx.par_chunks_mut(ROWS * ch).enumerate().for_each(|(blk, dst)| grad_x_rows(simd, dw, blk, dst, &wt, grad_out));
    }
    if grad_w.is_none() && grad_b.is_none() {
        return;
    }
    // Per block of output rows: (K + 1, C) sums, the taps' then the bias's.
    let partials: Vec<Vec<f32>> = grad_out
        .par_chunks(ROWS * ch)
        .enumerate()
        .map(|(blk, rows)| {
            let mut acc = vec![0.0f32; (dw.k + 1) * ch];
            weight_sums(simd, dw, blk, rows, x, &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0f32; (dw.k + 1) * ch];
    for p in &partials {
        total.iter_mut().zip(p).for_each(|(a, v)| *a += v);
    }
    if let Some(gw) = grad_w {
        for (c, w) in gw.chunks_exact_mut(dw.k).enumerate() {
            for (j, g) in w.iter_mut().enumerate() {
                *g += total[j * ch + c];
            }
        }
    }
    if let Some(gb) = grad_b {
        gb.iter_mut().zip(&total[dw.k * ch..]).for_each(|(g, v)| *g += v);
    }
}
