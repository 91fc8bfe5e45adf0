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

mod direct;
mod fft;
#[cfg(target_arch = "x86_64")]
mod simd;
mod spectra;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::cpu::{avx2_fma, Avx2Fma};
use crate::tensor::memory::Scratch;
use direct::{forward_direct, grad_k_direct, grad_u_direct};
use fft::{backward_fft, forward_fft};

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
    let simd = avx2_fma();
    let mut kt = Scratch::new(shape.len * cc); // (T, C)
    kt.par_chunks_mut(TILE_ROWS * cc).enumerate().for_each(|(tile, rows)| {
        transpose(&k[tile * TILE_ROWS..], l, rows, cc, cc, rows.len() / cc, simd);
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

/// `dst[j * ds + i] = src[i * ss + j]` for `i < rows`, `j < cols`: 8 × 8 tiles in AVX2
/// registers when `simd` is given, single values at the edges.
fn transpose(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, rows: usize, cols: usize, simd: Option<Avx2Fma>) {
    let (mut r8, mut c8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if simd.is_some() {
        (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA; the tiles are
        // bounds-checked slices.
        unsafe { simd::transpose_tiles(src, ss, dst, ds, r8, c8) };
    }
    let _ = simd;
    for i in 0..rows {
        for j in if i < r8 { c8 } else { 0 }..cols {
            dst[j * ds + i] = src[i * ss + j];
        }
    }
}
