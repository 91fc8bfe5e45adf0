//! Reductions and the fused log-softmax + cross-entropy loss.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::cpu::avx2_fma;
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::kernels::softmax::{count_targets, log_sum_exp, row_grad, row_lse, softmax_in_place};
use crate::tensor::memory::zeroed;
use crate::tensor::Tensor;

pub use crate::tensor::kernels::softmax::IGNORE_INDEX;

/// Rows per parallel task in the loss kernels.
const ROWS_PER_TASK: usize = 16;

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
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
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
            return Ok(());
        }
        let lse = &self.lse;
        let avx2 = avx2_fma();
        if let Some(gl) = ctx.grad(self.logits) {
            gl.par_chunks_mut(v * ROWS_PER_TASK).zip(logits.data().par_chunks(v * ROWS_PER_TASK)).enumerate().for_each(|(task, (grows, lrows))| {
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
        Ok(())
    }
}

struct SumBack {
    x: Var,
    weights: Option<Vec<f32>>,
}
impl BackwardOp for SumBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        if let Some(gx) = ctx.grad(self.x) {
            match &self.weights {
                Some(w) => gx.iter_mut().zip(w).for_each(|(a, w)| *a += g[0] * w),
                None => gx.iter_mut().for_each(|a| *a += g[0]),
            }
        }
        Ok(())
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
        let count = count_targets("cross_entropy", targets, rows, v)?;
        let data = self.value(logits).data();
        let avx2 = avx2_fma();
        let mut lse = vec![0.0f32; rows];
        // In a training graph a backward pass follows, so the probabilities are written now,
        // while each row is read anyway; backward then only subtracts at the targets. Eval
        // graphs (which still record parameters) skip the buffer; a backward there recomputes.
        let weight = 1.0 / count as f32;
        let mut probs = (self.training() && self.requires_grad(logits)).then(|| zeroed(rows * v)); // ignored rows stay zero
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
                        Some(p) => {
                            let out = &mut p[r * v..(r + 1) * v];
                            out.copy_from_slice(row);
                            softmax_in_place(out, weight, avx2)
                        }
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
}
