//! Long causal depthwise convolution (the Hyena operator's `long_causal_conv`) over
//! channels-last activations: forward and backward.
//!
//! Every channel `c` has its own filter `k[c, ·]` as long as the context and a skip weight
//! `d[c]`:
//!
//! `y[b, t, c] = Σ_{s≤t} k[c, t−s]·u[b, s, c] + d[c]·u[b, t, c]`
//!
//! Two implementations, chosen by the sequence length (see [`FFT_MIN_LEN`]):
//! - direct summation, O(T²) per column: register tiles of rows × 16 channels over the
//!   channels-last rows, with the filter taps transposed to (T, C) once per call so that
//!   every inner loop runs over contiguous channels;
//! - FFT, O(T log T) per column: complex FFTs of size N ≥ 2T (no wrap-around reaches the
//!   first T outputs), each carrying two batch items' real columns as `x_b + i·x_{b+1}`.
//!   Each channel's filter spectrum is computed once per call and shared over the batch;
//!   blocks of channels are gathered into contiguous columns, transformed, multiplied and
//!   transformed back, and the results scattered to channels-last rows in cache-sized
//!   tiles. The backward pass is two correlations (the spectra multiplied by the conjugate
//!   of the filter's or the input's); the filter gradient sums its cross-spectra over the
//!   batch before its one inverse transform per channel.
//!
//! FFT plans are made once per size by one shared planner; gradients are ADDED to the
//! buffers given, as the autograd engine accumulates them.

use super::scratch::Scratch;
use crate::error::{Error, Result};
use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

const OP: &str = "long_conv";

/// Sequence length from which [`LongConvMethod::Auto`] takes the FFT path.
///
/// Measured at B = 4, C = 128 with 2 threads (`CONVLM_THREADS=2`) on the 2-core dev machine
/// while other builds kept its load average at 3–4.5, so a single number can move by 2×
/// between runs. Milliseconds per call; bwd computes all three gradients.
///
/// `cargo bench --bench long_conv`, criterion's median estimate, run 1 / run 2 (/ run 3):
///
/// | T    | direct fwd        | FFT fwd           | direct bwd        | FFT bwd           |
/// |------|-------------------|-------------------|-------------------|-------------------|
/// | 64   | 0.044/0.085/0.055 | 0.114/0.133/0.102 | 0.115/0.165/0.102 | 0.153/0.175/0.163 |
/// | 128  | 0.193/0.205/0.187 | 0.183/0.222/0.209 | 0.427/0.397/0.388 | 0.165/0.323/0.158 |
/// | 192  | 0.174/0.352/0.184 | 0.152/0.340/0.278 | 0.405/0.836/0.408 | 0.313/0.468/0.501 |
/// | 256  | 0.303/0.684/0.317 | 0.399/0.325/0.307 | 1.17/1.46/0.642   | 0.602/0.507/0.466 |
/// | 1024 | 10.9/9.8          | 1.47/0.74         | 30.0/11.6         | 3.13/1.32         |
/// | 4096 | 223/101           | 10.7/4.55         | 471/193           | 18.4/8.0          |
///
/// The same calls alternated in one process (direct, FFT, direct, …; 20–95 calls each, on a
/// pool worker), the range of the medians of three runs, which drifts less with the load:
///
/// | T    | direct fwd  | FFT fwd     | direct bwd  | FFT bwd     |
/// |------|-------------|-------------|-------------|-------------|
/// | 64   | 0.038–0.044 | 0.060–0.084 | 0.068–0.078 | 0.081–0.109 |
/// | 96   | 0.057–0.060 | 0.079–0.113 | 0.113–0.126 | 0.118–0.156 |
/// | 112  | 0.075–0.092 | 0.073–0.130 | 0.134–0.166 | 0.119–0.178 |
/// | 128  | 0.089–0.105 | 0.077–0.118 | 0.173–0.226 | 0.124–0.180 |
/// | 192  | 0.186–0.214 | 0.138–0.245 | 0.377–0.428 | 0.220–0.374 |
/// | 256  | 0.318–0.346 | 0.147–0.263 | 0.627–0.698 | 0.250–0.412 |
/// | 1024 | 4.77–4.92   | 0.90–1.29   | 11.7–12.1   | 1.34–1.94   |
/// | 4096 | 97–103      | 4.55–4.64   | 193–202     | 7.77–7.91   |
///
/// A training step runs both directions: their sum was smaller by FFT from T = 128 on in all
/// three alternating runs, and by direct summation at T ≤ 112 in two of them (the backward
/// alone turns over near 112, the forward between 128 and 192). The bulk of both paths'
/// work scales with B·C, so the crossover depends mainly on T; per-call costs (the FFT's
/// filter spectra, one transform wasted on a lone item when B is odd) raise it for small
/// B·C, and a CPU without AVX2 (the direct kernels' portable build) would move it too.
pub const FFT_MIN_LEN: usize = 128;

/// Sizes of one long convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongConvShape {
    /// B: sequences in the batch.
    pub batch: usize,
    /// T: time steps of each sequence.
    pub len: usize,
    /// C: channels; every channel has its own filter.
    pub channels: usize,
    /// L: taps stored per filter (L ≥ T; only the first T are used).
    pub filter_len: usize,
}

impl LongConvShape {
    /// (B, T, C, L).
    pub fn new(batch: usize, len: usize, channels: usize, filter_len: usize) -> Self {
        LongConvShape { batch, len, channels, filter_len }
    }

    /// B·T·C, the length of an activation buffer; errors on overflow.
    pub fn numel(&self) -> Result<usize> {
        self.batch
            .checked_mul(self.len)
            .and_then(|n| n.checked_mul(self.channels))
            .ok_or_else(|| Error::shape(OP, format!("batch {} × len {} × channels {} overflows", self.batch, self.len, self.channels)))
    }

    /// C·L, the length of the filter buffer; errors on overflow.
    pub fn filter_numel(&self) -> Result<usize> {
        self.channels
            .checked_mul(self.filter_len)
            .ok_or_else(|| Error::shape(OP, format!("channels {} × filter_len {} overflows", self.channels, self.filter_len)))
    }

    /// Checks L ≥ T and the lengths of the inputs every call reads.
    fn check_inputs(&self, u: &[f32], k: &[f32], d: &[f32]) -> Result<()> {
        if self.filter_len < self.len {
            return Err(Error::shape(OP, format!("filter of {} taps is shorter than the sequence ({} steps)", self.filter_len, self.len)));
        }
        check_len("u", u.len(), self.numel()?)?;
        check_len("k", k.len(), self.filter_numel()?)?;
        check_len("d", d.len(), self.channels)
    }

    /// Nothing to compute (a zero size); the lengths were checked already.
    fn is_empty(&self) -> bool {
        self.batch == 0 || self.len == 0 || self.channels == 0
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::shape(OP, format!("{what} has {got} values, expected {want}")))
    }
}

/// Which implementation computes the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LongConvMethod {
    /// FFT from [`FFT_MIN_LEN`] steps on, direct below.
    #[default]
    Auto,
    /// Direct summation, O(T²) per column.
    Direct,
    /// Real FFT of size [`fft_len`]`(T)`, O(T log T) per column.
    Fft,
}

impl LongConvMethod {
    fn uses_fft(self, len: usize) -> bool {
        match self {
            LongConvMethod::Auto => len >= FFT_MIN_LEN,
            LongConvMethod::Direct => false,
            LongConvMethod::Fft => true,
        }
    }
}

/// Long causal convolution forward (method chosen by length); overwrites `out`.
///
/// `out[b, t, c] = Σ_{s≤t} k[c, t−s]·u[b, s, c] + d[c]·u[b, t, c]`
///
/// # Shapes
/// - u, out: `[batch, len, channels]`
/// - k: `[channels, filter_len]` with `filter_len >= len` (taps `len..` are not read)
/// - d: `[channels]`
pub fn long_conv_forward(shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out: &mut [f32]) -> Result<()> {
    long_conv_forward_with(LongConvMethod::Auto, shape, u, k, d, out)
}

/// [`long_conv_forward`] by the given method.
pub fn long_conv_forward_with(method: LongConvMethod, shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out: &mut [f32]) -> Result<()> {
    shape.check_inputs(u, k, d)?;
    check_len("out", out.len(), shape.numel()?)?;
    if shape.is_empty() {
        return Ok(());
    }
    if method.uses_fft(shape.len) {
        forward_fft(shape, u, k, d, out);
    } else {
        forward_direct(shape, u, k, d, out);
    }
    Ok(())
}

/// Long causal convolution backward (method chosen by length): ADDS the gradients of the
/// loss with respect to `u`, `k` and `d` into each buffer given; `None` skips that gradient.
///
/// - `grad_u[b, s, c] += Σ_{t≥s} k[c, t−s]·grad_out[b, t, c] + d[c]·grad_out[b, s, c]`
/// - `grad_k[c, j] += Σ_b Σ_{t≥j} grad_out[b, t, c]·u[b, t−j, c]` for `j < len`; taps
///   `j >= len` are not used by the forward and get nothing
/// - `grad_d[c] += Σ_{b,t} grad_out[b, t, c]·u[b, t, c]`
///
/// # Shapes
/// - u, grad_out, grad_u: `[batch, len, channels]`
/// - k, grad_k: `[channels, filter_len]` with `filter_len >= len`
/// - d, grad_d: `[channels]`
#[allow(clippy::too_many_arguments)]
pub fn long_conv_backward(
    shape: &LongConvShape,
    u: &[f32],
    k: &[f32],
    d: &[f32],
    grad_out: &[f32],
    grad_u: Option<&mut [f32]>,
    grad_k: Option<&mut [f32]>,
    grad_d: Option<&mut [f32]>,
) -> Result<()> {
    long_conv_backward_with(LongConvMethod::Auto, shape, u, k, d, grad_out, grad_u, grad_k, grad_d)
}

/// [`long_conv_backward`] by the given method.
#[allow(clippy::too_many_arguments)]
pub fn long_conv_backward_with(
    method: LongConvMethod,
    shape: &LongConvShape,
    u: &[f32],
    k: &[f32],
    d: &[f32],
    grad_out: &[f32],
    grad_u: Option<&mut [f32]>,
    grad_k: Option<&mut [f32]>,
    grad_d: Option<&mut [f32]>,
) -> Result<()> {
    shape.check_inputs(u, k, d)?;
    let n = shape.numel()?;
    check_len("grad_out", grad_out.len(), n)?;
    if let Some(g) = grad_u.as_deref() {
        check_len("grad_u", g.len(), n)?;
    }
    if let Some(g) = grad_k.as_deref() {
        check_len("grad_k", g.len(), shape.filter_numel()?)?;
    }
    if let Some(g) = grad_d.as_deref() {
        check_len("grad_d", g.len(), shape.channels)?;
    }
    if shape.is_empty() {
        return Ok(());
    }
    if let Some(gd) = grad_d {
        add_channel_dots(u, grad_out, shape.channels, gd);
    }
    if method.uses_fft(shape.len) {
        backward_fft(shape, u, k, d, grad_out, grad_u, grad_k);
    } else {
        let kt = grad_u.as_ref().map(|_| transposed_taps(k, shape));
        if let (Some(gu), Some(kt)) = (grad_u, kt.as_deref()) {
            grad_u_direct(shape, kt, d, grad_out, gu);
        }
        if let Some(gk) = grad_k {
            grad_k_direct(shape, u, grad_out, gk);
        }
    }
    Ok(())
}

/// The smallest FFT size used for sequences of `len` steps: the smallest even
/// `2^a·3^b ≥ 2·len` (sizes rustfft transforms fastest). Circular convolution of that size
/// equals the linear one on the first `len` outputs.
pub fn fft_len(len: usize) -> usize {
    let target = len.saturating_mul(2).max(2);
    let mut best = usize::MAX;
    let mut p3: usize = 1;
    while p3 < target.saturating_mul(2) {
        let mut n = p3.saturating_mul(2);
        while n < target {
            n = n.saturating_mul(2);
        }
        best = best.min(n);
        p3 = p3.saturating_mul(3);
    }
    best
}

// ---------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------

/// Rows (or lags) per register tile of the direct kernels.
const ROWS: usize = 6;
/// Channels per register tile of the direct kernels: two AVX vectors.
const LANES: usize = 16;
/// Rows per tile when moving between channels-last rows and per-channel columns.
const TILE_ROWS: usize = 16;

/// `gd[c] += Σ_rows a[row, c]·b[row, c]` over (rows, C) buffers.
fn add_channel_dots(a: &[f32], b: &[f32], cc: usize, gd: &mut [f32]) {
    const CHUNK_ROWS: usize = 256;
    let sums = a
        .par_chunks(CHUNK_ROWS * cc)
        .zip(b.par_chunks(CHUNK_ROWS * cc))
        .fold(
            || vec![0.0f32; cc],
            |mut acc, (ra, rb)| {
                for (xa, xb) in ra.chunks_exact(cc).zip(rb.chunks_exact(cc)) {
                    for ((s, &p), &q) in acc.iter_mut().zip(xa).zip(xb) {
                        *s += p * q;
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![0.0f32; cc],
            |mut x, y| {
                x.iter_mut().zip(&y).for_each(|(s, v)| *s += v);
                x
            },
        );
    gd.iter_mut().zip(&sums).for_each(|(g, s)| *g += s);
}

/// The first T taps of every filter as (T, C) rows: `kt[j, c] = k[c, j]`.
fn transposed_taps(k: &[f32], shape: &LongConvShape) -> Scratch {
    let (cc, l) = (shape.channels, shape.filter_len);
    let avx = has_fma();
    let mut kt = Scratch::new(shape.len * cc); // (T, C)
    kt.par_chunks_mut(TILE_ROWS * cc).enumerate().for_each(|(tile, rows)| {
        transpose(&k[tile * TILE_ROWS..], l, rows, cc, cc, rows.len() / cc, avx);
    });
    kt
}

/// `gk[c, j] += gkt[j, c]` for `j < T`: (T, C) lag rows added into the (C, L) filter gradient.
fn add_transposed_taps(gkt: &[f32], shape: &LongConvShape, gk: &mut [f32]) {
    let (t_len, cc, l) = (shape.len, shape.channels, shape.filter_len);
    gk.par_chunks_mut(TILE_ROWS * l).enumerate().for_each(|(blk, rows)| {
        let c0 = blk * TILE_ROWS;
        let n = rows.len() / l;
        for j in 0..t_len {
            for (i, &v) in gkt[j * cc + c0..][..n].iter().enumerate() {
                rows[i * l + j] += v;
            }
        }
    });
}

fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

// ---------------------------------------------------------------------------------------
// Direct summation
// ---------------------------------------------------------------------------------------

fn forward_direct(shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out: &mut [f32]) {
    let kt = transposed_taps(k, shape); // (T, C)
    let fma = has_fma();
    let (t_len, cc) = (shape.len, shape.channels);
    out.par_chunks_mut(t_len * cc).zip(u.par_chunks(t_len * cc)).for_each(|(out_b, u_b)| {
        let taps = Taps { src: u_b, kt: &kt, d, cc, len: t_len };
        out_b.par_chunks_mut(ROWS * cc).enumerate().for_each(|(i, dst)| taps.rows::<true>(fma, i * ROWS, dst, false));
    });
}

fn grad_u_direct(shape: &LongConvShape, kt: &[f32], d: &[f32], gy: &[f32], gu: &mut [f32]) {
    let fma = has_fma();
    let (t_len, cc) = (shape.len, shape.channels);
    gu.par_chunks_mut(t_len * cc).zip(gy.par_chunks(t_len * cc)).for_each(|(gu_b, gy_b)| {
        let taps = Taps { src: gy_b, kt, d, cc, len: t_len };
        gu_b.par_chunks_mut(ROWS * cc).enumerate().for_each(|(i, dst)| taps.rows::<false>(fma, i * ROWS, dst, true));
    });
}

fn grad_k_direct(shape: &LongConvShape, u: &[f32], gy: &[f32], gk: &mut [f32]) {
    let fma = has_fma();
    let (t_len, cc) = (shape.len, shape.channels);
    let lags = Lags { u, gy, batch: shape.batch, cc, len: t_len };
    let mut gkt = Scratch::new(t_len * cc); // (T, C): gkt[j, c] = gk[c, j]
    gkt.par_chunks_mut(ROWS * cc).enumerate().for_each(|(i, dst)| lags.rows(fma, i * ROWS, dst));
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
struct Taps<'a> {
    /// (T, C): u for the forward, grad_out for grad_u.
    src: &'a [f32],
    /// (T, C): the filters' taps, `kt[j, c] = k[c, j]`.
    kt: &'a [f32],
    d: &'a [f32],
    cc: usize,
    len: usize,
}

impl Taps<'_> {
    /// Output rows `t0..` (as many as `dst` holds, ≤ [`ROWS`]) over all channels:
    /// `dst[r] (=, or += when accumulate) d ⊙ src[t0+r] + Σ_j kt[j] ⊙ src[t0+r ∓ j]`, with
    /// `−` and `j ≤ t0+r` when `CAUSAL`, `+` and `t0+r+j < T` otherwise.
    fn rows<const CAUSAL: bool>(&self, fma: bool, t0: usize, dst: &mut [f32], accumulate: bool) {
        #[cfg(target_arch = "x86_64")]
        if fma {
            // SAFETY: `has_fma` checked the CPU features at run time.
            return unsafe { avx2::taps_rows::<CAUSAL>(self, t0, dst, accumulate) };
        }
        let _ = fma;
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
    fn tile<const CAUSAL: bool, const R: usize, const W: usize, const FMA: bool>(&self, t0: usize, c: usize, dst: &mut [f32], accumulate: bool) {
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
struct Lags<'a> {
    /// (B, T, C)
    u: &'a [f32],
    /// (B, T, C)
    gy: &'a [f32],
    batch: usize,
    cc: usize,
    len: usize,
}

impl Lags<'_> {
    /// Lags `j0..` (as many as `dst` holds, ≤ [`ROWS`]) over all channels, overwriting
    /// `dst`: `dst[r] = Σ_b Σ_{t ≥ j0+r} gy[b, t] ⊙ u[b, t − j0 − r]`.
    fn rows(&self, fma: bool, j0: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if fma {
            // SAFETY: `has_fma` checked the CPU features at run time.
            return unsafe { avx2::lag_rows(self, j0, dst) };
        }
        let _ = fma;
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
    fn tile<const R: usize, const W: usize, const FMA: bool>(&self, j0: usize, c: usize, dst: &mut [f32]) {
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

/// The direct kernels' AVX2 + FMA builds: register tiles of [`ROWS`] rows (or lags) × 16 or
/// 8 channels in `__m256` accumulators; channels past the last multiple of 8 take the
/// portable tile (with fused multiply-adds).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lags, Taps, ROWS};
    use std::arch::x86_64::*;

    /// The first 8 values of `s` (bounds-checked).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(s: &[f32]) -> __m256 {
        _mm256_loadu_ps(s[..8].as_ptr())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(s: &mut [f32], x: __m256) {
        _mm256_storeu_ps(s[..8].as_mut_ptr(), x)
    }

    /// `V` vectors from the start of `s`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_v<const V: usize>(s: &[f32]) -> [__m256; V] {
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
    unsafe fn fma_v<const V: usize>(acc: &mut [__m256; V], a: &[__m256; V], s: &[f32]) {
        let s = &s[..8 * V];
        for v in 0..V {
            acc[v] = _mm256_fmadd_ps(a[v], load(&s[8 * v..]), acc[v]);
        }
    }

    /// [`Taps::rows`] (see there).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn taps_rows<const CAUSAL: bool>(taps: &Taps, t0: usize, dst: &mut [f32], accumulate: bool) {
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
    unsafe fn taps_row_tile<const CAUSAL: bool, const R: usize>(taps: &Taps, t0: usize, dst: &mut [f32], accumulate: bool) {
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
    unsafe fn taps_tile<const CAUSAL: bool, const R: usize, const V: usize>(taps: &Taps, t0: usize, c: usize, dst: &mut [f32], accumulate: bool) {
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

    /// [`super::transpose`] of the first `rows` × `cols` values, both multiples of 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn transpose_tiles(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, rows: usize, cols: usize) {
        for i0 in (0..rows).step_by(8) {
            for j0 in (0..cols).step_by(8) {
                transpose8(&src[i0 * ss + j0..], ss, &mut dst[j0 * ds + i0..], ds);
            }
        }
    }

    /// `dst[j * ds + i] = src[i * ss + j]` for `i, j < 8`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose8(src: &[f32], ss: usize, dst: &mut [f32], ds: usize) {
        let mut r = [_mm256_setzero_ps(); 8];
        for (i, r) in r.iter_mut().enumerate() {
            *r = load(&src[i * ss..]);
        }
        // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves.
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let q = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        let o = [
            _mm256_permute2f128_ps::<0x20>(q[0], q[4]),
            _mm256_permute2f128_ps::<0x20>(q[1], q[5]),
            _mm256_permute2f128_ps::<0x20>(q[2], q[6]),
            _mm256_permute2f128_ps::<0x20>(q[3], q[7]),
            _mm256_permute2f128_ps::<0x31>(q[0], q[4]),
            _mm256_permute2f128_ps::<0x31>(q[1], q[5]),
            _mm256_permute2f128_ps::<0x31>(q[2], q[6]),
            _mm256_permute2f128_ps::<0x31>(q[3], q[7]),
        ];
        for (j, o) in o.iter().enumerate() {
            store(&mut dst[j * ds..], *o);
        }
    }

    /// [`Lags::rows`] (see there).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lag_rows(lags: &Lags, j0: usize, dst: &mut [f32]) {
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
    unsafe fn lag_row_tile<const R: usize>(lags: &Lags, j0: usize, dst: &mut [f32]) {
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
    unsafe fn lag_tile<const R: usize, const V: usize>(lags: &Lags, j0: usize, c: usize, dst: &mut [f32]) {
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
}

// ---------------------------------------------------------------------------------------
// FFT
// ---------------------------------------------------------------------------------------

/// Forward and inverse complex FFTs of one size, from the shared planner.
struct Plans {
    fwd: Arc<dyn Fft<f32>>,
    inv: Arc<dyn Fft<f32>>,
    /// N, the transform length.
    n: usize,
}

/// Buffers one worker reuses over its columns.
struct Work {
    /// N bins each.
    buf: Vec<Complex<f32>>,
    buf2: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    /// Blocks of gathered channel columns (see [`gather_columns`]): grad_out or u of the
    /// two items of a pair, and u of both for the filter gradient.
    cols: [Vec<f32>; 4],
}

impl Plans {
    /// Plans for size `n` (made once per size; later calls look them up).
    fn new(n: usize) -> Self {
        static PLANNER: OnceLock<Mutex<FftPlanner<f32>>> = OnceLock::new();
        let mut planner = PLANNER.get_or_init(|| Mutex::new(FftPlanner::new())).lock().unwrap_or_else(PoisonError::into_inner);
        Plans { fwd: planner.plan_fft_forward(n), inv: planner.plan_fft_inverse(n), n }
    }

    fn work(&self) -> Work {
        let zero = Complex::new(0.0, 0.0);
        let scratch = self.fwd.get_inplace_scratch_len().max(self.inv.get_inplace_scratch_len());
        Work { buf: vec![zero; self.n], buf2: vec![zero; self.n], scratch: vec![zero; scratch], cols: Default::default() }
    }

    /// `buf` = the spectrum of `re + i·im` (`im` zero when `None`), zero-padded to N.
    fn fft_pair(&self, re: &[f32], im: Option<&[f32]>, buf: &mut [Complex<f32>], scratch: &mut [Complex<f32>]) {
        pack_pair(re, im, buf);
        self.fwd.process_with_scratch(buf, scratch);
    }

    /// In place: the signal whose spectrum is `buf`, times N (rustfft does not normalise).
    fn ifft(&self, buf: &mut [Complex<f32>], scratch: &mut [Complex<f32>]) {
        self.inv.process_with_scratch(buf, scratch);
    }
}

/// Defines `fn $name(args)` from a body that is compiled twice: with AVX2 + FMA enabled,
/// taken when the CPU has them (checked per call: a cached flag), and as it is. For the
/// element-wise passes over spectra and columns, which the compiler vectorises itself.
macro_rules! with_avx2 {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if has_fma() {
                // SAFETY: `has_fma` checked the CPU features at run time.
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}

with_avx2! {
    /// `buf = re + i·im` (`im` zero when `None`) over `re.len()` values, zeros after.
    fn pack_pair(re: &[f32], im: Option<&[f32]>, buf: &mut [Complex<f32>]) {
        let (head, tail) = buf.split_at_mut(re.len());
        match im {
            Some(im) => head.iter_mut().zip(re).zip(im).for_each(|((z, &a), &b)| *z = Complex::new(a, b)),
            None => head.iter_mut().zip(re).for_each(|(z, &a)| *z = Complex::new(a, 0.0)),
        }
        tail.fill(Complex::new(0.0, 0.0));
    }
}

with_avx2! {
    /// `buf *= k`, or `buf *= conj(k)` when `conj`.
    fn mul_spectrum(buf: &mut [Complex<f32>], k: &[Complex<f32>], conj: bool) {
        if conj {
            buf.iter_mut().zip(k).for_each(|(z, k)| *z *= k.conj());
        } else {
            buf.iter_mut().zip(k).for_each(|(z, k)| *z *= k);
        }
    }
}

with_avx2! {
    /// `acc += a · conj(b)`.
    fn add_cross_spectrum(acc: &mut [Complex<f32>], a: &[Complex<f32>], b: &[Complex<f32>]) {
        acc.iter_mut().zip(a).zip(b).for_each(|((s, a), b)| *s += a * b.conj());
    }
}

with_avx2! {
    /// `re[t] = buf[t].re`, `im[t] = buf[t].im` over `re.len()` values.
    fn unpack_pair(buf: &[Complex<f32>], re: &mut [f32], im: Option<&mut [f32]>) {
        re.iter_mut().zip(buf).for_each(|(y, z)| *y = z.re);
        if let Some(im) = im {
            im.iter_mut().zip(buf).for_each(|(y, z)| *y = z.im);
        }
    }
}

/// Channel `i`'s columns of items `b0` and, when `pair`, `b0 + 1` in a (channels, B, T) block.
fn pair_columns(block: &mut [f32], nb: usize, t_len: usize, i: usize, b0: usize, pair: bool) -> (&mut [f32], Option<&mut [f32]>) {
    let cols = &mut block[(i * nb + b0) * t_len..][..if pair { 2 * t_len } else { t_len }];
    let (re, im) = cols.split_at_mut(t_len);
    (re, pair.then_some(im))
}

/// The batch items as pairs `(b, Some(b + 1))`, the last one alone when B is odd. A pair
/// shares one complex transform, `x_b + i·x_{b+1}`: filtering by a real filter is linear
/// over complex numbers, so the real part of the result is item b's and the imaginary part
/// item b+1's. Against real FFTs (`realfft`) of the two columns, fwd + inv measured 1.8×
/// faster per column at N = 2048 and 1.5× at N = 8192: realfft's passes that split and
/// join its half-size complex transform took a third of the FFT forward's time at T = 1024.
fn batch_pairs(batch: usize) -> impl Iterator<Item = (usize, Option<usize>)> {
    (0..batch).step_by(2).map(move |b| (b, (b + 1 < batch).then_some(b + 1)))
}

/// Channels per FFT task: blocks of up to 16 (one cache line of a channels-last row), smaller
/// when that would leave fewer than four blocks per thread.
fn channel_block(channels: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (channels / (4 * threads)).clamp(1, 16)
}

/// `cols[i * stride + t] = src[t, c0 + i]` for `i < width`, `t < len`: a block of channel
/// columns of one item's (T, C) rows. Returns `stride`: `len` padded so that columns do not
/// start a multiple of 4 KiB apart, which would put every column's run in the same L1 set
/// (T = 1024: the gather took 28% of the FFT forward's time with one value at a time and
/// no padding, 10% with tiles of rows and the padding, less with 8 × 8 AVX2 transposes).
fn gather_columns(src: &[f32], cc: usize, len: usize, c0: usize, width: usize, cols: &mut Vec<f32>, avx: bool) -> usize {
    let stride = len.div_ceil(16) * 16 + 16;
    cols.resize(width * stride, 0.0);
    transpose(&src[c0..], cc, cols, stride, len, width, avx);
    stride
}

/// A buffer of spectra with UNSPECIFIED contents, to be written in full: taken from a small
/// pool and given back when dropped, as [`Scratch`] does for f32 buffers. The filter
/// spectra are C·N bins (2 MB at C = 128, T = 1024); a fresh zeroed vector cost its
/// zero-fill and page faults on every call.
struct Spectra(Vec<Complex<f32>>);

static SPECTRA: Mutex<Vec<Vec<Complex<f32>>>> = Mutex::new(Vec::new());

impl Spectra {
    /// Buffers kept for reuse: a forward's and a backward's, with room for a second layer.
    const KEPT: usize = 4;

    fn new(len: usize) -> Self {
        let mut pool = SPECTRA.lock().unwrap_or_else(PoisonError::into_inner);
        let best = (0..pool.len()).filter(|&i| pool[i].capacity() >= len).min_by_key(|&i| pool[i].capacity());
        let mut buf = best.map(|i| pool.swap_remove(i)).unwrap_or_default();
        drop(pool);
        buf.resize(len, Complex::new(0.0, 0.0));
        Spectra(buf)
    }
}

impl std::ops::Deref for Spectra {
    type Target = [Complex<f32>];
    fn deref(&self) -> &[Complex<f32>] {
        &self.0
    }
}

impl std::ops::DerefMut for Spectra {
    fn deref_mut(&mut self) -> &mut [Complex<f32>] {
        &mut self.0
    }
}

impl Drop for Spectra {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() == 0 {
            return;
        }
        let mut pool = SPECTRA.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < Self::KEPT {
            pool.push(buf);
        } else if let Some(smallest) = pool.iter_mut().min_by_key(|b| b.capacity()).filter(|b| b.capacity() < buf.capacity()) {
            *smallest = buf;
        }
    }
}

/// Every channel's filter spectrum (first T taps, zero-padded to N) times 1/N, so that the
/// inverse transforms of products with it need no scaling: (C, N). Two channels share one
/// transform, `k_c + i·k_{c+1}`, split afterwards by the symmetry of real signals' spectra.
fn filter_spectra(plans: &Plans, shape: &LongConvShape, k: &[f32]) -> Spectra {
    let n = plans.n;
    let scale = 1.0 / n as f32;
    let taps = |c: usize| &k[c * shape.filter_len..][..shape.len];
    let mut spectra = Spectra::new(shape.channels * n);
    spectra.par_chunks_mut(2 * n).enumerate().for_each_init(
        || plans.work(),
        |w, (pair, out)| {
            let c0 = 2 * pair;
            if out.len() == n {
                plans.fft_pair(taps(c0), None, out, &mut w.scratch);
                out.iter_mut().for_each(|z| *z *= scale);
            } else {
                plans.fft_pair(taps(c0), Some(taps(c0 + 1)), &mut w.buf, &mut w.scratch);
                let (first, second) = out.split_at_mut(n);
                split_pair_spectrum(&w.buf, first, second, scale);
            }
        },
    );
    spectra
}

with_avx2! {
    /// From `z`, the spectrum of `a + i·b` for real signals a and b: `fa = scale·A` and
    /// `fb = scale·B`, where `A[k] = (z[k] + conj z[−k]) / 2` and `B[k] = (z[k] − conj z[−k]) / 2i`.
    fn split_pair_spectrum(z: &[Complex<f32>], fa: &mut [Complex<f32>], fb: &mut [Complex<f32>], scale: f32) {
        let half = 0.5 * scale;
        let split = |zk: Complex<f32>, zm: Complex<f32>| {
            let (sum, diff) = (zk + zm.conj(), zk - zm.conj());
            (sum * half, Complex::new(diff.im * half, -diff.re * half))
        };
        let (Some(&z0), Some(a0), Some(b0)) = (z.first(), fa.first_mut(), fb.first_mut()) else { return };
        (*a0, *b0) = split(z0, z0);
        // z[−k] = z[N − k] for k ≥ 1: the rest of z read backwards.
        for (((a, b), &zk), &zm) in fa[1..].iter_mut().zip(fb[1..].iter_mut()).zip(&z[1..]).zip(z[1..].iter().rev()) {
            (*a, *b) = split(zk, zm);
        }
    }
}

/// `dst[b, t, c] (=, or += when accumulate) cbt[c, b, t] + d[c]·src[b, t, c]`: per-channel
/// columns back to channels-last rows, plus the skip term, a tile of [`TILE_ROWS`] rows at a
/// time (transposed into an L1-sized buffer, then added row by row).
fn scatter_rows(cbt: &[f32], src: &[f32], d: &[f32], shape: &LongConvShape, dst: &mut [f32], accumulate: bool) {
    let (nb, t_len, cc) = (shape.batch, shape.len, shape.channels);
    let avx = has_fma();
    dst.par_chunks_mut(t_len * cc).zip(src.par_chunks(t_len * cc)).enumerate().for_each(|(b, (dst_b, src_b))| {
        dst_b.par_chunks_mut(TILE_ROWS * cc).zip(src_b.par_chunks(TILE_ROWS * cc)).enumerate().for_each_init(
            || vec![0.0f32; TILE_ROWS * cc],
            |tile, (t, (dst_t, src_t))| {
                let rows = dst_t.len() / cc;
                transpose(&cbt[b * t_len + t * TILE_ROWS..], nb * t_len, tile, cc, cc, rows, avx); // (rows, C)
                add_skip_rows(dst_t, tile, src_t, d, accumulate);
            },
        );
    });
}

with_avx2! {
    /// `dst[r, c] (=, or += when accumulate) x[r, c] + d[c]·src[r, c]` over rows of C = `d.len()`.
    fn add_skip_rows(dst: &mut [f32], x: &[f32], src: &[f32], d: &[f32], accumulate: bool) {
        let cc = d.len();
        for ((o, x), s) in dst.chunks_exact_mut(cc).zip(x.chunks_exact(cc)).zip(src.chunks_exact(cc)) {
            if accumulate {
                for (((o, &x), &s), &dc) in o.iter_mut().zip(x).zip(s).zip(d) {
                    *o += x + dc * s;
                }
            } else {
                for (((o, &x), &s), &dc) in o.iter_mut().zip(x).zip(s).zip(d) {
                    *o = x + dc * s;
                }
            }
        }
    }
}

/// `dst[j * ds + i] = src[i * ss + j]` for `i < rows`, `j < cols`: 8 × 8 tiles in AVX2
/// registers when `avx` (from [`has_fma`]), single values at the edges.
fn transpose(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, rows: usize, cols: usize, avx: bool) {
    let (mut r8, mut c8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if avx {
        (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: `has_fma` checked the CPU features at run time.
        unsafe { avx2::transpose_tiles(src, ss, dst, ds, r8, c8) };
    }
    let _ = avx;
    for i in 0..rows {
        for j in if i < r8 { c8 } else { 0 }..cols {
            dst[j * ds + i] = src[i * ss + j];
        }
    }
}

fn forward_fft(shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out: &mut [f32]) {
    let (nb, t_len, cc) = (shape.batch, shape.len, shape.channels);
    let plans = Plans::new(fft_len(t_len));
    let n = plans.n;
    let kspec = filter_spectra(&plans, shape, k); // (C, N)
    let cb = channel_block(cc);
    let avx = has_fma();
    let item = |b: usize| &u[b * t_len * cc..][..t_len * cc]; // (T, C)
    let mut conv = Scratch::new(cc * nb * t_len); // (C, B, T): Σ_s k[c, t−s]·u[b, s, c]
    conv.par_chunks_mut(cb * nb * t_len).enumerate().for_each_init(
        || plans.work(),
        |w, (blk, chunk)| {
            let c0 = blk * cb;
            let width = chunk.len() / (nb * t_len);
            let Work { buf, scratch, cols: [c_re, c_im, ..], .. } = w;
            for (b0, b1) in batch_pairs(nb) {
                let stride = gather_columns(item(b0), cc, t_len, c0, width, c_re, avx); // (width, T)
                if let Some(b1) = b1 {
                    gather_columns(item(b1), cc, t_len, c0, width, c_im, avx);
                }
                for i in 0..width {
                    let im = b1.map(|_| &c_im[i * stride..][..t_len]);
                    plans.fft_pair(&c_re[i * stride..][..t_len], im, buf, scratch);
                    mul_spectrum(buf, &kspec[(c0 + i) * n..][..n], false);
                    plans.ifft(buf, scratch);
                    let (re, im) = pair_columns(chunk, nb, t_len, i, b0, b1.is_some());
                    unpack_pair(buf, re, im);
                }
            }
        },
    );
    scatter_rows(&conv, u, d, shape, out, false);
}

/// FFT backward of the input and filter gradients (`grad_d` is done by the caller).
fn backward_fft(shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], gy: &[f32], grad_u: Option<&mut [f32]>, grad_k: Option<&mut [f32]>) {
    if grad_u.is_none() && grad_k.is_none() {
        return;
    }
    let (nb, t_len, cc, l) = (shape.batch, shape.len, shape.channels, shape.filter_len);
    let plans = Plans::new(fft_len(t_len));
    let n = plans.n;
    let scale = 1.0 / n as f32;
    let kspec = if grad_u.is_some() { filter_spectra(&plans, shape, k) } else { Spectra::new(0) }; // (C, N)
    let cb = channel_block(cc);
    let blocks = cc.div_ceil(cb);
    let avx = has_fma();
    let item = |b: usize| b * t_len * cc..(b + 1) * t_len * cc; // (T, C) rows of item b
                                                                // (C, B, T): Σ_{t≥s} k[c, t−s]·gy[b, t, c], one block of channels per task.
    let mut corr = Scratch::new(if grad_u.is_some() { cc * nb * t_len } else { 0 });
    let mut corr_blocks: Vec<Option<&mut [f32]>> = (0..blocks).map(|_| None).collect();
    if grad_u.is_some() {
        corr.chunks_mut(cb * nb * t_len).zip(corr_blocks.iter_mut()).for_each(|(ch, slot)| *slot = Some(ch));
    }
    let mut gk_blocks: Vec<Option<&mut [f32]>> = (0..blocks).map(|_| None).collect();
    if let Some(gk) = grad_k {
        gk.chunks_mut(cb * l).zip(gk_blocks.iter_mut()).for_each(|(ch, slot)| *slot = Some(ch));
    }
    corr_blocks.into_par_iter().zip(gk_blocks).enumerate().for_each_init(
        || plans.work(),
        |w, (blk, (mut corr_blk, gk_blk))| {
            let c0 = blk * cb;
            let width = cb.min(cc - c0);
            let Work { buf, buf2, scratch, cols: [g_re, g_im, u_re, u_im] } = w;
            // Σ over pairs of GY·conj(U) per channel of the block, (width, N): the real part
            // of its inverse is Σ_b of the items' correlations (the cross terms of a pair
            // land in the imaginary part).
            let mut cross = if gk_blk.is_some() { vec![Complex::new(0.0, 0.0); width * n] } else { Vec::new() };
            for (b0, b1) in batch_pairs(nb) {
                let stride = gather_columns(&gy[item(b0)], cc, t_len, c0, width, g_re, avx); // (width, T)
                if let Some(b1) = b1 {
                    gather_columns(&gy[item(b1)], cc, t_len, c0, width, g_im, avx);
                }
                if gk_blk.is_some() {
                    gather_columns(&u[item(b0)], cc, t_len, c0, width, u_re, avx);
                    if let Some(b1) = b1 {
                        gather_columns(&u[item(b1)], cc, t_len, c0, width, u_im, avx);
                    }
                }
                for i in 0..width {
                    let (lo, hi) = (i * stride, i * stride + t_len);
                    plans.fft_pair(&g_re[lo..hi], b1.map(|_| &g_im[lo..hi]), buf, scratch); // GY
                    if gk_blk.is_some() {
                        plans.fft_pair(&u_re[lo..hi], b1.map(|_| &u_im[lo..hi]), buf2, scratch); // U
                        add_cross_spectrum(&mut cross[i * n..][..n], buf, buf2);
                    }
                    if let Some(dst) = corr_blk.as_deref_mut() {
                        mul_spectrum(buf, &kspec[(c0 + i) * n..][..n], true);
                        plans.ifft(buf, scratch);
                        let (re, im) = pair_columns(dst, nb, t_len, i, b0, b1.is_some());
                        unpack_pair(buf, re, im);
                    }
                }
            }
            if let Some(gk) = gk_blk {
                for i in 0..width {
                    let spec = &mut cross[i * n..][..n];
                    plans.ifft(spec, scratch);
                    gk[i * l..][..t_len].iter_mut().zip(spec.iter()).for_each(|(g, z)| *g += z.re * scale);
                }
            }
        },
    );
    if let Some(gu) = grad_u {
        scatter_rows(&corr, gy, d, shape, gu, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_vec(n: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    struct Case {
        shape: LongConvShape,
        u: Vec<f32>,
        k: Vec<f32>,
        d: Vec<f32>,
    }

    impl Case {
        fn new(batch: usize, len: usize, channels: usize, filter_len: usize, seed: u64) -> Self {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let shape = LongConvShape::new(batch, len, channels, filter_len);
            let u = rand_vec(batch * len * channels, &mut rng);
            let k = rand_vec(channels * filter_len, &mut rng);
            let d = rand_vec(channels, &mut rng);
            Case { shape, u, k, d }
        }

        fn forward(&self, method: LongConvMethod) -> Vec<f32> {
            let mut out = vec![f32::NAN; self.u.len()];
            long_conv_forward_with(method, &self.shape, &self.u, &self.k, &self.d, &mut out).unwrap();
            out
        }

        /// (grad_u, grad_k, grad_d) from zeroed buffers.
        fn backward(&self, method: LongConvMethod, gy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
            let (mut gu, mut gk, mut gd) = (vec![0.0; self.u.len()], vec![0.0; self.k.len()], vec![0.0; self.d.len()]);
            long_conv_backward_with(method, &self.shape, &self.u, &self.k, &self.d, gy, Some(&mut gu), Some(&mut gk), Some(&mut gd)).unwrap();
            (gu, gk, gd)
        }
    }

    /// Naive f64 reference of the forward and of all three gradients.
    fn reference(c: &Case, gy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let LongConvShape { batch, len, channels: cc, filter_len: l } = c.shape;
        let at = |b: usize, t: usize, ch: usize| (b * len + t) * cc + ch;
        let mut y = vec![0.0f64; c.u.len()];
        let mut gu = vec![0.0f64; c.u.len()];
        let mut gk = vec![0.0f64; c.k.len()];
        let mut gd = vec![0.0f64; cc];
        for b in 0..batch {
            for ch in 0..cc {
                let dc = c.d[ch] as f64;
                for t in 0..len {
                    let (ut, gt) = (c.u[at(b, t, ch)] as f64, gy[at(b, t, ch)] as f64);
                    let mut s = dc * ut;
                    for src in 0..=t {
                        s += c.k[ch * l + t - src] as f64 * c.u[at(b, src, ch)] as f64;
                    }
                    y[at(b, t, ch)] = s;
                    let mut g = dc * gt;
                    for later in t..len {
                        g += c.k[ch * l + later - t] as f64 * gy[at(b, later, ch)] as f64;
                    }
                    gu[at(b, t, ch)] = g;
                    gd[ch] += gt * ut;
                    for j in 0..=t {
                        gk[ch * l + j] += gt * c.u[at(b, t - j, ch)] as f64;
                    }
                }
            }
        }
        (y, gu, gk, gd)
    }

    /// Largest |got − want| relative to the largest |want| (1 when all of want is zero).
    fn rel_err(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max) / scale
    }

    /// Tolerance of f32 results against the f64 reference, as the largest error relative to
    /// the output's largest magnitude. Observed: ≤ 5e-7 up to T = 257 and 1e-6 (direct) /
    /// 3e-7 (FFT) at T = 1100. Relative to the largest value rather than each element's own,
    /// because an f32 FFT's error (~ε·log N) is relative to the signal's norm.
    const TOL: f64 = 1e-5;

    const METHODS: [LongConvMethod; 2] = [LongConvMethod::Direct, LongConvMethod::Fft];

    #[test]
    fn fft_len_is_the_smallest_even_2a3b_at_least_2t() {
        assert_eq!(fft_len(0), 2);
        assert_eq!(fft_len(1), 2);
        assert_eq!(fft_len(2), 4);
        assert_eq!(fft_len(3), 6);
        assert_eq!(fft_len(5), 12);
        assert_eq!(fft_len(100), 216);
        assert_eq!(fft_len(1024), 2048);
        assert_eq!(fft_len(1025), 2304);
        let smooth = |mut n: usize| {
            for p in [2, 3] {
                while n.is_multiple_of(p) {
                    n /= p;
                }
            }
            n == 1
        };
        for len in 1..600 {
            let n = fft_len(len);
            assert!(n.is_multiple_of(2) && n >= 2 * len && smooth(n), "len {len}: {n}");
            assert!((2 * len..n).all(|m| m % 2 == 1 || !smooth(m)), "len {len}: {n} is not the smallest");
        }
    }

    #[test]
    fn fft_and_direct_match_the_f64_reference() {
        let shapes = [
            (1, 1, 1, 1),
            (2, 1, 3, 4),
            (2, 2, 5, 2),
            (3, 7, 3, 7),
            (2, 13, 17, 20),
            (2, 64, 40, 64),
            (1, 100, 24, 131),
            (2, 257, 16, 300),
            (1, 1100, 4, 1100),
        ];
        for (seed, &(b, t, c, l)) in shapes.iter().enumerate() {
            let case = Case::new(b, t, c, l, seed as u64);
            let gy = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(100 + seed as u64));
            let (y, gu, gk, gd) = reference(&case, &gy);
            for method in METHODS {
                let what = format!("{method:?} B={b} T={t} C={c} L={l}");
                let (mgu, mgk, mgd) = case.backward(method, &gy);
                let errs = [rel_err(&case.forward(method), &y), rel_err(&mgu, &gu), rel_err(&mgk, &gk), rel_err(&mgd, &gd)];
                assert!(errs.iter().all(|&e| e < TOL), "{what}: relative errors (y, gu, gk, gd) {errs:?}");
                // Taps at and past T are not used: exactly no gradient.
                for ch in 0..c {
                    assert!(mgk[ch * l + t..(ch + 1) * l].iter().all(|&v| v == 0.0), "{what}");
                }
            }
        }
    }

    #[test]
    fn transpose_matches_a_plain_loop_with_and_without_avx2() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (rows, cols) in [(1, 1), (8, 8), (16, 24), (13, 19), (7, 9), (33, 8), (8, 5)] {
            let (ss, ds) = (cols + 3, rows + 5);
            let src = rand_vec(rows * ss, &mut rng);
            let mut want = vec![-1.0; cols * ds];
            for i in 0..rows {
                for j in 0..cols {
                    want[j * ds + i] = src[i * ss + j];
                }
            }
            for avx in [false, has_fma()] {
                let mut got = vec![-1.0; cols * ds];
                transpose(&src, ss, &mut got, ds, rows, cols, avx);
                assert_eq!(got, want, "{rows}x{cols} avx {avx}");
            }
        }
    }

    #[test]
    fn portable_and_avx2_direct_kernels_agree() {
        // Both builds run on this machine only if it has AVX2 + FMA; the tests above then
        // check the AVX2 one, and this one the portable one against it.
        if !has_fma() {
            return;
        }
        let case = Case::new(2, 23, 27, 23, 5);
        let LongConvShape { len, channels: cc, .. } = case.shape;
        let kt = transposed_taps(&case.k, &case.shape);
        let gy = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(6));
        let lags = Lags { u: &case.u, gy: &gy, batch: 2, cc, len };
        let taps = Taps { src: &case.u[len * cc..], kt: &kt, d: &case.d, cc, len };
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()));
        let mut out = [vec![0.5f32; len * cc], vec![0.5f32; len * cc]];
        for (o, fma) in out.iter_mut().zip([false, true]) {
            for (i, dst) in o.chunks_mut(ROWS * cc).enumerate() {
                taps.rows::<true>(fma, i * ROWS, dst, false);
            }
        }
        assert!(close(&out[0], &out[1]), "causal rows");
        for (o, fma) in out.iter_mut().zip([false, true]) {
            for (i, dst) in o.chunks_mut(ROWS * cc).enumerate() {
                taps.rows::<false>(fma, i * ROWS, dst, true);
            }
        }
        assert!(close(&out[0], &out[1]), "anti-causal rows, accumulated");
        for (o, fma) in out.iter_mut().zip([false, true]) {
            for (i, dst) in o.chunks_mut(ROWS * cc).enumerate() {
                lags.rows(fma, i * ROWS, dst);
            }
        }
        assert!(close(&out[0], &out[1]), "lags");
    }

    #[test]
    fn auto_takes_direct_below_the_crossover_and_fft_from_it() {
        for (t, expect) in [(FFT_MIN_LEN - 1, LongConvMethod::Direct), (FFT_MIN_LEN, LongConvMethod::Fft)] {
            let case = Case::new(1, t, 3, t + 2, 7);
            assert_eq!(case.forward(LongConvMethod::Auto), case.forward(expect), "T={t}");
            let gy = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(8));
            assert_eq!(case.backward(LongConvMethod::Auto, &gy), case.backward(expect, &gy), "T={t}");
        }
    }

    /// Σ w·y in f64 for the case's current parameters.
    fn functional(case: &Case, method: LongConvMethod, w: &[f32]) -> f64 {
        case.forward(method).iter().zip(w).map(|(&y, &w)| y as f64 * w as f64).sum()
    }

    /// u, k or d of the case.
    fn param(case: &mut Case, which: usize) -> &mut Vec<f32> {
        match which {
            0 => &mut case.u,
            1 => &mut case.k,
            _ => &mut case.d,
        }
    }

    #[test]
    fn gradients_match_central_differences() {
        // y is linear in each of u, k and d, so a central difference is exact up to the
        // rounding of the f32 forward; a step of 0.1 keeps that rounding small.
        let h = 0.1f32;
        for method in METHODS {
            for (b, t, c, l) in [(2, 9, 3, 12), (1, 33, 2, 40)] {
                let mut case = Case::new(b, t, c, l, 11);
                let w = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(12));
                let (gu, gk, gd) = case.backward(method, &w);
                let grads = [gu, gk, gd];
                for (p, grad) in grads.iter().enumerate() {
                    let scale = grad.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
                    for (i, &analytic) in grad.iter().enumerate() {
                        let old = param(&mut case, p)[i];
                        param(&mut case, p)[i] = old + h;
                        let plus = functional(&case, method, &w);
                        param(&mut case, p)[i] = old - h;
                        let minus = functional(&case, method, &w);
                        param(&mut case, p)[i] = old;
                        let fd = (plus - minus) / (2.0 * h as f64);
                        let err = (fd - analytic as f64).abs();
                        assert!(err <= 1e-3 * scale + 1e-4, "{method:?} B={b} T={t} C={c} L={l} param {p} index {i}: analytic {analytic} vs fd {fd}");
                    }
                }
            }
        }
    }

    #[test]
    fn outputs_before_a_changed_input_do_not_change() {
        let (t, s) = (40, 17);
        for method in METHODS {
            let mut case = Case::new(3, t, 5, 48, 21);
            let before = case.forward(method);
            let cc = case.shape.channels;
            for ch in 0..cc {
                case.u[s * cc + ch] += 3.0; // batch item 0, time s
            }
            let after = case.forward(method);
            let scale = before.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = |range: std::ops::Range<usize>| range.map(|i| (after[i] - before[i]).abs()).fold(0.0f32, f32::max);
            // Direct summation never reads u[s] for t < s: bit-identical. The FFT mixes every
            // time step into every bin, and items 0 and 1 share a transform, so there the
            // earlier outputs and item 1 move by rounding only.
            let noise = if method == LongConvMethod::Direct { 0.0 } else { 1e-5 * scale };
            assert!(diff(0..s * cc) <= noise, "{method:?}: an output before the change moved by {}", diff(0..s * cc));
            assert!(diff(s * cc..(s + 1) * cc) > 0.1, "{method:?}: the output at the change did not move");
            assert!(diff(t * cc..2 * t * cc) <= noise, "{method:?}: batch item 1 moved by {}", diff(t * cc..2 * t * cc));
            assert_eq!(diff(2 * t * cc..3 * t * cc), 0.0, "{method:?}: batch item 2 moved");
        }
    }

    #[test]
    fn backward_adds_into_the_buffers_and_skips_those_not_given() {
        for method in METHODS {
            let case = Case::new(2, 19, 18, 23, 31);
            let mut rng = ChaCha8Rng::seed_from_u64(32);
            let gy = rand_vec(case.u.len(), &mut rng);
            let (gu, gk, gd) = case.backward(method, &gy);
            let (gu0, gk0, gd0) = (rand_vec(gu.len(), &mut rng), rand_vec(gk.len(), &mut rng), rand_vec(gd.len(), &mut rng));
            let (mut gu1, mut gk1, mut gd1) = (gu0.clone(), gk0.clone(), gd0.clone());
            long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, Some(&mut gu1), Some(&mut gk1), Some(&mut gd1)).unwrap();
            for (got, (start, fresh)) in [(&gu1, (&gu0, &gu)), (&gk1, (&gk0, &gk)), (&gd1, (&gd0, &gd))] {
                for ((&g, &s), &f) in got.iter().zip(start).zip(fresh) {
                    assert!((g - (s + f)).abs() <= 1e-5 * (1.0 + f.abs()), "{method:?}: {g} != {s} + {f}");
                }
            }
            // One gradient at a time: the same values, the others untouched.
            let mut only_gk = vec![0.0; gk.len()];
            long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, None, Some(&mut only_gk), None).unwrap();
            assert_eq!(only_gk, gk, "{method:?}");
            let mut only_gu = vec![0.0; gu.len()];
            long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, Some(&mut only_gu), None, None).unwrap();
            assert_eq!(only_gu, gu, "{method:?}");
            let mut only_gd = vec![0.0; gd.len()];
            long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, None, None, Some(&mut only_gd)).unwrap();
            assert_eq!(only_gd, gd, "{method:?}");
            long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, None, None, None).unwrap();
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let case = Case::new(2, 8, 3, 10, 41);
        let s = case.shape;
        let n = case.u.len();
        let is_shape = |r: Result<()>| matches!(r, Err(Error::Shape { .. }));
        for method in [LongConvMethod::Auto, LongConvMethod::Direct, LongConvMethod::Fft] {
            let fwd = |shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out_len: usize| {
                long_conv_forward_with(method, shape, u, k, d, &mut vec![0.0; out_len])
            };
            assert!(fwd(&s, &case.u, &case.k, &case.d, n).is_ok());
            assert!(is_shape(fwd(&s, &case.u[1..], &case.k, &case.d, n)), "short u");
            assert!(is_shape(fwd(&s, &case.u, &case.k[1..], &case.d, n)), "short k");
            assert!(is_shape(fwd(&s, &case.u, &case.k, &case.d[1..], n)), "short d");
            assert!(is_shape(fwd(&s, &case.u, &case.k, &case.d, n + 1)), "long out");
            // L < T, with slices that match the shape given.
            let short = LongConvShape { filter_len: 7, ..s };
            assert!(is_shape(fwd(&short, &case.u, &case.k[..3 * 7], &case.d, n)), "filter shorter than the sequence");
            let huge = LongConvShape { batch: usize::MAX, ..s };
            assert!(is_shape(fwd(&huge, &case.u, &case.k, &case.d, n)), "overflowing shape");

            let gy = vec![0.0; n];
            let bwd = |gy: &[f32], gu: Option<&mut [f32]>, gk: Option<&mut [f32]>, gd: Option<&mut [f32]>| {
                long_conv_backward_with(method, &s, &case.u, &case.k, &case.d, gy, gu, gk, gd)
            };
            assert!(bwd(&gy, Some(&mut vec![0.0; n]), Some(&mut [0.0; 30]), Some(&mut [0.0; 3])).is_ok());
            assert!(is_shape(bwd(&gy[1..], None, None, None)), "short grad_out");
            assert!(is_shape(bwd(&gy, Some(&mut vec![0.0; n - 1]), None, None)), "short grad_u");
            assert!(is_shape(bwd(&gy, None, Some(&mut [0.0; 24]), None)), "grad_k of T taps instead of L");
            assert!(is_shape(bwd(&gy, None, None, Some(&mut [0.0; 4]))), "long grad_d");
            let r = long_conv_backward_with(method, &short, &case.u, &case.k[..21], &case.d, &gy, None, None, None);
            assert!(is_shape(r), "backward with a filter shorter than the sequence");
        }
    }

    #[test]
    fn zero_sizes_are_no_ops() {
        for (b, t, c, l) in [(0, 5, 3, 5), (2, 0, 3, 0), (2, 5, 0, 5)] {
            let case = Case::new(b, t, c, l, 51);
            for method in METHODS {
                assert_eq!(case.forward(method).len(), b * t * c);
                let (gu, gk, gd) = case.backward(method, &vec![0.0; case.u.len()]);
                assert!(gu.iter().chain(&gk).chain(&gd).all(|&v| v == 0.0));
            }
        }
    }
}
