//! Launchers of generation's kernels: the per-layer histories and one position of a causal
//! conv or a long convolution.

use super::u;
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, CONV_DIRECT, LONG_CONV, UNARY};
use crate::tensor::gpu::tensor::GpuTensor;

/// Row `slot` of every sequence's ring (batch, span, c) becomes `x` (batch, c).
pub(crate) fn ring_write(x: &GpuTensor, ring: &GpuTensor, batch: usize, c: usize, span: usize, slot: usize) -> Result<()> {
    let d = x.device();
    d.dispatch(k(&UNARY, "ring_write"), &[u(batch), u(c), u(span), u(slot)], &[Some(x.raw()), Some(ring.raw())], d.grid(batch * c, 256))
}

/// The sizes of one causal conv step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingConv {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub dilation: usize,
    pub groups: usize,
    pub span: usize,
    pub position: usize,
}

/// The conv's output (batch, c_out) at `position` from its ring of inputs.
pub(crate) fn ring_conv(ring: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, y: &GpuTensor, r: &RingConv) -> Result<()> {
    let d = ring.device();
    let words = [u(r.batch), u(r.c_in), u(r.c_out), u(r.k), u(r.dilation), u(r.groups), u(r.span), u(r.position), bias.is_some() as u32];
    d.dispatch(k(&CONV_DIRECT, "ring_conv"), &words, &[Some(ring.raw()), Some(w.raw()), bias.map(|b| b.raw()), Some(y.raw())], d.grid(r.batch * r.c_out, 256))
}

/// The long convolution's output (batch, ch) at position `t` from the inputs so far.
#[allow(clippy::too_many_arguments)]
pub(crate) fn long_conv_step(
    history: &GpuTensor,
    taps: &GpuTensor,
    dskip: &GpuTensor,
    y: &GpuTensor,
    batch: usize,
    max_len: usize,
    ch: usize,
    t: usize,
) -> Result<()> {
    let d = history.device();
    let words = [u(batch), u(max_len), u(ch), u(t)];
    d.dispatch(k(&LONG_CONV, "step"), &words, &[Some(history.raw()), Some(taps.raw()), Some(dskip.raw()), Some(y.raw())], d.grid(batch * ch, 256))
}
