//! Direct summation, O(T²) per column: register tiles of [`ROWS`] rows × 16 channels over
//! channels-last rows, every inner loop over contiguous channels.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;

use super::{add_transposed_taps, transposed_taps, LongConvShape, LANES, ROWS};
use crate::tensor::cpu::{avx2_fma, Avx2Fma};
use crate::tensor::memory::Scratch;

pub(super) fn forward_direct(shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out: &mut [f32]) {
    let kt = transposed_taps(k, shape); // (T, C)
    let simd = avx2_fma();
    let (t_len, cc) = (shape.len, shape.channels);
    out.par_chunks_mut(t_len * cc).zip(u.par_chunks(t_len * cc)).for_each(|(out_b, u_b)| {
        let taps = Taps { src: u_b, kt: &kt, d, cc, len: t_len };
        out_b.par_chunks_mut(ROWS * cc).enumerate().for_each(|(i, dst)| taps.rows::<true>(simd, i * ROWS, dst, false));
    });
}

pub(super) fn grad_u_direct(shape: &LongConvShape, kt: &[f32], d: &[f32], gy: &[f32], gu: &mut [f32]) {
    let simd = avx2_fma();
    let (t_len, cc) = (shape.len, shape.channels);
    gu.par_chunks_mut(t_len * cc).zip(gy.par_chunks(t_len * cc)).for_each(|(gu_b, gy_b)| {
        let taps = Taps { src: gy_b, kt, d, cc, len: t_len };
        gu_b.par_chunks_mut(ROWS * cc).enumerate().for_each(|(i, dst)| taps.rows::<false>(simd, i * ROWS, dst, true));
    });
}

pub(super) fn grad_k_direct(shape: &LongConvShape, u: &[f32], gy: &[f32], gk: &mut [f32]) {
    let simd = avx2_fma();
    let (t_len, cc) = (shape.len, shape.channels);
    let lags = Lags { u, gy, batch: shape.batch, cc, len: t_len };
    let mut gkt = Scratch::new(t_len * cc); // (T, C): gkt[j, c] = gk[c, j]
    gkt.par_chunks_mut(ROWS * cc).enumerate().for_each(|(i, dst)| lags.rows(simd, i * ROWS, dst));
    add_transposed_taps(&gkt, shape, gk);
}

#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `acc += a ⊙ x` over the first `W` values of `a` and `x`.
#[inline(always)]
fn axpy<const W: usize, const FMA: bool>(acc: &mut [f32; W], a: &[f32], x: &[f32]) {
    for ((s, &p), &q) in acc.iter_mut().zip(&a[..W]).zip(&x[..W]) {
        *s = fmadd::<FMA>(p, q, *s);
    }
}

/// One batch item's rows for the direct convolution (`CAUSAL`) or correlation (not).
pub(super) struct Taps<'a> {
    /// (T, C): u for the forward, grad_out for grad_u.
    pub(super) src: &'a [f32],
    /// (T, C): the filters' taps, `kt[j, c] = k[c, j]`.
    pub(super) kt: &'a [f32],
    pub(super) d: &'a [f32],
    pub(super) cc: usize,
    pub(super) len: usize,
}

impl Taps<'_> {
    /// Output rows `t0..` (as many as `dst` holds, ≤ [`ROWS`]) over all channels:
    /// `dst[r] (=, or += when accumulate) d ⊙ src[t0+r] + Σ_j kt[j] ⊙ src[t0+r ∓ j]`, with
    /// `−` and `j ≤ t0+r` when `CAUSAL`, `+` and `t0+r+j < T` otherwise.
    pub(super) fn rows<const CAUSAL: bool>(&self, simd: Option<Avx2Fma>, t0: usize, dst: &mut [f32], accumulate: bool) {
        #[cfg(target_arch = "x86_64")]
        if simd.is_some() {
            // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA.
            return unsafe { avx2::taps_rows::<CAUSAL>(self, t0, dst, accumulate) };
        }
        let _ = simd;
        let rows = dst.len() / self.cc;
        if rows == ROWS {
            self.row_tile::<CAUSAL, ROWS>(t0, dst, accumulate);
        } else {
            for (r, row) in dst.chunks_exact_mut(self.cc).enumerate() {
                self.row_tile::<CAUSAL, 1>(t0 + r, row, accumulate);
            }
        }
    }

    /// `R` rows from `t0`, channel tile by channel tile (portable build).
    fn row_tile<const CAUSAL: bool, const R: usize>(&self, t0: usize, dst: &mut [f32], accumulate: bool) {
        let mut c = 0;
        while c + LANES <= self.cc {
            self.tile::<CAUSAL, R, LANES, false>(t0, c, dst, accumulate);
            c += LANES;
        }
        while c < self.cc {
            self.tile::<CAUSAL, R, 1, false>(t0, c, dst, accumulate);
            c += 1;
        }
    }

    /// Rows `t0..t0+R`, channels `c..c+W`, accumulated in registers.
    #[inline(always)]
    pub(super) fn tile<const CAUSAL: bool, const R: usize, const W: usize, const FMA: bool>(&self, t0: usize, c: usize, dst: &mut [f32], accumulate: bool) {
        let (src, kt, cc) = (self.src, self.kt, self.cc);
        let dw = &self.d[c..c + W];
        let mut acc = [[0.0f32; W]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            let s = &src[(t0 + r) * cc + c..][..W];
            let o = &dst[r * cc + c..][..W];
            for (w, v) in a.iter_mut().enumerate() {
                *v = if accumulate { fmadd::<FMA>(dw[w], s[w], o[w]) } else { dw[w] * s[w] };
            }
        }
        if CAUSAL {
            // Taps every row of the tile has (j ≤ t0), then the tile's triangle.
            for j in 0..=t0 {
                let kv = &kt[j * cc + c..][..W];
                for (r, a) in acc.iter_mut().enumerate() {
                    axpy::<W, FMA>(a, kv, &src[(t0 + r - j) * cc + c..]);
                }
            }
            for j in t0 + 1..t0 + R {
                let kv = &kt[j * cc + c..][..W];
                for (r, a) in acc.iter_mut().enumerate().skip(j - t0) {
                    axpy::<W, FMA>(a, kv, &src[(t0 + r - j) * cc + c..]);
                }
            }
        } else {
            // Taps every row has (t0 + R − 1 + j < T), then the tile's triangle.
            let full = self.len + 1 - (t0 + R);
            for j in 0..full {
                let kv = &kt[j * cc + c..][..W];
                for (r, a) in acc.iter_mut().enumerate() {
                    axpy::<W, FMA>(a, kv, &src[(t0 + r + j) * cc + c..]);
                }
            }
            for j in full..self.len - t0 {
                let kv = &kt[j * cc + c..][..W];
                for (r, a) in acc.iter_mut().enumerate().take(self.len - t0 - j) {
                    axpy::<W, FMA>(a, kv, &src[(t0 + r + j) * cc + c..]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            dst[r * cc + c..][..W].copy_from_slice(a);
        }
    }
}

/// The filter gradient's lag rows by direct summation over the batch.
pub(super) struct Lags<'a> {
    /// (B, T, C)
    pub(super) u: &'a [f32],
    /// (B, T, C)
    pub(super) gy: &'a [f32],
    pub(super) batch: usize,
    pub(super) cc: usize,
    pub(super) len: usize,
}

impl Lags<'_> {
    /// Lags `j0..` (as many as `dst` holds, ≤ [`ROWS`]) over all channels, overwriting
    /// `dst`: `dst[r] = Σ_b Σ_{t ≥ j0+r} gy[b, t] ⊙ u[b, t − j0 − r]`.
    pub(super) fn rows(&self, simd: Option<Avx2Fma>, j0: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if simd.is_some() {
            // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA.
            return unsafe { avx2::lag_rows(self, j0, dst) };
        }
        let _ = simd;
        let rows = dst.len() / self.cc;
        if rows == ROWS {
            self.row_tile::<ROWS>(j0, dst);
        } else {
            for (r, row) in dst.chunks_exact_mut(self.cc).enumerate() {
                self.row_tile::<1>(j0 + r, row);
            }
        }
    }

    /// `R` lags from `j0`, channel tile by channel tile (portable build).
    fn row_tile<const R: usize>(&self, j0: usize, dst: &mut [f32]) {
        let mut c = 0;
        while c + LANES <= self.cc {
            self.tile::<R, LANES, false>(j0, c, dst);
            c += LANES;
        }
        while c < self.cc {
            self.tile::<R, 1, false>(j0, c, dst);
            c += 1;
        }
    }

    /// Lags `j0..j0+R`, channels `c..c+W`, accumulated in registers over the batch.
    #[inline(always)]
    pub(super) fn tile<const R: usize, const W: usize, const FMA: bool>(&self, j0: usize, c: usize, dst: &mut [f32]) {
        let (cc, len) = (self.cc, self.len);
        let mut acc = [[0.0f32; W]; R];
        for b in 0..self.batch {
            let u = &self.u[b * len * cc..][..len * cc]; // (T, C)
            let gy = &self.gy[b * len * cc..][..len * cc]; // (T, C)
                                                           // The tile's triangle (times that reach only its first lags), then the rest.
            for t in j0..(j0 + R - 1).min(len) {
                let g = &gy[t * cc + c..][..W];
                for (r, a) in acc.iter_mut().enumerate().take(t - j0 + 1) {
                    axpy::<W, FMA>(a, g, &u[(t - j0 - r) * cc + c..]);
                }
            }
            for t in j0 + R - 1..len {
                let g = &gy[t * cc + c..][..W];
                for (r, a) in acc.iter_mut().enumerate() {
                    axpy::<W, FMA>(a, g, &u[(t - j0 - r) * cc + c..]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            dst[r * cc + c..][..W].copy_from_slice(a);
        }
    }
}
