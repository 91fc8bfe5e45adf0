//! Generation's device kernels, for the step backend of layer 2: each causal conv keeps a
//! ring of its last inputs and each long convolution its whole input history on the device,
//! so a new position costs one small kernel per layer and only the logits come back.

use crate::error::{Error, Result};
use crate::tensor::gpu::launch::step::{self as ks, RingConv};
use crate::tensor::gpu::tensor::GpuTensor;
use crate::tensor::Conv1dSpec;

/// Writes `x` (B, C) as row `slot` of `ring` (B, span, C).
pub fn ring_write(x: &GpuTensor, ring: &GpuTensor, slot: usize) -> Result<()> {
    let [batch, span, c] = ring.shape()[..] else { return Err(Error::shape("step", format!("a ring must be (B, span, C), got {:?}", ring.shape()))) };
    if x.numel() != batch * c || slot >= span {
        return Err(Error::shape("step", format!("input {:?} or slot {slot} does not fit a ring of {:?}", x.shape(), ring.shape())));
    }
    ks::ring_write(x, ring, batch, c, span, slot)
}

/// The output (B, 1, C_out) at `position` of a causal conv (`spec`: stride 1, left padding
/// only) whose inputs up to `position` are in `ring` (B, span, C_in) at rows τ mod span.
pub fn ring_conv(ring: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, spec: &Conv1dSpec, position: usize) -> Result<GpuTensor> {
    let [batch, span, c_in] = ring.shape()[..] else { return Err(Error::shape("step", format!("a ring must be (B, span, C), got {:?}", ring.shape()))) };
    if c_in != spec.in_channels || span < (spec.kernel_size - 1) * spec.dilation + 1 || spec.stride != 1 {
        return Err(Error::shape("step", format!("a ring of {:?} does not hold the inputs of {spec:?}", ring.shape())));
    }
    let y = GpuTensor::empty(ring.device(), &[batch, 1, spec.out_channels], "a conv step")?;
    let r = RingConv { batch, c_in, c_out: spec.out_channels, k: spec.kernel_size, dilation: spec.dilation, groups: spec.groups, span, position };
    ks::ring_conv(ring, w, bias, &y, &r)?;
    Ok(y)
}

/// The long convolution's output (B, 1, C) at position `t` from `history` (B, max_len, C)
/// holding the inputs of positions 0..=t, the filter `taps` (max_len, C) and the skip `d`.
pub fn long_conv_step(history: &GpuTensor, taps: &GpuTensor, d: &GpuTensor, t: usize) -> Result<GpuTensor> {
    let [batch, max_len, ch] = history.shape()[..] else { return Err(Error::shape("long_conv step", "history must be (B, max_len, C)")) };
    if t >= max_len || taps.shape() != [max_len, ch] || d.numel() != ch {
        return Err(Error::shape(
            "long_conv step",
            format!("position {t} past max_len {max_len}, or filter {:?} for a history of {:?}", taps.shape(), history.shape()),
        ));
    }
    let y = GpuTensor::empty(history.device(), &[batch, 1, ch], "a long convolution step")?;
    ks::long_conv_step(history, taps, d, &y, batch, max_len, ch, t)?;
    Ok(y)
}
