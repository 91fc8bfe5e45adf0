//! Launcher of the cross-entropy rows (`loss.wgsl`).

use super::{f, u};
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, LOSS};
use crate::tensor::gpu::tensor::{GpuIndex, GpuTensor};

/// Row losses of `logits` (rows, v) against `targets` (i32 bits, −1 ignored) into `rowloss`;
/// with `with_grad` the logits become `(softmax − one_hot)·inv_count` in place.
pub(crate) fn ce_rows(targets: &GpuIndex, logits: &GpuTensor, rowloss: &GpuTensor, rows: usize, v: usize, inv_count: f32, with_grad: bool) -> Result<()> {
    let d = logits.device();
    d.dispatch(
        k(&LOSS, "ce_rows"),
        &[u(rows), u(v), f(inv_count), with_grad as u32],
        &[Some(targets.raw()), Some(logits.raw()), Some(rowloss.raw())],
        d.grid(rows, 1),
    )
}
