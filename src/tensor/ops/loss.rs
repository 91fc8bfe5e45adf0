//! Reductions and the fused log-softmax + cross-entropy loss.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::Tensor;

/// Target value that the loss ignores (padding positions).
pub const IGNORE_INDEX: i64 = -1;

/// Rows per parallel task in the loss kernels.
const ROWS_PER_TASK: usize = 16;

/// Log-sum-exp of one row of logits (exact libm `exp`; used outside the hot loss).
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    max + sum.ln()
}

/// `exp(x)` for `x <= 0` (inputs are `logit - max` or `logit - lse`), Cephes' `expf`
/// polynomial: relative error ~1e-7, branch-free so the row loops vectorize. Results below
/// e^-87 are flushed towards 2^-126 (negligible next to the row's largest term, 1).
#[inline(always)]
pub(crate) fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to nearest
    let x = x.clamp(-87.0, 0.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits((((n as i32) + 127) << 23) as u32)
}

const LANES: usize = 8;

/// Log-sum-exp of one row with the fast exp (8 independent lanes, vectorizable).
#[inline(always)]
fn row_lse_lanes(row: &[f32]) -> f32 {
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut m = [f32::NEG_INFINITY; LANES];
    for c in chunks.clone() {
        for j in 0..LANES {
            m[j] = if c[j] > m[j] { c[j] } else { m[j] };
        }
    }
    let mut max = tail.iter().fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    max = m.iter().fold(max, |a, &v| if v > a { v } else { a });
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

/// Writes `out[i] = softmax(row)[i] * weight` and returns the row's log-sum-exp: one read of
/// the row, the exponentials written once, then scaled while the row is still in cache.
#[inline(always)]
fn row_probs_lanes(out: &mut [f32], row: &[f32], weight: f32) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    if !max.is_finite() {
        let lse = log_sum_exp(row); // all -inf, or inf/NaN present: the exact path's semantics
        out.iter_mut().zip(row).for_each(|(o, &x)| *o = (x - lse).exp() * weight);
        return lse;
    }
    let mut s = [0.0f32; LANES];
    let (mut oc, rc) = (out.chunks_exact_mut(LANES), row.chunks_exact(LANES));
    let tail_in = rc.remainder();
    for (o, c) in (&mut oc).zip(rc) {
        for j in 0..LANES {
            o[j] = exp_nonpos(c[j] - max);
            s[j] += o[j];
        }
    }
    let mut sum: f32 = s.iter().sum();
    for (o, &x) in oc.into_remainder().iter_mut().zip(tail_in) {
        *o = exp_nonpos(x - max);
        sum += *o;
    }
    let scale = weight / sum;
    out.iter_mut().for_each(|o| *o *= scale);
    max + sum.ln()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_probs_avx2(out: &mut [f32], row: &[f32], weight: f32) -> f32 {
    row_probs_lanes(out, row, weight)
}

fn row_probs(out: &mut [f32], row: &[f32], weight: f32, avx2: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `has_avx2` checked the CPU features at run time.
        return unsafe { row_probs_avx2(out, row, weight) };
    }
    let _ = avx2;
    row_probs_lanes(out, row, weight)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_lse_avx2(row: &[f32]) -> f32 {
    row_lse_lanes(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_grad_avx2(grow: &mut [f32], lrow: &[f32], lse: f32, scale: f32) {
    row_grad_lanes(grow, lrow, lse, scale)
}

fn row_lse(row: &[f32], avx2: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `has_avx2` checked the CPU features at run time.
        return unsafe { row_lse_avx2(row) };
    }
    let _ = avx2;
    row_lse_lanes(row)
}

fn row_grad(grow: &mut [f32], lrow: &[f32], lse: f32, scale: f32, avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `has_avx2` checked the CPU features at run time.
        return unsafe { row_grad_avx2(grow, lrow, lse, scale) };
    }
    let _ = avx2;
    row_grad_lanes(grow, lrow, lse, scale)
}

struct CrossEntropyBack {
    logits: Var,
    targets: Vec<i64>,
    lse: Vec<f32>,
    count: usize,
    /// `softmax(logits) / count` (zero rows for ignored targets), computed in the forward
    /// pass while each row was in cache; consumed by the first backward.
    probs: RefCell<Option<Vec<f32>>>,
}
impl BackwardOp for CrossEntropyBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) {
        let logits = ctx.value(self.logits);
        let v = *logits.shape().last().unwrap_or(&1);
        let scale = g[0] / self.count as f32;
        let targets = &self.targets;
        let subtract_targets = |gl: &mut [f32]| {
            for (row, &t) in gl.chunks_mut(v).zip(targets) {
                if t != IGNORE_INDEX {
                    row[t as usize] -= scale;
                }
            }
        };
        if let Some(mut probs) = self.probs.borrow_mut().take() {
            if g[0] != 1.0 {
                probs.par_chunks_mut(v * ROWS_PER_TASK).for_each(|c| c.iter_mut().for_each(|p| *p *= g[0]));
            }
            // Usually the logits have no gradient yet and the buffer simply becomes it.
            ctx.add_grad(self.logits, probs);
            if let Some(gl) = ctx.grad(self.logits) {
                subtract_targets(gl);
            }
            return;
        }
        let lse = &self.lse;
        let avx2 = has_avx2();
        if let Some(gl) = ctx.grad(self.logits) {
            gl.par_chunks_mut(v * ROWS_PER_TASK)
                .zip(logits.data().par_chunks(v * ROWS_PER_TASK))
                .enumerate()
                .for_each(|(task, (grows, lrows))| {
                    for (r, (grow, lrow)) in grows.chunks_mut(v).zip(lrows.chunks(v)).enumerate() {
                        let i = task * ROWS_PER_TASK + r;
                        let t = targets[i];
                        if t == IGNORE_INDEX {
                            continue;
                        }
                        row_grad(grow, lrow, lse[i], scale, avx2);
                        grow[t as usize] -= scale;
                    }
                });
        }
    }
}

struct SumBack {
    x: Var,
    weights: Option<Vec<f32>>,
}
impl BackwardOp for SumBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) {
        if let Some(gx) = ctx.grad(self.x) {
            match &self.weights {
                Some(w) => gx.iter_mut().zip(w).for_each(|(a, w)| *a += g[0] * w),
                None => gx.iter_mut().for_each(|a| *a += g[0]),
            }
        }
    }
}

impl Graph {
    /// Mean cross-entropy of `logits` against `targets`, ignoring targets equal to
    /// [`IGNORE_INDEX`]. Log-softmax, the loss and its gradient are fused: when the logits
    /// need a gradient, the forward pass writes `softmax / count` into what becomes the
    /// gradient buffer, and backward only subtracts at the targets.
    ///
    /// # Shapes
    /// logits: (..., V), targets: (...) → scalar
    pub fn cross_entropy(&mut self, logits: Var, targets: &[i64]) -> Result<Var> {
        let shape = self.shape(logits).to_vec();
        let v = *shape.last().ok_or_else(|| Error::shape("cross_entropy", "logits are a scalar"))?;
        let rows = self.value(logits).numel() / v.max(1);
        if targets.len() != rows {
            return Err(Error::shape("cross_entropy", format!("{} targets for {rows} rows of logits", targets.len())));
        }
        if let Some(&bad) = targets.iter().find(|&&t| t != IGNORE_INDEX && (t < 0 || t as usize >= v)) {
            return Err(Error::shape("cross_entropy", format!("target {bad} is outside the vocabulary of {v}")));
        }
        let count = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
        if count == 0 {
            return Err(Error::shape("cross_entropy", "every target is ignored"));
        }
        let data = self.value(logits).data();
        let avx2 = has_avx2();
        let mut lse = vec![0.0f32; rows];
        // In a training graph a backward pass follows, so the probabilities are written now,
        // while each row is read anyway; backward then only subtracts at the targets. Eval
        // graphs (which still record parameters) skip the buffer; a backward there recomputes.
        let weight = 1.0 / count as f32;
        let mut probs = (self.training() && self.requires_grad(logits)).then(|| vec![0.0f32; rows * v]);
        let mut prob_chunks: Vec<Option<&mut [f32]>> = match probs.as_mut() {
            Some(p) => p.chunks_mut(v * ROWS_PER_TASK).map(Some).collect(),
            None => (0..rows.div_ceil(ROWS_PER_TASK)).map(|_| None).collect(),
        };
        // Per-task partial sums, added in task order: the loss does not depend on how rayon
        // schedules the tasks.
        let partials: Vec<f64> = lse
            .par_chunks_mut(ROWS_PER_TASK)
            .zip(data.par_chunks(v * ROWS_PER_TASK))
            .zip(prob_chunks.par_iter_mut())
            .enumerate()
            .map(|(task, ((lse, lrows), probs))| {
                let mut acc = 0.0f64;
                for (r, (l, row)) in lse.iter_mut().zip(lrows.chunks(v)).enumerate() {
                    let t = targets[task * ROWS_PER_TASK + r];
                    if t == IGNORE_INDEX {
                        continue;
                    }
                    *l = match probs.as_deref_mut() {
                        Some(p) => row_probs(&mut p[r * v..(r + 1) * v], row, weight, avx2),
                        None => row_lse(row, avx2),
                    };
                    acc += (*l - row[t as usize]) as f64;
                }
                acc
            })
            .collect();
        drop(prob_chunks);
        let total: f64 = partials.iter().sum();
        let out = Tensor::new(vec![], vec![(total / count as f64) as f32])?;
        let back = CrossEntropyBack { logits, targets: targets.to_vec(), lse, count, probs: RefCell::new(probs) };
        Ok(self.record(out, &[logits], back))
    }

    /// Sum of all elements.
    pub fn sum(&mut self, x: Var) -> Var {
        let s: f64 = self.value(x).data().iter().map(|&v| v as f64).sum();
        let out = Tensor::full(vec![], s as f32);
        self.record(out, &[x], SumBack { x, weights: None })
    }

    /// `Σ x · weights` with constant weights of the same size (the golden files' loss
    /// `sum(output * R)`).
    pub fn weighted_sum(&mut self, x: Var, weights: &[f32]) -> Result<Var> {
        if weights.len() != self.value(x).numel() {
            return Err(Error::shape("weighted_sum", "weights and input differ in size"));
        }
        let s: f64 = self.value(x).data().iter().zip(weights).map(|(&a, &b)| a as f64 * b as f64).sum();
        let out = Tensor::full(vec![], s as f32);
        Ok(self.record(out, &[x], SumBack { x, weights: Some(weights.to_vec()) }))
    }
}

/// Log-softmax of one row (used by sampling and evaluation outside the tape).
pub fn log_softmax_row(row: &[f32]) -> Vec<f32> {
    let l = log_sum_exp(row);
    row.iter().map(|&x| x - l).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The gradient from the forward pass's stored probabilities (training graph) equals the
    /// recomputed one (second backward, eval graph), and both scale with the seed.
    #[test]
    fn stored_probabilities_give_the_recomputed_gradient() {
        let (rows, v) = (5, 7);
        let logits: Vec<f32> = (0..rows * v).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.3).collect();
        let targets = [3i64, IGNORE_INDEX, 0, 6, 2];
        let count = 4.0f32;
        let mut want = vec![0.0f32; rows * v];
        for (r, &t) in targets.iter().enumerate() {
            if t == IGNORE_INDEX {
                continue;
            }
            let row = &logits[r * v..(r + 1) * v];
            let l = log_sum_exp(row);
            for j in 0..v {
                want[r * v + j] = ((row[j] - l).exp() - (j as i64 == t) as u8 as f32) / count;
            }
        }
        for (seed, training) in [(1.0f32, true), (2.5, true), (1.0, false)] {
            let mut g = Graph::new(training);
            let x = g.leaf(Tensor::new(vec![rows, v], logits.clone()).unwrap());
            let loss = g.cross_entropy(x, &targets).unwrap();
            g.backward_with(loss, vec![seed]).unwrap();
            let got = g.grad(x).unwrap().to_vec();
            for (a, b) in got.iter().zip(&want) {
                assert!((a - seed * b).abs() < 1e-6, "seed {seed}, training {training}: {a} vs {}", seed * b);
            }
            g.backward_with(loss, vec![seed]).unwrap(); // probabilities consumed: recomputes
            for (a, b) in g.grad(x).unwrap().iter().zip(&want) {
                assert!((a - seed * b).abs() < 1e-6, "second backward, seed {seed}");
            }
        }
    }

    #[test]
    fn fast_row_lse_matches_exact() {
        for n in [1usize, 7, 8, 9, 100, 5000] {
            let row: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21).collect();
            for avx2 in [false, has_avx2()] {
                let (a, b) = (row_lse(&row, avx2), log_sum_exp(&row));
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "n={n}: {a} vs {b}");
            }
        }
        assert_eq!(row_lse(&[f32::NEG_INFINITY, 0.0], true), 0.0);
    }
}
