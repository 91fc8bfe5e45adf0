//! Row kernels of softmax and cross-entropy over logits: log-sum-exp, softmax in place and
//! the softmax gradient, with a branch-free `exp` so the row loops vectorize (built for
//! AVX2 and FMA where the CPU has them, 16 lanes wide with AVX-512 where it has that; every
//! build gives the same values).

use crate::error::{Error, Result};
use crate::tensor::cpu::{simd_fn, Avx2Fma};

/// Log-sum-exp of one row of logits (exact libm `exp`; used outside the hot loss).
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    max + sum.ln()
}

/// `exp(x)` for `x <= 0` (inputs are `logit - max` or `logit - lse`), Cephes' `expf`
/// polynomial: relative error ~1e-7, branch-free so the row loops vectorize. Results below
/// e^-87 are flushed towards 2^-126 (negligible next to the row's largest term, 1).
#[inline(always)]
pub fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to nearest
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * LOG2E + ROUND; // ROUND + n, with the integer n in its low mantissa bits
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    // 2^n from n's bits, in integer lanes (an `as i32` conversion would not vectorize).
    let biased = shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    y * f32::from_bits(biased << 23)
}

/// Target value that the loss ignores (padding positions).
pub const IGNORE_INDEX: i64 = -1;

/// Checks one target per row of logits, each in `0..vocab_size` or [`IGNORE_INDEX`], and
/// returns how many count (at least one).
pub fn count_targets(op: &'static str, targets: &[i64], rows: usize, vocab_size: usize) -> Result<usize> {
    if targets.len() != rows {
        return Err(Error::shape(op, format!("{} targets for {rows} rows of logits", targets.len())));
    }
    if let Some(&bad) = targets.iter().find(|&&t| t != IGNORE_INDEX && (t < 0 || t as usize >= vocab_size)) {
        return Err(Error::shape(op, format!("target {bad} is outside the vocabulary of {vocab_size}")));
    }
    match targets.iter().filter(|&&t| t != IGNORE_INDEX).count() {
        0 => Err(Error::shape(op, "every target is ignored")),
        count => Ok(count),
    }
}

/// Independent lanes of the row loops: one AVX-512 vector, two AVX2 ones.
const LANES: usize = 16;

/// The largest value of a row, NaNs skipped (16 independent lanes, vectorizable).
#[inline(always)]
fn row_max_lanes(row: &[f32]) -> f32 {
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut m = [f32::NEG_INFINITY; LANES];
    for c in chunks {
        for j in 0..LANES {
            m[j] = if c[j] > m[j] { c[j] } else { m[j] };
        }
    }
    let max = tail.iter().fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    m.iter().fold(max, |a, &v| if v > a { v } else { a })
}

/// Log-sum-exp of one row with the fast exp (16 independent lanes, vectorizable).
#[inline(always)]
fn row_lse_lanes(row: &[f32]) -> f32 {
    let max = row_max_lanes(row);
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    if !max.is_finite() {
        return log_sum_exp(row); // all -inf, or inf/NaN present: the exact path's semantics
    }
    let mut s = [0.0f32; LANES];
    for c in chunks {
        for j in 0..LANES {
            s[j] += exp_nonpos(c[j] - max);
        }
    }
    let sum: f32 = s.iter().sum::<f32>() + tail.iter().map(|&v| exp_nonpos(v - max)).sum::<f32>();
    max + sum.ln()
}

/// `grow += scale * exp(lrow - lse)` with the fast exp.
#[inline(always)]
fn row_grad_lanes(grow: &mut [f32], lrow: &[f32], lse: f32, scale: f32) {
    for (gv, &x) in grow.iter_mut().zip(lrow) {
        *gv += scale * exp_nonpos(x - lse);
    }
}

/// Overwrites `row` with `softmax(row) * weight` and returns its log-sum-exp: one read of
/// the row, the exponentials written in place, then scaled while the row is in cache.
#[inline(always)]
fn softmax_lanes(row: &mut [f32], weight: f32) -> f32 {
    let max = row_max_lanes(row);
    if !max.is_finite() {
        let lse = log_sum_exp(row); // all -inf, or inf/NaN present: the exact path's semantics
        row.iter_mut().for_each(|x| *x = (*x - lse).exp() * weight);
        return lse;
    }
    let mut s = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            c[j] = exp_nonpos(c[j] - max);
            s[j] += c[j];
        }
    }
    let mut sum: f32 = s.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp_nonpos(*x - max);
        sum += *x;
    }
    let scale = weight / sum;
    row.iter_mut().for_each(|x| *x *= scale);
    max + sum.ln()
}

/// Overwrites `row` with `softmax(row) * weight` and returns the row's log-sum-exp (fast
/// exp; the AVX2 + FMA build, or the AVX-512 one, when `simd` is given, from
/// [`crate::tensor::cpu::avx2_fma`]: the same values).
pub fn softmax_in_place(row: &mut [f32], weight: f32, simd: Option<Avx2Fma>) -> f32 {
    softmax_built(simd, row, weight)
}

/// Log-sum-exp of one row (fast exp; the AVX2 or AVX-512 build when `simd` is given).
pub fn row_lse(row: &[f32], simd: Option<Avx2Fma>) -> f32 {
    row_lse_built(simd, row)
}

/// `grow += scale * softmax(lrow)` given the row's log-sum-exp `lse` (fast exp; the AVX2
/// or AVX-512 build when `simd` is given).
pub fn row_grad(grow: &mut [f32], lrow: &[f32], lse: f32, scale: f32, simd: Option<Avx2Fma>) {
    row_grad_built(simd, grow, lrow, lse, scale)
}

simd_fn! {
    fn softmax_built(simd: Option<Avx2Fma>, row: &mut [f32], weight: f32) -> f32 {
        softmax_lanes(row, weight)
    }
}

simd_fn! {
    fn row_lse_built(simd: Option<Avx2Fma>, row: &[f32]) -> f32 {
        row_lse_lanes(row)
    }
}

simd_fn! {
    fn row_grad_built(simd: Option<Avx2Fma>, grow: &mut [f32], lrow: &[f32], lse: f32, scale: f32) {
        row_grad_lanes(grow, lrow, lse, scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::cpu::avx2_fma;

    /// The portable build and the vector one (AVX2, or AVX-512) agree bit for bit.
    #[test]
    fn every_build_gives_the_same_bits() {
        let row: Vec<f32> = (0..5003).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21).collect();
        let run = |simd| {
            let mut r = row.clone();
            let lse = row_lse(&row, simd);
            let lse2 = softmax_in_place(&mut r, 0.25, simd);
            let mut g = vec![0.5f32; row.len()];
            row_grad(&mut g, &row, lse, 0.5, simd);
            (lse.to_bits(), lse2.to_bits(), r.iter().chain(&g).map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(run(None), run(avx2_fma()));
    }

    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0.0f32;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (a, b) = (exp_nonpos(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert!(exp_nonpos(-1000.0) < 1e-37);
    }

    #[test]
    fn fast_row_lse_matches_exact() {
        for n in [1usize, 7, 8, 9, 100, 5000] {
            let row: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21).collect();
            for simd in [None, avx2_fma()] {
                let (a, b) = (row_lse(&row, simd), log_sum_exp(&row));
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "n={n}: {a} vs {b}");
            }
        }
        assert_eq!(row_lse(&[f32::NEG_INFINITY, 0.0], avx2_fma()), 0.0);
    }

    #[test]
    fn softmax_in_place_matches_the_exact_softmax_and_returns_the_lse() {
        for n in [1usize, 7, 8, 9, 5000] {
            let row: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21).collect();
            let lse = log_sum_exp(&row);
            for simd in [None, avx2_fma()] {
                let mut got = row.clone();
                let l = softmax_in_place(&mut got, 0.5, simd);
                assert!((l - lse).abs() <= 1e-5 * lse.abs().max(1.0), "n={n}: lse {l} vs {lse}");
                for (g, &x) in got.iter().zip(&row) {
                    let want = 0.5 * (x - lse).exp();
                    assert!((g - want).abs() <= 1e-6 + 1e-5 * want, "n={n}: {g} vs {want}");
                }
            }
        }
        // -inf entries get (next to) zero probability; NaN rows stay NaN.
        let mut row = vec![f32::NEG_INFINITY, 0.0, 0.0];
        assert!((softmax_in_place(&mut row, 1.0, avx2_fma()) - 2f32.ln()).abs() < 1e-6);
        assert!(row[0] < 1e-37 && (row[1] - 0.5).abs() < 1e-6 && (row[2] - 0.5).abs() < 1e-6, "{row:?}");
        let mut row = vec![f32::NAN, 0.0];
        assert!(softmax_in_place(&mut row, 1.0, avx2_fma()).is_nan());
    }
}
