//! Convolutions on the GPU tape: conv1d (explicit columns and one batched GEMM over the
//! groups; depthwise convs directly; kernel-1 convs as one GEMM), conv_transpose1d and
//! PixelCNN's masked conv2d (direct kernels).

use crate::error::{Error, Result};
use crate::tensor::gpu::graph::{GpuBackward, GpuGradCtx, GpuGraph};
use crate::tensor::gpu::launch::conv::{self as kc, Geo, Grid2d};
use crate::tensor::gpu::launch::gemm::{gemm, Out, View};
use crate::tensor::gpu::launch::reduce::{colsum, Term};
use crate::tensor::gpu::tensor::GpuTensor;
use crate::tensor::{Conv1dSpec, ConvTranspose1dSpec, MaskType, MaskedConv2dSpec, Var};

/// How a conv1d runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// One input channel per group: a direct kernel.
    Depthwise,
    /// Kernel 1, stride 1, no padding, one group: the input is the GEMM's left operand.
    Pointwise,
    /// Explicit columns, one GEMM per group in one dispatch.
    Columns,
}

fn geometry(spec: &Conv1dSpec, batch: usize, len: usize) -> Result<(Geo, Plan)> {
    spec.validate()?;
    let t_out = spec.output_len(len)?;
    let (left, right) = (spec.padding.left(), spec.padding.right());
    let geo = Geo {
        batch,
        t_in: len,
        c_in: spec.in_channels,
        t_out,
        c_out: spec.out_channels,
        stride: spec.stride,
        pad: left,
        dilation: spec.dilation,
        k: spec.kernel_size,
        groups: spec.groups,
    };
    let plan = if spec.groups == spec.in_channels && spec.groups > 1 {
        Plan::Depthwise
    } else if spec.kernel_size == 1 && spec.stride == 1 && left == 0 && right == 0 && spec.groups == 1 {
        Plan::Pointwise
    } else {
        Plan::Columns
    };
    Ok((geo, plan))
}

/// The columns of `x` for `geo`: (groups, batch·t_out, c_in/groups·k).
fn columns(x: &GpuTensor, geo: &Geo) -> Result<GpuTensor> {
    let cols = GpuTensor::empty(x.device(), &[geo.groups, geo.rows(), geo.col_width()], "convolution columns")?;
    kc::im2col(x, &cols, geo)?;
    Ok(cols)
}

/// `conv1d(x, w) + b` as a new (batch, t_out, c_out) tensor.
pub(crate) fn conv1d_forward(x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>, spec: &Conv1dSpec, batch: usize, len: usize) -> Result<GpuTensor> {
    let (geo, plan) = geometry(spec, batch, len)?;
    let out = GpuTensor::empty(x.device(), &[batch, geo.t_out, geo.c_out], "a convolution's output")?;
    let (rows, c_out, c_in) = (geo.rows(), geo.c_out, geo.c_in);
    match plan {
        Plan::Depthwise => kc::depthwise(x, w, b, &out, &geo)?,
        Plan::Pointwise => gemm(View::rows(x, c_in), View::rows(w, c_in).t(), Out::rows(&out, c_out), (rows, c_out, c_in), 1, b.map(|b| (b, 0, 0)), false)?,
        Plan::Columns => {
            let cols = columns(x, &geo)?;
            let (kg, cout_g) = (geo.col_width(), c_out / geo.groups);
            let a = View { t: &cols, off: 0, rs: kg, cs: 1, zs: rows * kg };
            let wt = View { t: w, off: 0, rs: 1, cs: kg, zs: cout_g * kg };
            let o = Out { t: &out, off: 0, rs: c_out, zs: cout_g };
            gemm(a, wt, o, (rows, cout_g, kg), geo.groups, b.map(|b| (b, 0, cout_g)), false)?;
        }
    }
    Ok(out)
}

/// Adds the gradients of `conv1d(x, w) + b` given `g` (batch, t_out, c_out).
pub(crate) fn conv1d_backward(ctx: &mut GpuGradCtx, g: &GpuTensor, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec) -> Result<()> {
    let (xv, wv) = (ctx.value(x), ctx.value(w));
    let (geo, plan) = geometry(spec, xv.shape()[0], xv.shape()[1])?;
    let (rows, c_out, c_in) = (geo.rows(), geo.c_out, geo.c_in);
    match plan {
        Plan::Depthwise => {
            if let Some((gx, fresh)) = ctx.grad_or_fresh(x)? {
                kc::depthwise_back_x(g, wv, &gx, &geo, !fresh)?;
            }
            if let Some((gw, fresh)) = ctx.grad_or_fresh(w)? {
                kc::depthwise_back_w(g, xv, &gw, &geo, !fresh)?;
            }
        }
        Plan::Pointwise => {
            if let Some((gx, fresh)) = ctx.grad_or_fresh(x)? {
                gemm(View::rows(g, c_out), View::rows(wv, c_in), Out::rows(&gx, c_in), (rows, c_in, c_out), 1, None, !fresh)?;
            }
            if let Some((gw, fresh)) = ctx.grad_or_fresh(w)? {
                gemm(View::rows(g, c_out).t(), View::rows(xv, c_in), Out::rows(&gw, c_in), (c_out, c_in, rows), 1, None, !fresh)?;
            }
        }
        Plan::Columns => {
            let (kg, cout_g, groups) = (geo.col_width(), c_out / geo.groups, geo.groups);
            if ctx.needs(w) {
                let cols = columns(xv, &geo)?;
                if let Some((gw, fresh)) = ctx.grad_or_fresh(w)? {
                    let gt = View { t: g, off: 0, rs: 1, cs: c_out, zs: cout_g };
                    let c = View { t: &cols, off: 0, rs: kg, cs: 1, zs: rows * kg };
                    gemm(gt, c, Out { t: &gw, off: 0, rs: kg, zs: cout_g * kg }, (cout_g, kg, rows), groups, None, !fresh)?;
                }
            }
            if ctx.needs(x) {
                let gcols = GpuTensor::empty(ctx.device(), &[groups, rows, kg], "convolution column gradients")?;
                let gv = View { t: g, off: 0, rs: c_out, cs: 1, zs: cout_g };
                let wg = View { t: wv, off: 0, rs: kg, cs: 1, zs: cout_g * kg };
                gemm(gv, wg, Out { t: &gcols, off: 0, rs: kg, zs: rows * kg }, (rows, kg, cout_g), groups, None, false)?;
                if let Some((gx, fresh)) = ctx.grad_or_fresh(x)? {
                    kc::col2im(&gcols, &gx, &geo, !fresh)?;
                }
            }
        }
    }
    if let Some(b) = b {
        if let Some((gb, fresh)) = ctx.grad_or_fresh(b)? {
            colsum(g, None, &gb, rows, c_out, Term::Value, !fresh, 1.0)?;
        }
    }
    Ok(())
}

/// Which convolution a [`ConvBack`] differentiates.
#[derive(Clone, Copy)]
enum Kind {
    Conv1d(Conv1dSpec),
    Transpose(Geo),
    Masked(Grid2d),
}

struct ConvBack {
    kind: Kind,
    x: Var,
    w: Var,
    b: Option<Var>,
}

impl GpuBackward for ConvBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let (xv, wv) = (ctx.value(self.x), ctx.value(self.w));
        let c_out = match self.kind {
            Kind::Conv1d(spec) => return conv1d_backward(ctx, g, self.x, self.w, self.b, &spec),
            Kind::Transpose(geo) => {
                if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
                    kc::conv_t_back_x(g, wv, &gx, &geo, !fresh)?;
                }
                if let Some((gw, fresh)) = ctx.grad_or_fresh(self.w)? {
                    kc::conv_t_back_w(g, xv, &gw, &geo, !fresh)?;
                }
                geo.c_out
            }
            Kind::Masked(grid) => {
                if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
                    kc::masked2d_back_x(g, wv, &gx, &grid, !fresh)?;
                }
                if let Some((gw, fresh)) = ctx.grad_or_fresh(self.w)? {
                    kc::masked2d_back_w(g, xv, &gw, &grid, !fresh)?;
                }
                grid.c_out
            }
        };
        if let Some(b) = self.b {
            if let Some((gb, fresh)) = ctx.grad_or_fresh(b)? {
                colsum(g, None, &gb, g.numel() / c_out.max(1), c_out, Term::Value, !fresh, 1.0)?;
            }
        }
        Ok(())
    }
}

impl GpuGraph {
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

    /// Checks a conv1d's shapes; returns (batch, len).
    pub(super) fn conv1d_shapes(&self, op: &'static str, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec) -> Result<(usize, usize)> {
        spec.validate()?;
        let xs = self.conv_inputs(op, x, 3, w, &spec.weight_shape(), b, spec.out_channels)?;
        if xs[2] != spec.in_channels {
            return Err(Error::shape(op, format!("input has {} channels, the conv takes {}", xs[2], spec.in_channels)));
        }
        Ok((xs[0], xs[1]))
    }

    fn record_conv(&mut self, out: GpuTensor, kind: Kind, x: Var, w: Var, b: Option<Var>) -> Var {
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        self.record(out, &inputs, ConvBack { kind, x, w, b })
    }

    /// 1-D convolution (PyTorch `F.conv1d`, asymmetric padding allowed).
    ///
    /// # Shapes
    /// x: (B, T, C_in), w: (C_out, C_in/groups, K), b: (C_out) → (B, T_out, C_out)
    pub fn conv1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec) -> Result<Var> {
        let (batch, len) = self.conv1d_shapes("conv1d", x, w, b, spec)?;
        let out = conv1d_forward(self.value(x), self.value(w), b.map(|b| self.value(b)), spec, batch, len)?;
        Ok(self.record_conv(out, Kind::Conv1d(*spec), x, w, b))
    }

    /// Transposed 1-D convolution (PyTorch `F.conv_transpose1d`).
    ///
    /// # Shapes
    /// x: (B, T, C_in), w: (C_in, C_out/groups, K), b: (C_out) → (B, T_out, C_out)
    pub fn conv_transpose1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &ConvTranspose1dSpec) -> Result<Var> {
        spec.validate()?;
        let xs = self.conv_inputs("conv_transpose1d", x, 3, w, &spec.weight_shape(), b, spec.out_channels)?;
        if xs[2] != spec.in_channels {
            return Err(Error::shape("conv_transpose1d", format!("input has {} channels, the conv takes {}", xs[2], spec.in_channels)));
        }
        let geo = Geo {
            batch: xs[0],
            t_in: xs[1],
            c_in: spec.in_channels,
            t_out: spec.output_len(xs[1])?,
            c_out: spec.out_channels,
            stride: spec.stride,
            pad: spec.padding,
            dilation: spec.dilation,
            k: spec.kernel_size,
            groups: spec.groups,
        };
        let out = GpuTensor::empty(self.device(), &[geo.batch, geo.t_out, geo.c_out], "a transposed convolution's output")?;
        kc::conv_t(self.value(x), self.value(w), b.map(|b| self.value(b)), &out, &geo)?;
        Ok(self.record_conv(out, Kind::Transpose(geo), x, w, b))
    }

    /// PixelCNN masked 2-D convolution (padding kH/2, kW/2).
    ///
    /// # Shapes
    /// x: (B, H, W, C_in), w: (C_out, C_in, kH, kW), b: (C_out) → (B, H, W, C_out)
    pub fn masked_conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &MaskedConv2dSpec) -> Result<Var> {
        spec.validate()?;
        let xs = self.conv_inputs("masked_conv2d", x, 4, w, &spec.weight_shape(), b, spec.out_channels)?;
        if xs[3] != spec.in_channels {
            return Err(Error::shape("masked_conv2d", format!("input has {} channels, the conv takes {}", xs[3], spec.in_channels)));
        }
        let grid = Grid2d {
            batch: xs[0],
            height: xs[1],
            width: xs[2],
            c_in: spec.in_channels,
            c_out: spec.out_channels,
            kh: spec.kernel_h,
            kw: spec.kernel_w,
            centre: spec.mask == MaskType::B,
        };
        let out = GpuTensor::empty(self.device(), &[xs[0], xs[1], xs[2], spec.out_channels], "a masked convolution's output")?;
        kc::masked2d(self.value(x), self.value(w), b.map(|b| self.value(b)), &out, &grid)?;
        Ok(self.record_conv(out, Kind::Masked(grid), x, w, b))
    }
}
