//! The cross-entropy loss on the GPU tape, alone or fused with the output layer (a linear
//! layer or a conv): the logits live in one device buffer that the loss kernel turns, in
//! place, into their gradient; they never come back to the host.

use crate::error::Result;
use crate::tensor::gpu::graph::{GpuBackward, GpuGradCtx, GpuGraph};
use crate::tensor::gpu::launch::elementwise::{self as ew, Unary};
use crate::tensor::gpu::launch::gemm::{gemm, Out, View};
use crate::tensor::gpu::launch::loss::ce_rows;
use crate::tensor::gpu::launch::reduce::sum_into;
use crate::tensor::gpu::ops::conv::{conv1d_backward, conv1d_forward};
use crate::tensor::gpu::ops::linear::linear_backward;
use crate::tensor::gpu::runtime::GpuDevice;
use crate::tensor::gpu::tensor::{GpuIndex, GpuTensor};
use crate::tensor::kernels::softmax::count_targets;
use crate::tensor::{Conv1dSpec, Var};

/// Targets checked against (rows, v) and sent up as i32 bits; with their count.
fn upload_targets(device: &GpuDevice, op: &'static str, targets: &[i64], rows: usize, v: usize) -> Result<(GpuIndex, usize)> {
    let count = count_targets(op, targets, rows, v)?;
    let words: Vec<u32> = targets.iter().map(|&t| t as i32 as u32).collect();
    Ok((GpuIndex::upload(device, &words)?, count))
}

/// Turns `logits` (rows, v) into the mean loss (a new scalar) and, with `with_grad`, into the
/// loss gradient in place.
fn loss_of(logits: &GpuTensor, targets: &GpuIndex, count: usize, rows: usize, v: usize, with_grad: bool) -> Result<GpuTensor> {
    let d = logits.device();
    let rowloss = GpuTensor::empty(d, &[rows], "row losses")?;
    let inv = 1.0 / count as f32;
    ce_rows(targets, logits, &rowloss, rows, v, inv, with_grad)?;
    let loss = GpuTensor::empty(d, &[], "the loss")?;
    sum_into(&rowloss, rows, &loss, 0, inv, false)?;
    Ok(loss)
}

/// The logits' gradient for an upstream gradient `g` (a scalar): `glogits` as the loss
/// kernel left it, scaled by g unless g is the seed 1.
fn scaled(glogits: &GpuTensor, g: &GpuTensor, unit: bool) -> Result<GpuTensor> {
    if unit {
        return Ok(glogits.clone());
    }
    let out = GpuTensor::empty(glogits.device(), glogits.shape(), "a scaled gradient")?;
    ew::channel_mul(glogits, g, &out, false)?;
    Ok(out)
}

/// How the head computes its logits.
#[derive(Clone, Copy)]
enum Head {
    /// A linear layer over rows of x.
    Linear,
    /// A conv over (batch, len) sequences.
    Conv(Conv1dSpec, usize, usize),
    /// The logits are the input (plain cross-entropy).
    Logits,
}

struct HeadBack {
    head: Head,
    x: Var,
    w: Option<Var>,
    b: Option<Var>,
    targets: GpuIndex,
    count: usize,
    /// The logits' gradient from the forward pass (training graphs); recomputed otherwise.
    grad: Option<GpuTensor>,
}

impl HeadBack {
    fn logits_grad(&self, ctx: &GpuGradCtx) -> Result<GpuTensor> {
        if let Some(g) = &self.grad {
            return Ok(g.clone());
        }
        let logits = head_logits(ctx.device(), self.head, ctx.value(self.x), self.w.map(|w| ctx.value(w)), self.b.map(|b| ctx.value(b)))?;
        let (rows, v) = rows_and_width(&logits);
        loss_of(&logits, &self.targets, self.count, rows, v, true)?;
        Ok(logits)
    }
}

impl GpuBackward for HeadBack {
    fn backward(&self, out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let _ = out;
        let unit = ctx.grad_is_unit();
        let glogits = scaled(&self.logits_grad(ctx)?, g, unit)?;
        match (self.head, self.w) {
            (Head::Linear, Some(w)) => linear_backward(ctx, &glogits, self.x, w, self.b),
            (Head::Conv(spec, ..), Some(w)) => conv1d_backward(ctx, &glogits, self.x, w, self.b, &spec),
            _ => {
                if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
                    ew::map(&glogits, &gx, Unary::Copy, !fresh, 1.0)?;
                }
                Ok(())
            }
        }
    }
}

fn rows_and_width(logits: &GpuTensor) -> (usize, usize) {
    let v = *logits.shape().last().unwrap_or(&1);
    (logits.numel() / v.max(1), v)
}

/// The head's logits as a fresh buffer.
fn head_logits(device: &GpuDevice, head: Head, x: &GpuTensor, w: Option<&GpuTensor>, b: Option<&GpuTensor>) -> Result<GpuTensor> {
    match (head, w) {
        (Head::Linear, Some(w)) => {
            let (v, n_in) = (w.shape()[0], w.shape()[1]);
            let rows = x.numel() / n_in.max(1);
            let logits = GpuTensor::empty(device, &[rows, v], "the logits")?;
            gemm(View::rows(x, n_in), View::rows(w, n_in).t(), Out::rows(&logits, v), (rows, v, n_in), 1, b.map(|b| (b, 0, 0)), false)?;
            Ok(logits)
        }
        (Head::Conv(spec, batch, len), Some(w)) => conv1d_forward(x, w, b, &spec, batch, len),
        _ => {
            let copy = GpuTensor::empty(device, x.shape(), "the logits")?;
            ew::map(x, &copy, Unary::Copy, false, 1.0)?;
            Ok(copy)
        }
    }
}

impl GpuGraph {
    fn record_head(&mut self, head: Head, x: Var, w: Option<Var>, b: Option<Var>, targets: &[i64]) -> Result<Var> {
        let op = match head {
            Head::Linear => "linear_cross_entropy",
            Head::Conv(..) => "conv1d_cross_entropy",
            Head::Logits => "cross_entropy",
        };
        let inputs: Vec<Var> = [Some(x), w, b].into_iter().flatten().collect();
        let with_grad = self.training() && inputs.iter().any(|&v| self.requires_grad(v));
        let logits = head_logits(self.device(), head, self.value(x), w.map(|w| self.value(w)), b.map(|b| self.value(b)))?;
        let (rows, v) = rows_and_width(&logits);
        let (targets, count) = upload_targets(self.device(), op, targets, rows, v)?;
        let loss = loss_of(&logits, &targets, count, rows, v, with_grad)?;
        let back = HeadBack { head, x, w, b, targets, count, grad: with_grad.then_some(logits) };
        Ok(self.record(loss, &inputs, back))
    }

    /// Mean cross-entropy of `logits` (..., V) against `targets` (−1 ignored).
    pub fn cross_entropy(&mut self, logits: Var, targets: &[i64]) -> Result<Var> {
        self.record_head(Head::Logits, logits, None, None, targets)
    }

    /// Mean cross-entropy of `linear(x, w, b)` against `targets`, the logits kept on the device
    /// and turned into their gradient in place.
    pub fn linear_cross_entropy(&mut self, x: Var, w: Var, b: Option<Var>, targets: &[i64]) -> Result<Var> {
        self.linear_shapes("linear_cross_entropy", x, w, b)?;
        self.record_head(Head::Linear, x, Some(w), b, targets)
    }

    /// Mean cross-entropy of `conv1d(x, w, b)` over its channels against `targets`.
    pub fn conv1d_cross_entropy(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec, targets: &[i64]) -> Result<Var> {
        let (batch, len) = self.conv1d_shapes("conv1d_cross_entropy", x, w, b, spec)?;
        self.record_head(Head::Conv(*spec, batch, len), x, Some(w), b, targets)
    }
}
