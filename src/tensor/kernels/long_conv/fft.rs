//! The FFT path, O(T log T) per column: complex FFTs of size N ≥ 2T carrying two batch items
//! each, filter spectra computed once per call and shared over the batch.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::spectra::Spectra;
use super::{fft_len, transpose, LongConvShape, TILE_ROWS};
use crate::tensor::cpu::{avx2_fma, Avx2Fma};
use crate::tensor::memory::Scratch;

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
/// taken when the CPU has them (an `Avx2Fma` token, cached), and as it is. For the
/// element-wise passes over spectra and columns, which the compiler vectorises itself.
macro_rules! with_avx2 {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if avx2_fma().is_some() {
                // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA.
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
fn gather_columns(src: &[f32], cc: usize, len: usize, c0: usize, width: usize, cols: &mut Vec<f32>, simd: Option<Avx2Fma>) -> usize {
    let stride = len.div_ceil(16) * 16 + 16;
    cols.resize(width * stride, 0.0);
    transpose(&src[c0..], cc, cols, stride, len, width, simd);
    stride
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
    let simd = avx2_fma();
    dst.par_chunks_mut(t_len * cc).zip(src.par_chunks(t_len * cc)).enumerate().for_each(|(b, (dst_b, src_b))| {
        dst_b.par_chunks_mut(TILE_ROWS * cc).zip(src_b.par_chunks(TILE_ROWS * cc)).enumerate().for_each_init(
            || vec![0.0f32; TILE_ROWS * cc],
            |tile, (t, (dst_t, src_t))| {
                let rows = dst_t.len() / cc;
                transpose(&cbt[b * t_len + t * TILE_ROWS..], nb * t_len, tile, cc, cc, rows, simd); // (rows, C)
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

pub(super) fn forward_fft(shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out: &mut [f32]) {
    let (nb, t_len, cc) = (shape.batch, shape.len, shape.channels);
    let plans = Plans::new(fft_len(t_len));
    let n = plans.n;
    let kspec = filter_spectra(&plans, shape, k); // (C, N)
    let cb = channel_block(cc);
    let simd = avx2_fma();
    let item = |b: usize| &u[b * t_len * cc..][..t_len * cc]; // (T, C)
    let mut conv = Scratch::new(cc * nb * t_len); // (C, B, T): Σ_s k[c, t−s]·u[b, s, c]
    conv.par_chunks_mut(cb * nb * t_len).enumerate().for_each_init(
        || plans.work(),
        |w, (blk, chunk)| {
            let c0 = blk * cb;
            let width = chunk.len() / (nb * t_len);
            let Work { buf, scratch, cols: [c_re, c_im, ..], .. } = w;
            for (b0, b1) in batch_pairs(nb) {
                let stride = gather_columns(item(b0), cc, t_len, c0, width, c_re, simd); // (width, T)
                if let Some(b1) = b1 {
                    gather_columns(item(b1), cc, t_len, c0, width, c_im, simd);
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
pub(super) fn backward_fft(shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], gy: &[f32], grad_u: Option<&mut [f32]>, grad_k: Option<&mut [f32]>) {
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
    let simd = avx2_fma();
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
            let mut cross = Spectra::zeroed(if gk_blk.is_some() { width * n } else { 0 });
            for (b0, b1) in batch_pairs(nb) {
                let stride = gather_columns(&gy[item(b0)], cc, t_len, c0, width, g_re, simd); // (width, T)
                if let Some(b1) = b1 {
                    gather_columns(&gy[item(b1)], cc, t_len, c0, width, g_im, simd);
                }
                if gk_blk.is_some() {
                    gather_columns(&u[item(b0)], cc, t_len, c0, width, u_re, simd);
                    if let Some(b1) = b1 {
                        gather_columns(&u[item(b1)], cc, t_len, c0, width, u_im, simd);
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
