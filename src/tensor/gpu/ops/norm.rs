//! Normalisations on the GPU tape: LayerNorm and BatchNorm (batch statistics while training,
//! with the running averages updated on the device; running statistics in evaluation).

use crate::error::{Error, Result};
use crate::tensor::gpu::graph::{GpuBackward, GpuGradCtx, GpuGraph};
use crate::tensor::gpu::launch::norm::{batchnorm_apply, batchnorm_back, batchnorm_statistics, layernorm, layernorm_back};
use crate::tensor::gpu::launch::reduce::{colsum, colsum_at, Term};
use crate::tensor::gpu::tensor::GpuTensor;
use crate::tensor::Var;

/// Adds `gamma`'s and `beta`'s gradients: Σ g·xhat and Σ g over the rows.
fn affine_grads(ctx: &mut GpuGradCtx, g: &GpuTensor, xhat: &GpuTensor, gamma: Var, beta: Var, rows: usize, c: usize) -> Result<()> {
    if let Some((gg, fresh)) = ctx.grad_or_fresh(gamma)? {
        colsum(g, Some(xhat), &gg, rows, c, Term::Product, !fresh, 1.0)?;
    }
    if let Some((gb, fresh)) = ctx.grad_or_fresh(beta)? {
        colsum(g, None, &gb, rows, c, Term::Value, !fresh, 1.0)?;
    }
    Ok(())
}

struct LayerNormBack {
    x: Var,
    gamma: Var,
    beta: Var,
    xhat: GpuTensor,
    istd: GpuTensor,
}
impl GpuBackward for LayerNormBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let c = ctx.value(self.gamma).numel();
        let rows = self.istd.numel();
        affine_grads(ctx, g, &self.xhat, self.gamma, self.beta, rows, c)?;
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            layernorm_back(g, &self.xhat, &self.istd, ctx.value(self.gamma), &gx, rows, c, !fresh)?;
        }
        Ok(())
    }
}

struct BatchNormBack {
    x: Var,
    gamma: Var,
    beta: Var,
    xhat: GpuTensor,
    /// [mean | istd] (C each).
    stats: GpuTensor,
    training: bool,
}
impl GpuBackward for BatchNormBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let c = ctx.value(self.gamma).numel();
        let rows = self.xhat.numel() / c.max(1);
        affine_grads(ctx, g, &self.xhat, self.gamma, self.beta, rows, c)?;
        if !ctx.needs(self.x) {
            return Ok(());
        }
        let d = ctx.device();
        // [istd | Σg | Σg·xhat]
        let back = GpuTensor::empty(d, &[3 * c], "batchnorm backward statistics")?;
        d.copy(self.stats.raw(), 4 * c as u64, back.raw(), 0, 4 * c as u64);
        if self.training {
            colsum_at(g, None, &back, c, rows, c, Term::Value, false, 1.0)?;
            colsum_at(g, Some(&self.xhat), &back, 2 * c, rows, c, Term::Product, false, 1.0)?;
        }
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            batchnorm_back(g, &self.xhat, &back, ctx.value(self.gamma), &gx, rows, c, !fresh, self.training)?;
        }
        Ok(())
    }
}

impl GpuGraph {
    fn norm_channels(&self, op: &'static str, x: Var, gamma: Var, beta: Var) -> Result<usize> {
        let c = *self.shape(x).last().ok_or_else(|| Error::shape(op, "input is a scalar"))?;
        if self.shape(gamma) != [c] || self.shape(beta) != [c] {
            return Err(Error::shape(op, format!("weight/bias must be ({c}), got {:?} and {:?}", self.shape(gamma), self.shape(beta))));
        }
        Ok(c)
    }

    /// Layer normalisation over the last axis (PyTorch `nn.LayerNorm(C)`).
    ///
    /// # Shapes
    /// x: (..., C), gamma, beta: (C) → (..., C)
    pub fn layernorm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<Var> {
        let c = self.norm_channels("layernorm", x, gamma, beta)?;
        let rows = self.value(x).numel() / c.max(1);
        let d = self.device().clone();
        let (y, xhat) = (GpuTensor::empty(&d, self.shape(x), "layernorm")?, GpuTensor::empty(&d, self.shape(x), "layernorm")?);
        let istd = GpuTensor::empty(&d, &[rows], "layernorm statistics")?;
        if c > 0 {
            layernorm(self.value(x), self.value(gamma), self.value(beta), &y, &xhat, &istd, rows, c, eps)?;
        }
        Ok(self.record(y, &[x, gamma, beta], LayerNormBack { x, gamma, beta, xhat, istd }))
    }

    /// Batch normalisation over every axis but the last. Training mode normalises with the
    /// batch statistics and folds them into `running` = (mean, var) on the device
    /// (`running = (1 − momentum)·running + momentum·batch`, the variance unbiased, as PyTorch);
    /// eval mode normalises with `running`.
    ///
    /// # Shapes
    /// x: (..., C), gamma, beta, running: (C) → (..., C)
    pub fn batchnorm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32, running: (&GpuTensor, &GpuTensor), momentum: f32) -> Result<Var> {
        let c = self.norm_channels("batchnorm", x, gamma, beta)?;
        if running.0.numel() != c || running.1.numel() != c {
            return Err(Error::shape("batchnorm", format!("running statistics must have {c} channels")));
        }
        let rows = self.value(x).numel() / c.max(1);
        let training = self.training();
        if training && rows < 2 {
            return Err(Error::shape("batchnorm", "training mode needs more than one value per channel"));
        }
        let d = self.device().clone();
        let stats = GpuTensor::empty(&d, &[2 * c], "batchnorm statistics")?; // [mean | istd]
        if training {
            colsum(self.value(x), None, &stats, rows, c, Term::Value, false, 1.0 / rows as f32)?;
            let sums = GpuTensor::empty(&d, &[c], "batchnorm statistics")?;
            colsum(self.value(x), Some(&stats), &sums, rows, c, Term::SquaredDeviation, false, 1.0)?;
            batchnorm_statistics(Some(&sums), &stats, running.0, running.1, c, rows, eps, momentum, true)?;
        } else {
            batchnorm_statistics(None, &stats, running.0, running.1, c, rows, eps, momentum, false)?;
        }
        let (y, xhat) = (GpuTensor::empty(&d, self.shape(x), "batchnorm")?, GpuTensor::empty(&d, self.shape(x), "batchnorm")?);
        batchnorm_apply(self.value(x), &stats, self.value(gamma), self.value(beta), &y, &xhat, rows, c)?;
        Ok(self.record(y, &[x, gamma, beta], BatchNormBack { x, gamma, beta, xhat, stats, training }))
    }
}
