//! Convolutions on the tape: conv1d, conv_transpose1d and PixelCNN masked conv2d, wrapping
//! the kernels of `tensor::kernels` (channels-last activations, PyTorch weight layouts).

use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::kernels::conv1d::{conv1d_backward_hinted, conv1d_forward, Conv1dSpec, Padding};
use crate::tensor::kernels::conv1d_loss::{self, conv1d_cross_entropy, HeadGrad};
use crate::tensor::kernels::conv2d_masked::{masked_conv2d_backward, masked_conv2d_forward, MaskedConv2dSpec};
use crate::tensor::kernels::conv_transpose1d::{conv_transpose1d_backward, conv_transpose1d_forward, ConvTranspose1dSpec};
use crate::tensor::memory::Scratch;
use crate::tensor::Tensor;

/// Which convolution a [`ConvBack`] differentiates.
enum ConvKind {
    Conv1d(Conv1dSpec),
    Transpose1d(ConvTranspose1dSpec),
    Masked2d(MaskedConv2dSpec),
}

struct ConvBack {
    kind: ConvKind,
    x: Var,
    w: Var,
    b: Option<Var>,
}

impl BackwardOp for ConvBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (x, w) = (ctx.value(self.x), ctx.value(self.w));
        with_grads(ctx, [Some(self.x), Some(self.w), self.b], |gx, gw, gb, gx_zero| self.run(x, w, g, gx, gx_zero, gw, gb))
    }
}

/// The gradient buffers of (x, w, b) as one kernel call wants them: the graph's own, or,
/// when one variable appears twice (e.g. conv(x, x)), zeroed scratch buffers that are then
/// added in. `f` is also told whether x's buffer holds only zeros (created for this call),
/// so that a kernel may write it instead of adding to it.
type GradBuf<'a> = Option<&'a mut [f32]>;
fn with_grads(ctx: &mut GradCtx, vars: [Option<Var>; 3], f: impl FnOnce(GradBuf, GradBuf, GradBuf, bool) -> Result<()>) -> Result<()> {
    let x_unset = vars[0].is_some_and(|x| ctx.grad_is_unset(x));
    if let Some([gx, gw, gb]) = ctx.grads_disjoint(vars) {
        return f(gx, gw, gb, x_unset);
    }
    let mut bufs: [Option<Scratch>; 3] = [None, None, None];
    for (buf, v) in bufs.iter_mut().zip(vars) {
        *buf = v.and_then(|v| ctx.grad(v).map(|g| Scratch::zeroed(g.len())));
    }
    let [gx, gw, gb] = &mut bufs;
    f(gx.as_deref_mut(), gw.as_deref_mut(), gb.as_deref_mut(), true)?;
    for (v, buf) in vars.into_iter().zip(bufs) {
        if let (Some(v), Some(buf)) = (v, buf) {
            if let Some(dst) = ctx.grad(v) {
                dst.iter_mut().zip(buf.iter()).for_each(|(d, b)| *d += b);
            }
        }
    }
    Ok(())
}

/// Backward of [`Graph::conv1d_cross_entropy`].
struct HeadBack {
    spec: Conv1dSpec,
    /// (batch, len) the kernel saw x as (a linear head sees its rows as one sequence).
    dims: (usize, usize),
    x: Var,
    w: Var,
    b: Option<Var>,
    targets: Vec<i64>,
    /// Kept from forward in training graphs; recomputed by a backward through an eval graph.
    grad: Option<HeadGrad>,
}

impl BackwardOp for HeadBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (x, w) = (ctx.value(self.x), ctx.value(self.w));
        let recomputed;
        let grad = match &self.grad {
            Some(grad) => grad,
            None => {
                let bias = self.b.map(|b| ctx.value(b).data());
                let (batch, len) = self.dims;
                recomputed = conv1d_cross_entropy(&self.spec, x.data(), batch, len, w.data(), bias, &self.targets, true)?;
                recomputed.grad.as_ref().ok_or_else(|| Error::shape("conv1d_cross_entropy", "the recomputed head kept no gradient state"))?
            }
        };
        with_grads(ctx, [Some(self.x), Some(self.w), self.b], |gx, gw, gb, _| grad.backward(w.data(), g[0], gx, gw, gb))
    }
}

impl ConvBack {
    /// Runs the kernel's backward, adding into whichever gradient buffers are given.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        x: &Tensor,
        w: &Tensor,
        g: &[f32],
        gx: Option<&mut [f32]>,
        gx_zero: bool,
        gw: Option<&mut [f32]>,
        gb: Option<&mut [f32]>,
    ) -> crate::error::Result<()> {
        let s = x.shape();
        match &self.kind {
            ConvKind::Conv1d(spec) => conv1d_backward_hinted(spec, x.data(), s[0], s[1], w.data(), g, gx, gx_zero, gw, gb),
            ConvKind::Transpose1d(spec) => conv_transpose1d_backward(spec, x.data(), s[0], s[1], w.data(), g, gx, gw, gb),
            ConvKind::Masked2d(spec) => masked_conv2d_backward(spec, x.data(), s[0], s[1], s[2], w.data(), g, gx, gw, gb),
        }
    }
}

impl Graph {
    #[allow(clippy::too_many_arguments)]
    fn conv_inputs(&self, op: &'static str, x: Var, rank: usize, w: Var, w_shape: &[usize], b: Option<Var>, out_channels: usize) -> Result<Vec<usize>> {
        let xs = self.shape(x).to_vec();
        if xs.len() != rank {
            return Err(Error::shape(op, format!("input must have {rank} axes (channels last), got {xs:?}")));
        }
        if self.shape(w) != w_shape {
            return Err(Error::shape(op, format!("weight has shape {:?}, expected {w_shape:?}", self.shape(w))));
        }
        if let Some(b) = b {
            if self.shape(b) != [out_channels] {
                return Err(Error::shape(op, format!("bias has shape {:?}, expected [{out_channels}]", self.shape(b))));
            }
        }
        Ok(xs)
    }

    fn record_conv(&mut self, out: Tensor, kind: ConvKind, x: Var, w: Var, b: Option<Var>) -> Var {
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        self.record(out, &inputs, ConvBack { kind, x, w, b })
    }

    /// 1-D convolution (PyTorch `F.conv1d`, with asymmetric padding allowed).
    ///
    /// # Shapes
    /// x: (B, T, C_in), w: (C_out, C_in/groups, K), b: (C_out) → (B, T_out, C_out)
    pub fn conv1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec) -> Result<Var> {
        spec.validate()?;
        let xs = self.conv_inputs("conv1d", x, 3, w, &spec.weight_shape(), b, spec.out_channels)?;
        let t_out = spec.output_len(xs[1])?;
        let mut out = Tensor::stale(vec![xs[0], t_out, spec.out_channels]); // conv1d_forward overwrites it
        let bias = b.map(|b| self.value(b).data());
        conv1d_forward(spec, self.value(x).data(), xs[0], xs[1], self.value(w).data(), bias, out.data_mut())?;
        Ok(self.record_conv(out, ConvKind::Conv1d(*spec), x, w, b))
    }

    /// Mean cross-entropy of `conv1d(x, w, b)` over its channels against `targets`: the
    /// same value and gradients as [`Graph::conv1d`] then [`Graph::cross_entropy`], but the
    /// logits are turned into the loss and its gradient block by block as the GEMM makes
    /// them, and never kept (see `kernels::conv1d_loss`). Convs that kernel does not take
    /// (groups > 1, very large columns) run as that composition.
    ///
    /// # Shapes
    /// x: (B, T, C_in), w: (V, C_in, K), b: (V), targets: (B·T_out) → scalar
    pub fn conv1d_cross_entropy(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec, targets: &[i64]) -> Result<Var> {
        spec.validate()?;
        let xs = self.conv_inputs("conv1d_cross_entropy", x, 3, w, &spec.weight_shape(), b, spec.out_channels)?;
        if !conv1d_loss::fuses(spec, xs[0], xs[1]) {
            let logits = self.conv1d(x, w, b, spec)?;
            return self.cross_entropy(logits, targets);
        }
        self.record_head(spec, (xs[0], xs[1]), x, w, b, targets)
    }

    /// Mean cross-entropy of `linear(x, w, b)` against `targets`, fused like
    /// [`Graph::conv1d_cross_entropy`] (a linear layer is a kernel-1 conv over all rows).
    ///
    /// # Shapes
    /// x: (..., C_in), w: (V, C_in), b: (V), targets: (rows of x) → scalar
    pub fn linear_cross_entropy(&mut self, x: Var, w: Var, b: Option<Var>, targets: &[i64]) -> Result<Var> {
        let op = "linear_cross_entropy";
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        let (Some(&c_in), [v, w_in]) = (xs.last(), ws.as_slice()) else {
            return Err(Error::shape(op, format!("input {xs:?} and weight {ws:?} must be (..., C_in) and (V, C_in)")));
        };
        if c_in != *w_in {
            return Err(Error::shape(op, format!("input has {c_in} channels, the weight expects {w_in}")));
        }
        if let Some(b) = b {
            if self.shape(b) != [*v] {
                return Err(Error::shape(op, format!("bias has shape {:?}, expected [{v}]", self.shape(b))));
            }
        }
        let rows = xs[..xs.len() - 1].iter().product::<usize>();
        let spec = Conv1dSpec { in_channels: c_in, out_channels: *v, kernel_size: 1, stride: 1, padding: Padding::Symmetric(0), dilation: 1, groups: 1 };
        if !conv1d_loss::fuses(&spec, 1, rows) {
            let logits = self.linear(x, w, b)?;
            return self.cross_entropy(logits, targets);
        }
        self.record_head(&spec, (1, rows), x, w, b, targets)
    }

    /// Runs the fused head kernel on x seen as `dims` = (batch, len) and records its loss.
    fn record_head(&mut self, spec: &Conv1dSpec, dims: (usize, usize), x: Var, w: Var, b: Option<Var>, targets: &[i64]) -> Result<Var> {
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        // As in `cross_entropy`, eval graphs keep no gradient state; a backward recomputes it.
        let with_grad = self.training() && inputs.iter().any(|&v| self.requires_grad(v));
        let bias = b.map(|b| self.value(b).data());
        let (xd, wd) = (self.value(x).data(), self.value(w).data());
        let head = conv1d_cross_entropy(spec, xd, dims.0, dims.1, wd, bias, targets, with_grad)?;
        let out = Tensor::new(vec![], vec![head.loss])?;
        let back = HeadBack { spec: *spec, dims, x, w, b, targets: targets.to_vec(), grad: head.grad };
        Ok(self.record(out, &inputs, back))
    }

    /// Transposed 1-D convolution (PyTorch `F.conv_transpose1d`).
    ///
    /// # Shapes
    /// x: (B, T, C_in), w: (C_in, C_out/groups, K), b: (C_out) → (B, T_out, C_out)
    pub fn conv_transpose1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &ConvTranspose1dSpec) -> Result<Var> {
        spec.validate()?;
        let xs = self.conv_inputs("conv_transpose1d", x, 3, w, &spec.weight_shape(), b, spec.out_channels)?;
        let t_out = spec.output_len(xs[1])?;
        let mut out = Tensor::zeros(vec![xs[0], t_out, spec.out_channels]);
        let bias = b.map(|b| self.value(b).data());
        conv_transpose1d_forward(spec, self.value(x).data(), xs[0], xs[1], self.value(w).data(), bias, out.data_mut())?;
        Ok(self.record_conv(out, ConvKind::Transpose1d(*spec), x, w, b))
    }

    /// PixelCNN masked 2-D convolution, stride 1, padding (kH/2, kW/2).
    ///
    /// # Shapes
    /// x: (B, H, W, C_in), w: (C_out, C_in, kH, kW), b: (C_out) → (B, H, W, C_out)
    pub fn masked_conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &MaskedConv2dSpec) -> Result<Var> {
        let w_shape = [spec.out_channels, spec.in_channels, spec.kernel_h, spec.kernel_w];
        let xs = self.conv_inputs("masked_conv2d", x, 4, w, &w_shape, b, spec.out_channels)?;
        let mut out = Tensor::zeros(vec![xs[0], xs[1], xs[2], spec.out_channels]);
        let bias = b.map(|b| self.value(b).data());
        masked_conv2d_forward(spec, self.value(x).data(), xs[0], xs[1], xs[2], self.value(w).data(), bias, out.data_mut())?;
        Ok(self.record_conv(out, ConvKind::Masked2d(*spec), x, w, b))
    }
}
