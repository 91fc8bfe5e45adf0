//! The CPU's arithmetic peak, measured: every thread of the pool runs a loop of independent
//! fused multiply-adds (12 accumulators, enough to cover the latency of the FMA units of
//! current x86 cores), and the flops of all threads over the slowest thread's time are the
//! peak. With AVX512_BF16, the same loop of `vdpbf16ps` gives the bf16 dot-product peak.
//! `convlm bench` divides a step's GFLOP/s by it; `scripts/peak.sh` prints it.

use std::time::Instant;

use serde::Serialize;

use super::cpu;

/// Measured peaks of this CPU on the current rayon pool.
#[derive(Clone, Debug, Serialize)]
pub struct Peak {
    /// `cpu::model_name()`.
    pub cpu: String,
    /// Threads that ran the loops at once.
    pub threads: usize,
    /// The vector instructions of the fp32 loop: `avx512`, `avx2` or `scalar`.
    pub fp32_isa: &'static str,
    /// fp32 FMA peak, GFLOP/s (a fused multiply-add counts 2).
    pub fp32_gflops: f64,
    /// bf16 dot-product peak, GFLOP/s (`vdpbf16ps`: 32 multiply-adds per instruction), on
    /// CPUs with AVX512_BF16.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bf16_gflops: Option<f64>,
}

/// Iterations of one timed loop (12 instructions each): ~0.1 s on a 3 GHz core.
const ITERS: u64 = 20_000_000;

/// Measures the peaks with every thread of the current pool busy at once, best of `reps`
/// runs each.
pub fn measure(reps: usize) -> Peak {
    let threads = rayon::current_num_threads();
    let (fp32_isa, fp32_flop_per_iter, fp32_loop): (&'static str, f64, fn(u64) -> f32) = fp32_loop();
    let fp32_gflops = best_rate(reps, fp32_flop_per_iter, fp32_loop);
    let bf16_gflops = bf16_loop().map(|run| best_rate(reps, BF16_FLOP_PER_ITER, run));
    Peak { cpu: cpu::model_name(), threads, fp32_isa, fp32_gflops: round(fp32_gflops), bf16_gflops: bf16_gflops.map(round) }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// GFLOP/s of `run(ITERS)` on every thread of the pool at once, best of `reps`.
fn best_rate(reps: usize, flop_per_iter: f64, run: fn(u64) -> f32) -> f64 {
    (0..reps.max(1))
        .map(|_| {
            let per_thread: Vec<(f64, f32)> = rayon::broadcast(|_| {
                let t0 = Instant::now();
                let sink = run(ITERS);
                (t0.elapsed().as_secs_f64(), sink)
            });
            let slowest = per_thread.iter().map(|p| p.0).fold(0.0, f64::max);
            std::hint::black_box(per_thread.iter().map(|p| p.1).sum::<f32>());
            per_thread.len() as f64 * ITERS as f64 * flop_per_iter / slowest.max(1e-9) / 1e9
        })
        .fold(0.0, f64::max)
}

/// The widest fp32 FMA loop this CPU runs: (its ISA, flops per iteration, the loop).
pub(crate) fn fp32_loop() -> (&'static str, f64, fn(u64) -> f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if cpu::avx512f() && cpu::avx2_fma().is_some() {
            return ("avx512", 12.0 * 16.0 * 2.0, |n| {
                // SAFETY: AVX-512F was detected.
                unsafe { x86::fma512(n) }
            });
        }
        if cpu::avx2_fma().is_some() {
            return ("avx2", 12.0 * 8.0 * 2.0, |n| {
                // SAFETY: the AVX2 + FMA token was made, so the CPU has both.
                unsafe { x86::fma256(n) }
            });
        }
    }
    ("scalar", 12.0 * 2.0, scalar_fma)
}

/// Flops of one iteration of the bf16 loop: 12 instructions of 16 lanes × 2 multiply-adds.
pub(crate) const BF16_FLOP_PER_ITER: f64 = 12.0 * 16.0 * 2.0 * 2.0;

/// The bf16 dot-product loop, where the CPU has AVX512_BF16.
pub(crate) fn bf16_loop() -> Option<fn(u64) -> f32> {
    #[cfg(target_arch = "x86_64")]
    if cpu::avx512_bf16().is_some() {
        return Some(|n| {
            // SAFETY: the bf16 token could be made, so the CPU has AVX512F and AVX512_BF16.
            unsafe { x86::dpbf16(n) }
        });
    }
    None
}

/// Twelve scalar multiply-add chains (CPUs without the vector units above).
fn scalar_fma(n: u64) -> f32 {
    let mut acc = [0.0f32; 12];
    let (a, b) = (std::hint::black_box(1e-10f32), std::hint::black_box(1e-10f32));
    for _ in 0..n {
        for x in acc.iter_mut() {
            *x = a.mul_add(b, *x);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Twelve independent chains of 16-lane FMAs; the operands stay in registers.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(n: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(std::hint::black_box(1e-10)), _mm512_set1_ps(std::hint::black_box(1e-10)));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..n {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(a, b, *x);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    /// Twelve independent chains of 8-lane FMAs.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(n: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(std::hint::black_box(1e-10)), _mm256_set1_ps(std::hint::black_box(1e-10)));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..n {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(a, b, *x);
            }
        }
        let mut out = [0.0f32; 8];
        acc.iter()
            .map(|&x| {
                // SAFETY: `out` holds 8 values.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), x) };
                out.iter().sum::<f32>()
            })
            .sum()
    }

    /// Twelve independent chains of `vdpbf16ps`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dpbf16(n: u64) -> f32 {
        let v = _mm512_set1_ps(std::hint::black_box(1e-10));
        let pairs = _mm512_cvtne2ps_pbh(v, v);
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..n {
            for x in acc.iter_mut() {
                *x = _mm512_dpbf16_ps(*x, pairs, pairs);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_loops_compute_what_they_claim() {
        // n iterations add n·1e-20 to each lane of each of 12 chains (2 per bf16 pair).
        let (isa, flop, run) = super::fp32_loop();
        let lanes = flop / 24.0;
        let got = run(1000) as f64;
        assert!((got / (1000.0 * 12.0 * lanes * 1e-20) - 1.0).abs() < 1e-2, "{isa}: {got}");
        if let Some(run) = super::bf16_loop() {
            // 1e-10 rounds to bf16 first, so a pair adds 2·round(1e-10)².
            let r = crate::tensor::kernels::bf16::round_bf16(1e-10) as f64;
            let got = run(1000) as f64;
            assert!((got / (1000.0 * 12.0 * 16.0 * 2.0 * r * r) - 1.0).abs() < 1e-2, "bf16: {got}");
        }
    }
}
