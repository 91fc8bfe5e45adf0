//! Kernel choices that depend on the CPU, made by measuring on it instead of by its flags:
//! which fp32 GEMM runs on a CPU with AVX-512 (the `gemm` crate's AVX-512 kernels, with
//! convlm's AVX-512 GEMM for the fused head, were twice convlm's AVX2 `sgemm` on a Zen 5,
//! where AVX-512 runs on full-width units, and no faster on a Zen 4, where it runs on
//! 256-bit ones), and from which length the long convolution takes the FFT (a crossover
//! measured on one machine).
//!
//! [`measure`] times the candidates on this CPU (about a second). The run layer caches the
//! result per CPU model and records it in each run, and [`install`]s it, so a resumed run
//! computes with the same kernels — the same bits — as before. Until something is
//! installed, kernels use [`Tuning::by_flags`].

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::cpu;
use super::kernels::long_conv::{self, long_conv_backward_with, long_conv_forward_with, LongConvMethod, LongConvShape, FFT_MIN_LEN};
use super::kernels::matmul::{self, fp32_product_with, Fp32Gemm, Init, Mat};

/// The measured kernel choices of one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuning {
    /// The fp32 GEMM (only a choice on CPUs with both AVX2 and AVX-512: sgemm, or the crate
    /// with zgemm's fused head).
    pub fp32_gemm: Fp32Gemm,
    /// Sequence length from which long convolutions use the FFT (direct summation below).
    pub long_conv_fft_min_len: usize,
}

impl Tuning {
    /// The choice by CPU flags alone ([`Fp32Gemm::by_flags`]); the FFT from [`FFT_MIN_LEN`]
    /// steps.
    pub fn by_flags() -> Self {
        Tuning { fp32_gemm: Fp32Gemm::by_flags(), long_conv_fft_min_len: FFT_MIN_LEN }
    }
}

/// Makes every kernel of this process use `tuning` (a run calls it before its first step,
/// with the tuning it recorded).
pub fn install(tuning: Tuning) {
    matmul::use_fp32_gemm(tuning.fp32_gemm);
    long_conv::use_fft_from(tuning.long_conv_fft_min_len);
}

/// The choices the kernels use now: the installed ones, else [`Tuning::by_flags`].
pub fn active() -> Tuning {
    Tuning { fp32_gemm: matmul::fp32_gemm(), long_conv_fft_min_len: long_conv::fft_min_len() }
}

/// Times the candidates on this CPU (one thread, alternating, best of several runs, so a
/// busy machine disturbs both alike) and returns the faster of each.
pub fn measure() -> Tuning {
    Tuning { fp32_gemm: measure_fp32_gemm(), long_conv_fft_min_len: measure_fft_crossover() }
}

/// Runs `run(candidate)` for each of `candidates` in turn, `reps` rounds; the best time of
/// each.
fn race(reps: usize, candidates: usize, run: &mut dyn FnMut(usize)) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; candidates];
    for _ in 0..reps {
        for (i, b) in best.iter_mut().enumerate() {
            let t0 = Instant::now();
            run(i);
            *b = b.min(t0.elapsed().as_secs_f64());
        }
    }
    best
}

/// `sgemm` against the `gemm` crate where both can run (AVX2 and AVX-512), on the shapes
/// the workloads' layers have: a hidden conv's or MLP's (1024 rows · 384 → 128) and a wide
/// output's (1024 · 128 → 1024), summed. The crate's products come with zgemm's fused head
/// ([`Fp32Gemm::Avx512`]).
fn measure_fp32_gemm() -> Fp32Gemm {
    let flags = Tuning::by_flags().fp32_gemm;
    if cpu::avx2_fma().is_none() || cpu::avx512().is_none() {
        return flags;
    }
    let values = |n: usize, salt: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7919 + salt) % 2003) as f32 / 1001.5 - 1.0).collect() };
    let shapes = [(1024, 384, 128), (1024, 128, 1024)];
    let mut totals = [0.0f64; 2];
    for (m, k, n) in shapes {
        let (a, b) = (values(m * k, 1), values(k * n, 2));
        let (am, bm) = (Mat::row_major(&a, m, k), Mat::row_major(&b, k, n));
        let mut c = vec![0.0f32; m * n];
        let kernels = [Fp32Gemm::Sgemm, Fp32Gemm::Crate];
        let best = race(7, 2, &mut |i| fp32_product_with(kernels[i], &mut c, n, am, bm, Init::Zero, 1));
        totals[0] += best[0];
        totals[1] += best[1];
    }
    if totals[0] < totals[1] {
        Fp32Gemm::Sgemm
    } else {
        Fp32Gemm::Avx512
    }
}

/// Lengths tried for the FFT crossover; past the last, the FFT is taken from twice it.
const CROSSOVER_LENGTHS: [usize; 6] = [48, 64, 96, 128, 192, 256];

/// The smallest tried length from which the FFT (forward and backward, one thread, B = 2,
/// C = 64) is faster than direct summation at it and at every longer tried length.
fn measure_fft_crossover() -> usize {
    let (batch, channels) = (2, 64);
    let mut fft_wins = Vec::new();
    for &len in &CROSSOVER_LENGTHS {
        let shape = LongConvShape::new(batch, len, channels, len);
        let n = batch * len * channels;
        let u: Vec<f32> = (0..n).map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5).collect();
        let k: Vec<f32> = (0..channels * len).map(|i| ((i * 17) % 89) as f32 / 89.0 - 0.5).collect();
        let d = vec![0.5f32; channels];
        let (mut out, mut gu, mut gk) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; channels * len]);
        let methods = [LongConvMethod::Direct, LongConvMethod::Fft];
        let mut step = |i: usize| {
            // Shapes and buffers are consistent by construction: neither call can fail.
            let _ = long_conv_forward_with(methods[i], &shape, &u, &k, &d, &mut out);
            let _ = long_conv_backward_with(methods[i], &shape, &u, &k, &d, &out, Some(&mut gu), Some(&mut gk), None);
        };
        // The first round makes the FFT plans and warms the caches; it does not count.
        race(1, 2, &mut step);
        let best = race(5, 2, &mut step);
        fft_wins.push(best[1] < best[0]);
    }
    crossover(&CROSSOVER_LENGTHS, &fft_wins)
}

/// The first of `lengths` from which `fft_wins` holds to the end; twice the last length
/// when the FFT never wins at the end.
fn crossover(lengths: &[usize], fft_wins: &[bool]) -> usize {
    let tail = fft_wins.iter().rev().take_while(|&&w| w).count();
    match tail {
        0 => 2 * lengths.last().copied().unwrap_or(FFT_MIN_LEN),
        t => lengths[lengths.len() - t],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crossover_is_where_the_fft_starts_winning_for_good() {
        let l = [48, 64, 96, 128];
        assert_eq!(crossover(&l, &[false, false, true, true]), 96);
        assert_eq!(crossover(&l, &[true, false, false, true]), 128, "an early win among losses does not count");
        assert_eq!(crossover(&l, &[true, true, true, true]), 48);
        assert_eq!(crossover(&l, &[false, false, false, false]), 256);
    }

    #[test]
    fn a_measured_tuning_runs_on_this_cpu() {
        let t = measure();
        assert!(CROSSOVER_LENGTHS.contains(&t.long_conv_fft_min_len) || t.long_conv_fft_min_len == 512, "{t:?}");
        if t.fp32_gemm == Fp32Gemm::Sgemm {
            assert!(cpu::avx2_fma().is_some(), "sgemm chosen without AVX2");
        }
        if cpu::avx512().is_none() || cpu::avx2_fma().is_none() {
            assert_eq!(t.fp32_gemm, Tuning::by_flags().fp32_gemm, "no choice to measure here");
        } else {
            assert!(matches!(t.fp32_gemm, Fp32Gemm::Sgemm | Fp32Gemm::Avx512), "{t:?}: the crate alone is no candidate with AVX-512");
        }
    }
}
