//! Normalisation and regularisation: batchnorm (train/eval), layernorm, dropout.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::cpu::{avx2_fma, with_avx2};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::memory::Scratch;
use crate::tensor::Tensor;

/// Rows per parallel task of the normalisations' row loops.
const ROWS: usize = 64;
/// Values per dropout mask block (one random stream each, a task of the pool).
const DROPOUT_BLOCK: usize = 1 << 15;

/// `Σ f(v)` over a row in f64, as eight interleaved partial sums so the loop vectorizes.
#[inline(always)]
fn row_sum(row: &[f32], f: impl Fn(usize, f64) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let body = row.len() / LANES * LANES;
    for i in (0..body).step_by(LANES) {
        for k in 0..LANES {
            acc[k] += f(i + k, row[i + k] as f64);
        }
    }
    let mut total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (i, &v) in row.iter().enumerate().skip(body) {
        total += f(i, v as f64);
    }
    total
}

/// Layer normalisation of one row: `xhat = (row − mean)·istd` and `out = xhat·gamma + beta`,
/// the statistics in f64; returns istd. The tape's layernorm and the step backend's both
/// call it, so a step equals a forward.
#[inline(always)]
pub(crate) fn layernorm_row(row: &[f32], gamma: &[f32], beta: &[f32], eps: f32, xhat: &mut [f32], out: &mut [f32]) -> f32 {
    let c = row.len();
    let (gamma, beta, xhat, out) = (&gamma[..c], &beta[..c], &mut xhat[..c], &mut out[..c]);
    let mean = row_sum(row, |_, v| v) / c as f64;
    let var = row_sum(row, |_, v| (v - mean) * (v - mean)) / c as f64;
    let istd = 1.0 / (var + eps as f64).sqrt();
    for j in 0..c {
        xhat[j] = ((row[j] as f64 - mean) * istd) as f32;
        out[j] = xhat[j] * gamma[j] + beta[j];
    }
    istd as f32
}

/// Batch statistics from a training-mode batchnorm, for the running-average update.
#[derive(Clone, Debug)]
pub struct BatchStats {
    /// Per-channel mean over all rows.
    pub mean: Vec<f32>,
    /// Per-channel unbiased variance (n-1 denominator, as PyTorch's running_var uses).
    pub var_unbiased: Vec<f32>,
}

/// Backward of a normalisation `y = xhat * gamma + beta`, where `xhat = (x - mean) * inv_std`
/// and (for batch statistics) mean and inv_std depend on x over the `group` axis.
struct NormBack {
    x: Var,
    gamma: Var,
    beta: Var,
    xhat: Scratch,
    inv_std: Scratch,
    /// true: statistics per channel over rows (batchnorm, train); false for eval batchnorm.
    batch_stats: bool,
    /// true: statistics per row over channels (layernorm).
    per_row: bool,
}

impl BackwardOp for NormBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let c = ctx.value(self.gamma).numel();
        let gamma = ctx.value(self.gamma).data();
        let rows = self.xhat.len() / c.max(1);
        if c == 0 {
            return Ok(());
        }
        let simd = avx2_fma();
        let (want_gg, want_gb) = (ctx.grad(self.gamma).is_some(), ctx.grad(self.beta).is_some());
        if want_gg || want_gb {
            // Per block of rows: Σ g·xhat (gamma) then Σ g (beta), summed in block order.
            let partials: Vec<Vec<f32>> = g
                .par_chunks(ROWS * c)
                .zip(self.xhat.par_chunks(ROWS * c))
                .map(|(gb, xb)| {
                    let mut acc = vec![0.0f32; 2 * c];
                    let (sg, sb) = acc.split_at_mut(c);
                    with_avx2(simd, || {
                        for (grow, xrow) in gb.chunks_exact(c).zip(xb.chunks_exact(c)) {
                            for j in 0..c {
                                sg[j] += grow[j] * xrow[j];
                                sb[j] += grow[j];
                            }
                        }
                    });
                    acc
                })
                .collect();
            for (k, v) in [(0, self.gamma), (1, self.beta)] {
                if let Some(gv) = ctx.grad(v) {
                    for p in &partials {
                        gv.iter_mut().zip(&p[k * c..(k + 1) * c]).for_each(|(a, b)| *a += b);
                    }
                }
            }
        }
        if self.per_row {
            let Some((gx, fresh)) = ctx.grad_or_fresh(self.x) else { return Ok(()) };
            let n = c as f64;
            gx.par_chunks_mut(ROWS * c).zip(g.par_chunks(ROWS * c)).zip(self.xhat.par_chunks(ROWS * c).zip(self.inv_std.par_chunks(ROWS))).for_each(
                |((gxb, gb), (xb, sb))| {
                    with_avx2(simd, || {
                        for ((gxrow, grow), (xrow, &istd)) in gxb.chunks_exact_mut(c).zip(gb.chunks_exact(c)).zip(xb.chunks_exact(c).zip(sb)) {
                            let s1 = row_sum(grow, |j, g| g * gamma[j] as f64);
                            let s2 = row_sum(grow, |j, g| g * gamma[j] as f64 * xrow[j] as f64);
                            for j in 0..c {
                                let d = grow[j] as f64 * gamma[j] as f64;
                                let v = (istd as f64 * (d - s1 / n - xrow[j] as f64 * s2 / n)) as f32;
                                gxrow[j] = if fresh { v } else { gxrow[j] + v };
                            }
                        }
                    })
                },
            );
            return Ok(());
        }
        let Some(gx) = ctx.grad(self.x) else { return Ok(()) };
        if self.batch_stats {
            let (mut s1, mut s2) = (vec![0.0f64; c], vec![0.0f64; c]);
            for (grow, xrow) in g.chunks(c).zip(self.xhat.chunks(c)) {
                for j in 0..c {
                    let d = (grow[j] * gamma[j]) as f64;
                    s1[j] += d;
                    s2[j] += d * xrow[j] as f64;
                }
            }
            let n = rows as f64;
            for ((gxrow, grow), xrow) in gx.chunks_mut(c).zip(g.chunks(c)).zip(self.xhat.chunks(c)) {
                for j in 0..c {
                    let d = (grow[j] * gamma[j]) as f64;
                    gxrow[j] += (self.inv_std[j] as f64 * (d - s1[j] / n - xrow[j] as f64 * s2[j] / n)) as f32;
                }
            }
        } else {
            for (gxrow, grow) in gx.chunks_mut(c).zip(g.chunks(c)) {
                for j in 0..c {
                    gxrow[j] += grow[j] * gamma[j] * self.inv_std[j];
                }
            }
        }
        Ok(())
    }
}

struct DropoutBack {
    x: Var,
    mask: Scratch,
}
impl BackwardOp for DropoutBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        if let Some(gx) = ctx.grad(self.x) {
            for ((a, &b), &m) in gx.iter_mut().zip(g).zip(self.mask.iter()) {
                *a += b * m;
            }
        }
        Ok(())
    }
}

impl Graph {
    fn norm_channels(&self, op: &'static str, x: Var, gamma: Var, beta: Var) -> Result<usize> {
        let c = *self.shape(x).last().ok_or_else(|| Error::shape(op, "input is a scalar"))?;
        if self.shape(gamma) != [c] || self.shape(beta) != [c] {
            return Err(Error::shape(op, format!("weight/bias must be ({c}), got {:?} and {:?}", self.shape(gamma), self.shape(beta))));
        }
        Ok(c)
    }

    /// Batch normalisation over every axis but the last (channels-last `BatchNorm1d` over
    /// batch and time). In training mode it normalises with the batch statistics and returns
    /// them; in eval mode it uses `running` = (mean, var).
    ///
    /// # Shapes
    /// x: (..., C), gamma, beta: (C) → (..., C)
    pub fn batchnorm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32, running: (&[f32], &[f32])) -> Result<(Var, Option<BatchStats>)> {
        let c = self.norm_channels("batchnorm", x, gamma, beta)?;
        let xd = self.value(x).data();
        let rows = xd.len() / c.max(1);
        let (mean, var, stats) = if self.training() {
            if rows < 2 {
                return Err(Error::shape("batchnorm", "training mode needs more than one value per channel"));
            }
            let (mut s1, mut s2) = (vec![0.0f64; c], vec![0.0f64; c]);
            for row in xd.chunks(c) {
                for j in 0..c {
                    s1[j] += row[j] as f64;
                }
            }
            let mean: Vec<f64> = s1.iter().map(|s| s / rows as f64).collect();
            for row in xd.chunks(c) {
                for j in 0..c {
                    let d = row[j] as f64 - mean[j];
                    s2[j] += d * d;
                }
            }
            let var: Vec<f64> = s2.iter().map(|s| s / rows as f64).collect();
            let stats =
                BatchStats { mean: mean.iter().map(|&m| m as f32).collect(), var_unbiased: s2.iter().map(|s| (s / (rows - 1) as f64) as f32).collect() };
            (mean, var, Some(stats))
        } else {
            if running.0.len() != c || running.1.len() != c {
                return Err(Error::shape("batchnorm", format!("running statistics must have {c} channels")));
            }
            (running.0.iter().map(|&v| v as f64).collect(), running.1.iter().map(|&v| v as f64).collect(), None)
        };
        let mut inv_std = Scratch::new(c); // every value written below
        inv_std.iter_mut().zip(&var).for_each(|(s, v)| *s = (1.0 / (v + eps as f64).sqrt()) as f32);
        let mut xhat = Scratch::new(xd.len()); // every row written below
        for (hrow, row) in xhat.chunks_mut(c).zip(xd.chunks(c)) {
            for j in 0..c {
                hrow[j] = ((row[j] as f64 - mean[j]) * inv_std[j] as f64) as f32;
            }
        }
        let out = self.affine(&xhat, x, gamma, beta);
        let op = NormBack { x, gamma, beta, xhat, inv_std, batch_stats: self.training(), per_row: false };
        Ok((self.record(out, &[x, gamma, beta], op), stats))
    }

    /// Layer normalisation over the last axis (PyTorch `nn.LayerNorm(C)`).
    ///
    /// # Shapes
    /// x: (..., C), gamma, beta: (C) → (..., C)
    pub fn layernorm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<Var> {
        let c = self.norm_channels("layernorm", x, gamma, beta)?;
        let xd = self.value(x).data();
        let (gd, bd) = (self.value(gamma).data(), self.value(beta).data());
        // Every row of xhat and out is written below (nothing to write when c = 0).
        let mut xhat = Scratch::new(xd.len());
        let mut inv_std = Scratch::new(xd.len() / c.max(1));
        let mut out = Tensor::stale(self.shape(x).to_vec());
        if c > 0 {
            // Blocks of rows across the pool.
            let simd = avx2_fma();
            let blocks = out.data_mut().par_chunks_mut(ROWS * c).zip(xhat.par_chunks_mut(ROWS * c)).zip(inv_std.par_chunks_mut(ROWS));
            blocks.zip(xd.par_chunks(ROWS * c)).for_each(|(((ob, hb), sb), xb)| {
                with_avx2(simd, || {
                    for (((orow, hrow), istd), row) in ob.chunks_exact_mut(c).zip(hb.chunks_exact_mut(c)).zip(sb).zip(xb.chunks_exact(c)) {
                        *istd = layernorm_row(row, gd, bd, eps, hrow, orow);
                    }
                })
            });
        }
        let op = NormBack { x, gamma, beta, xhat, inv_std, batch_stats: false, per_row: true };
        Ok(self.record(out, &[x, gamma, beta], op))
    }

    fn affine(&self, xhat: &[f32], x: Var, gamma: Var, beta: Var) -> Tensor {
        let (gd, bd) = (self.value(gamma).data(), self.value(beta).data());
        let c = gd.len();
        let mut out = Tensor::zeros(self.shape(x).to_vec());
        for (orow, hrow) in out.data_mut().chunks_mut(c).zip(xhat.chunks(c)) {
            for j in 0..c {
                orow[j] = hrow[j] * gd[j] + bd[j];
            }
        }
        out
    }

    /// Inverted dropout: in training mode zeroes each value with probability `p` and scales
    /// the rest by `1 / (1 - p)`; the identity in eval mode.
    pub fn dropout(&mut self, x: Var, p: f32, rng: &mut impl Rng) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config("dropout", format!("probability {p} is not in [0, 1)")));
        }
        if !self.training() || p == 0.0 {
            return Ok(x);
        }
        let keep = 1.0 / (1.0 - p);
        // A value is dropped when a uniform u32 falls below p·2³² (p < 1, so it fits).
        let threshold = (f64::from(p) * 4_294_967_296.0) as u64;
        // One seed from the caller's generator; each block of values draws from its own
        // stream of it, so the masks are the same for any number of threads.
        let seed: u64 = rng.gen();
        let xv = self.value(x);
        let mut mask = Scratch::new(xv.numel()); // every value written below
        let mut out = Tensor::stale(xv.shape().to_vec()); // every value written below
        mask.par_chunks_mut(DROPOUT_BLOCK).zip(out.data_mut().par_chunks_mut(DROPOUT_BLOCK)).zip(xv.data().par_chunks(DROPOUT_BLOCK)).enumerate().for_each(
            |(block, ((m, o), xs))| {
                let mut r = ChaCha8Rng::seed_from_u64(seed ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for ((m, o), &v) in m.iter_mut().zip(o.iter_mut()).zip(xs) {
                    *m = if u64::from(r.next_u32()) < threshold { 0.0 } else { keep };
                    *o = v * *m;
                }
            },
        );
        Ok(self.record(out, &[x], DropoutBack { x, mask }))
    }
}
