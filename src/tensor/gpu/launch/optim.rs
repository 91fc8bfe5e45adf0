//! Launchers of the optimizer updates (`optim.wgsl`) and of the step status (gradient norm,
//! clipping coefficient, skip flag).

use super::{f, u};
use crate::error::Result;
use crate::tensor::gpu::launch::reduce::{partials, status, SUM_BLOCK};
use crate::tensor::gpu::shaders::{k, OPTIM};
use crate::tensor::gpu::tensor::GpuTensor;

/// Words of the status buffer a step reads back.
pub const STATUS_WORDS: usize = 8;

/// Per-step f32 constants of an Adam(W) update, rounded as PyTorch rounds them.
#[derive(Clone, Copy, Debug)]
pub struct AdamWords {
    /// 0 none, 1 L2 (Adam), 2 decoupled (AdamW).
    pub decay: u32,
    pub lerp_weight: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub bias_correction2_sqrt: f32,
    pub eps: f32,
    pub neg_step_size: f32,
    pub weight_decay: f32,
    pub decay_factor: f32,
}

/// Per-step constants of an SGD update.
#[derive(Clone, Copy, Debug)]
pub struct SgdWords {
    pub l2: bool,
    pub momentum: Option<f32>,
    pub neg_lr: f32,
    pub first: bool,
    pub weight_decay: f32,
}

/// One Adam(W) update of parameter `index` (its value, gradient and moments).
pub fn adam(p: &GpuTensor, g: &GpuTensor, m: &GpuTensor, v: &GpuTensor, status: &GpuTensor, w: &AdamWords, index: usize) -> Result<()> {
    let d = p.device();
    let n = p.numel();
    let words = [
        u(n),
        w.decay,
        f(w.lerp_weight),
        f(w.beta2),
        f(w.one_minus_beta2),
        f(w.bias_correction2_sqrt),
        f(w.eps),
        f(w.neg_step_size),
        f(w.weight_decay),
        f(w.decay_factor),
        u(index),
    ];
    d.dispatch(k(&OPTIM, "adam"), &words, &[Some(p.raw()), Some(g.raw()), Some(m.raw()), Some(v.raw()), Some(status.raw())], d.grid(n, 256))
}

/// One SGD update of parameter `index`; `m` is its momentum buffer (a placeholder without
/// momentum) and `spare` a second placeholder.
#[allow(clippy::too_many_arguments)]
pub fn sgd(p: &GpuTensor, g: &GpuTensor, m: &GpuTensor, spare: &GpuTensor, status: &GpuTensor, w: &SgdWords, index: usize) -> Result<()> {
    let d = p.device();
    let n = p.numel();
    let words =
        [u(n), w.l2 as u32, w.momentum.is_some() as u32, f(w.momentum.unwrap_or(0.0)), f(w.neg_lr), w.first as u32, 0, 0, f(w.weight_decay), 0, u(index)];
    d.dispatch(k(&OPTIM, "sgd"), &words, &[Some(p.raw()), Some(g.raw()), Some(m.raw()), Some(spare.raw()), Some(status.raw())], d.grid(n, 256))
}

/// One step of parameter `p`'s moving average `avg` (`avg.lerp_(p, weight)`), skipped with
/// the update when the status says so; `grad` and `spare` are two other buffers for the
/// unused bindings (a buffer is bound writable once per dispatch).
pub fn average(avg: &GpuTensor, p: &GpuTensor, grad: &GpuTensor, spare: &GpuTensor, status: &GpuTensor, weight: f32) -> Result<()> {
    let d = p.device();
    let n = p.numel();
    let words = [u(n), 0, f(weight), 0, 0, 0, 0, 0, 0, 0, 0];
    // The current weights bind where the updates take the gradient (read only).
    d.dispatch(k(&OPTIM, "average"), &words, &[Some(grad.raw()), Some(p.raw()), Some(avg.raw()), Some(spare.raw()), Some(status.raw())], d.grid(n, 256))
}

/// Blocks of [`grad_norm_status`]'s first pass for tensors of `sizes` values.
pub fn norm_blocks(sizes: impl Iterator<Item = usize>) -> usize {
    sizes.map(|n| n.div_ceil(SUM_BLOCK)).sum()
}

/// The gradient norm over `grads` (as one vector), the clip coefficient for `max_norm` and the
/// skip flag, into `status` (whose slot 0 holds the loss); `scratch` holds
/// [`norm_blocks`] values.
pub fn grad_norm_status<'a>(grads: impl Iterator<Item = &'a GpuTensor>, scratch: &GpuTensor, status_buf: &GpuTensor, max_norm: Option<f32>) -> Result<()> {
    let mut off = 0;
    for g in grads {
        if g.numel() > 0 {
            off += partials(g, g.numel(), scratch, off, true)?;
        }
    }
    status(scratch, off, status_buf, max_norm)
}
