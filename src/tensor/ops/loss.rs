//! Reductions and the fused log-softmax + cross-entropy loss.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::Tensor;

/// Target value that the loss ignores (padding positions).
pub const IGNORE_INDEX: i64 = -1;

/// Rows per parallel task in the loss kernels.
const ROWS_PER_TASK: usize = 16;

/// Log-sum-exp of one row of logits.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    max + sum.ln()
}

struct CrossEntropyBack {
    logits: Var,
    targets: Vec<i64>,
    lse: Vec<f32>,
    count: usize,
}
impl BackwardOp for CrossEntropyBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) {
        let logits = ctx.value(self.logits);
        let v = *logits.shape().last().unwrap_or(&1);
        let scale = g[0] / self.count as f32;
        let (targets, lse) = (&self.targets, &self.lse);
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
                        let l = lse[i];
                        grow.iter_mut().zip(lrow).for_each(|(gv, &x)| *gv += scale * (x - l).exp());
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
    /// [`IGNORE_INDEX`]. Log-softmax, the loss and (in backward) its gradient are fused: the
    /// probabilities are never stored.
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
        let mut lse = vec![0.0f32; rows];
        // Per-task partial sums, added in task order: the loss does not depend on how rayon
        // schedules the tasks.
        let partials: Vec<f64> = lse
            .par_chunks_mut(ROWS_PER_TASK)
            .zip(data.par_chunks(v * ROWS_PER_TASK))
            .enumerate()
            .map(|(task, (lse, lrows))| {
                let mut acc = 0.0f64;
                for (r, (l, row)) in lse.iter_mut().zip(lrows.chunks(v)).enumerate() {
                    let t = targets[task * ROWS_PER_TASK + r];
                    if t == IGNORE_INDEX {
                        continue;
                    }
                    *l = log_sum_exp(row);
                    acc += (*l - row[t as usize]) as f64;
                }
                acc
            })
            .collect();
        let total: f64 = partials.iter().sum();
        let out = Tensor::new(vec![], vec![(total / count as f64) as f32])?;
        Ok(self.record(out, &[logits], CrossEntropyBack { logits, targets: targets.to_vec(), lse, count }))
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
