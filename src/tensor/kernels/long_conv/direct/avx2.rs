//! The direct kernels' AVX2 + FMA builds: register tiles of [`ROWS`] rows (or lags) × 16 or
//! 8 channels in `__m256` accumulators; channels past the last multiple of 8 take the
//! portable tile (with fused multiply-adds).
//!
//! Every function here is safe to call from code compiled with AVX2 and FMA (each other);
//! callers outside check the CPU with an `Avx2Fma` token first. All memory is reached through
//! bounds-checked slices; only `simd::load` and `simd::store` touch raw pointers.

use super::{Lags, Taps};
use crate::tensor::kernels::long_conv::simd::{load, store};
use crate::tensor::kernels::long_conv::ROWS;
use std::arch::x86_64::*;

/// `V` vectors from the start of `s`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load_v<const V: usize>(s: &[f32]) -> [__m256; V] {
    let s = &s[..8 * V];
    let mut x = [_mm256_setzero_ps(); V];
    for (v, x) in x.iter_mut().enumerate() {
        *x = load(&s[8 * v..]);
    }
    x
}

/// `acc += a ⊙ s[..8V]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn fma_v<const V: usize>(acc: &mut [__m256; V], a: &[__m256; V], s: &[f32]) {
    let s = &s[..8 * V];
    for v in 0..V {
        acc[v] = _mm256_fmadd_ps(a[v], load(&s[8 * v..]), acc[v]);
    }
}

/// [`Taps::rows`] (see there).
#[target_feature(enable = "avx2,fma")]
pub(super) fn taps_rows<const CAUSAL: bool>(taps: &Taps, t0: usize, dst: &mut [f32], accumulate: bool) {
    let rows = dst.len() / taps.cc;
    if rows == ROWS {
        taps_row_tile::<CAUSAL, ROWS>(taps, t0, dst, accumulate);
    } else {
        for (r, row) in dst.chunks_exact_mut(taps.cc).enumerate() {
            taps_row_tile::<CAUSAL, 1>(taps, t0 + r, row, accumulate);
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn taps_row_tile<const CAUSAL: bool, const R: usize>(taps: &Taps, t0: usize, dst: &mut [f32], accumulate: bool) {
    let mut c = 0;
    while c + 16 <= taps.cc {
        taps_tile::<CAUSAL, R, 2>(taps, t0, c, dst, accumulate);
        c += 16;
    }
    if c + 8 <= taps.cc {
        taps_tile::<CAUSAL, R, 1>(taps, t0, c, dst, accumulate);
        c += 8;
    }
    while c < taps.cc {
        taps.tile::<CAUSAL, R, 1, true>(t0, c, dst, accumulate);
        c += 1;
    }
}

/// Rows `t0..t0+R`, channels `c..c+8V`: [`Taps::tile`] in vector registers.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn taps_tile<const CAUSAL: bool, const R: usize, const V: usize>(taps: &Taps, t0: usize, c: usize, dst: &mut [f32], accumulate: bool) {
    let (src, kt, cc, len) = (taps.src, taps.kt, taps.cc, taps.len);
    let dv = load_v::<V>(&taps.d[c..]);
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for (r, a) in acc.iter_mut().enumerate() {
        if accumulate {
            *a = load_v::<V>(&dst[r * cc + c..]);
        }
        fma_v::<V>(a, &dv, &src[(t0 + r) * cc + c..]);
    }
    if CAUSAL {
        for j in 0..=t0 {
            let kv = load_v::<V>(&kt[j * cc + c..]);
            for (r, a) in acc.iter_mut().enumerate() {
                fma_v::<V>(a, &kv, &src[(t0 + r - j) * cc + c..]);
            }
        }
        for j in t0 + 1..t0 + R {
            let kv = load_v::<V>(&kt[j * cc + c..]);
            for (r, a) in acc.iter_mut().enumerate().skip(j - t0) {
                fma_v::<V>(a, &kv, &src[(t0 + r - j) * cc + c..]);
            }
        }
    } else {
        let full = len + 1 - (t0 + R);
        for j in 0..full {
            let kv = load_v::<V>(&kt[j * cc + c..]);
            for (r, a) in acc.iter_mut().enumerate() {
                fma_v::<V>(a, &kv, &src[(t0 + r + j) * cc + c..]);
            }
        }
        for j in full..len - t0 {
            let kv = load_v::<V>(&kt[j * cc + c..]);
            for (r, a) in acc.iter_mut().enumerate().take(len - t0 - j) {
                fma_v::<V>(a, &kv, &src[(t0 + r + j) * cc + c..]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let o = &mut dst[r * cc + c..][..8 * V];
        for (v, x) in a.iter().enumerate() {
            store(&mut o[8 * v..], *x);
        }
    }
}

/// [`Lags::rows`] (see there).
#[target_feature(enable = "avx2,fma")]
pub(super) fn lag_rows(lags: &Lags, j0: usize, dst: &mut [f32]) {
    let rows = dst.len() / lags.cc;
    if rows == ROWS {
        lag_row_tile::<ROWS>(lags, j0, dst);
    } else {
        for (r, row) in dst.chunks_exact_mut(lags.cc).enumerate() {
            lag_row_tile::<1>(lags, j0 + r, row);
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn lag_row_tile<const R: usize>(lags: &Lags, j0: usize, dst: &mut [f32]) {
    let mut c = 0;
    while c + 16 <= lags.cc {
        lag_tile::<R, 2>(lags, j0, c, dst);
        c += 16;
    }
    if c + 8 <= lags.cc {
        lag_tile::<R, 1>(lags, j0, c, dst);
        c += 8;
    }
    while c < lags.cc {
        lags.tile::<R, 1, true>(j0, c, dst);
        c += 1;
    }
}

/// Lags `j0..j0+R`, channels `c..c+8V`: [`Lags::tile`] in vector registers.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn lag_tile<const R: usize, const V: usize>(lags: &Lags, j0: usize, c: usize, dst: &mut [f32]) {
    let (cc, len) = (lags.cc, lags.len);
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for b in 0..lags.batch {
        let u = &lags.u[b * len * cc..][..len * cc]; // (T, C)
        let gy = &lags.gy[b * len * cc..][..len * cc]; // (T, C)
        for t in j0..(j0 + R - 1).min(len) {
            let g = load_v::<V>(&gy[t * cc + c..]);
            for (r, a) in acc.iter_mut().enumerate().take(t - j0 + 1) {
                fma_v::<V>(a, &g, &u[(t - j0 - r) * cc + c..]);
            }
        }
        for t in j0 + R - 1..len {
            let g = load_v::<V>(&gy[t * cc + c..]);
            for (r, a) in acc.iter_mut().enumerate() {
                fma_v::<V>(a, &g, &u[(t - j0 - r) * cc + c..]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let o = &mut dst[r * cc + c..][..8 * V];
        for (v, x) in a.iter().enumerate() {
            store(&mut o[8 * v..], *x);
        }
    }
}
