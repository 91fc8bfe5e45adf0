//! Launchers of the normalisation kernels and Hyena's long convolution.

use super::{f, u};
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, BATCHNORM, BN_APPLY, LAYERNORM, LONG_CONV, NORM_BACK};
use crate::tensor::gpu::tensor::GpuTensor;

/// LayerNorm of `rows` rows of `c`: y, xhat and the per-row inverse std.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layernorm(
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    y: &GpuTensor,
    xhat: &GpuTensor,
    istd: &GpuTensor,
    rows: usize,
    c: usize,
    eps: f32,
) -> Result<()> {
    let d = x.device();
    let bufs = [Some(x.raw()), Some(gamma.raw()), Some(beta.raw()), Some(y.raw()), Some(xhat.raw()), Some(istd.raw())];
    d.dispatch(k(&LAYERNORM, "rows"), &[u(rows), u(c), f(eps)], &bufs, d.grid(rows, 1))
}

/// LayerNorm input gradient.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layernorm_back(
    g: &GpuTensor,
    xhat: &GpuTensor,
    istd: &GpuTensor,
    gamma: &GpuTensor,
    gx: &GpuTensor,
    rows: usize,
    c: usize,
    accumulate: bool,
) -> Result<()> {
    let d = g.device();
    let bufs = [Some(g.raw()), Some(xhat.raw()), Some(istd.raw()), Some(gamma.raw()), Some(gx.raw())];
    d.dispatch(k(&NORM_BACK, "layernorm"), &[u(rows), u(c), accumulate as u32], &bufs, d.grid(rows, 1))
}

/// BatchNorm input gradient from `stats` = [istd | Σg | Σg·xhat] (training) or [istd] (eval).
#[allow(clippy::too_many_arguments)]
pub(crate) fn batchnorm_back(
    g: &GpuTensor,
    xhat: &GpuTensor,
    stats: &GpuTensor,
    gamma: &GpuTensor,
    gx: &GpuTensor,
    rows: usize,
    c: usize,
    accumulate: bool,
    training: bool,
) -> Result<()> {
    let d = g.device();
    let bufs = [Some(g.raw()), Some(xhat.raw()), Some(stats.raw()), Some(gamma.raw()), Some(gx.raw())];
    d.dispatch(k(&NORM_BACK, "batchnorm"), &[u(rows), u(c), accumulate as u32, training as u32], &bufs, d.grid(rows * c, 256))
}

/// BatchNorm statistics into `stats` = [mean | istd] (training: from the batch, whose mean
/// `stats` already holds, and `sums` = Σ(x − mean)²; eval: from the running averages), and
/// the running averages' update in training.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batchnorm_statistics(
    sums: Option<&GpuTensor>,
    stats: &GpuTensor,
    running_mean: &GpuTensor,
    running_var: &GpuTensor,
    c: usize,
    rows: usize,
    eps: f32,
    momentum: f32,
    training: bool,
) -> Result<()> {
    let d = stats.device();
    let bufs = [sums.map(|s| s.raw()), Some(stats.raw()), Some(running_mean.raw()), Some(running_var.raw())];
    d.dispatch(k(&BATCHNORM, "statistics"), &[u(c), u(rows), f(eps), f(momentum), training as u32], &bufs, d.grid(c, 256))
}

/// `xhat = (x − mean)·istd`, `y = xhat·γ + β`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batchnorm_apply(
    x: &GpuTensor,
    stats: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    y: &GpuTensor,
    xhat: &GpuTensor,
    rows: usize,
    c: usize,
) -> Result<()> {
    let d = x.device();
    let bufs = [Some(x.raw()), Some(stats.raw()), Some(gamma.raw()), Some(beta.raw()), Some(y.raw()), Some(xhat.raw())];
    d.dispatch(k(&BN_APPLY, "apply"), &[u(rows), u(c)], &bufs, d.grid(rows * c, 256))
}

/// Hyena's long convolution `y = h ∗ u + d ⊙ u` of u (batch, len, ch) with taps h (len, ch).
pub(crate) fn long_conv(u_: &GpuTensor, h: &GpuTensor, dskip: &GpuTensor, y: &GpuTensor, batch: usize, len: usize, ch: usize) -> Result<()> {
    let dev = u_.device();
    dev.dispatch(
        k(&LONG_CONV, "forward"),
        &[u(batch), u(len), u(ch), 0],
        &[Some(u_.raw()), Some(h.raw()), Some(dskip.raw()), Some(y.raw())],
        dev.grid(batch * len * ch, 256),
    )
}

/// The long convolution's input gradient.
#[allow(clippy::too_many_arguments)]
pub(crate) fn long_conv_back_u(
    g: &GpuTensor,
    h: &GpuTensor,
    dskip: &GpuTensor,
    gu: &GpuTensor,
    batch: usize,
    len: usize,
    ch: usize,
    accumulate: bool,
) -> Result<()> {
    let dev = g.device();
    let words = [u(batch), u(len), u(ch), accumulate as u32];
    dev.dispatch(k(&LONG_CONV, "back_u"), &words, &[Some(g.raw()), Some(h.raw()), Some(dskip.raw()), Some(gu.raw())], dev.grid(batch * len * ch, 256))
}

/// The long convolution's filter gradient (len, ch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn long_conv_back_h(g: &GpuTensor, u_: &GpuTensor, gh: &GpuTensor, batch: usize, len: usize, ch: usize, accumulate: bool) -> Result<()> {
    let dev = g.device();
    let words = [u(batch), u(len), u(ch), accumulate as u32];
    dev.dispatch(k(&LONG_CONV, "back_h"), &words, &[Some(g.raw()), Some(u_.raw()), None, Some(gh.raw())], dev.grid(len * ch, 256))
}
