//! Elementwise ops on the GPU tape: activations, sin, add, mul, per-channel scaling, GLU,
//! channel slices and dropout.

use crate::error::{Error, Result};
use crate::tensor::gpu::graph::{GpuBackward, GpuGradCtx, GpuGraph};
use crate::tensor::gpu::launch::elementwise::{self as ew, Binary, Unary};
use crate::tensor::gpu::launch::reduce::{colsum, Term};
use crate::tensor::gpu::tensor::GpuTensor;
use crate::tensor::{Activation, Var};

/// The forward kernel op and the backward rule of a pointwise function.
fn pointwise(act: Activation) -> (Unary, Binary) {
    match act {
        Activation::Tanh => (Unary::Tanh, Binary::TanhBack),
        Activation::Relu => (Unary::Relu, Binary::ReluBack),
        Activation::Gelu => (Unary::Gelu, Binary::GeluBack),
        Activation::Sigmoid => (Unary::Sigmoid, Binary::SigmoidBack),
    }
}

struct PointwiseBack {
    x: Var,
    back: Binary,
    /// The rule reads the output (tanh, sigmoid) rather than the input.
    uses_output: bool,
}
impl GpuBackward for PointwiseBack {
    fn backward(&self, out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let saved = if self.uses_output { out } else { ctx.value(self.x) };
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            ew::zip(g, saved, &gx, self.back, !fresh)?;
        }
        Ok(())
    }
}

struct AddBack {
    a: Var,
    b: Var,
}
impl GpuBackward for AddBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        for v in [self.a, self.b] {
            if let Some((gv, fresh)) = ctx.grad_or_fresh(v)? {
                ew::map(g, &gv, Unary::Copy, !fresh, 1.0)?;
            }
        }
        Ok(())
    }
}

struct MulBack {
    a: Var,
    b: Var,
}
impl GpuBackward for MulBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let (av, bv) = (ctx.value(self.a), ctx.value(self.b));
        if let Some((ga, fresh)) = ctx.grad_or_fresh(self.a)? {
            ew::zip(g, bv, &ga, Binary::Mul, !fresh)?;
        }
        if let Some((gb, fresh)) = ctx.grad_or_fresh(self.b)? {
            ew::zip(g, av, &gb, Binary::Mul, !fresh)?;
        }
        Ok(())
    }
}

struct ChannelMulBack {
    x: Var,
    v: Var,
}
impl GpuBackward for ChannelMulBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let (x, v) = (ctx.value(self.x), ctx.value(self.v));
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            ew::channel_mul(g, v, &gx, !fresh)?;
        }
        if let Some((gv, fresh)) = ctx.grad_or_fresh(self.v)? {
            let c = v.numel();
            colsum(g, Some(x), &gv, x.numel() / c.max(1), c, Term::Product, !fresh, 1.0)?;
        }
        Ok(())
    }
}

struct GluBack {
    x: Var,
}
impl GpuBackward for GluBack {
    fn backward(&self, out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let x = ctx.value(self.x);
        let c = *out.shape().last().unwrap_or(&0);
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            ew::glu_back(g, x, &gx, out.numel() / c.max(1), c, !fresh)?;
        }
        Ok(())
    }
}

struct SliceBack {
    x: Var,
    start: usize,
}
impl GpuBackward for SliceBack {
    fn backward(&self, out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let x = ctx.value(self.x);
        let (w_in, w_out) = (*x.shape().last().unwrap_or(&0), *out.shape().last().unwrap_or(&0));
        if let Some(gx) = ctx.grad(self.x)? {
            ew::slice_back(g, &gx, x.numel() / w_in.max(1), w_in, self.start, w_out)?;
        }
        Ok(())
    }
}

struct DropoutBack {
    x: Var,
    seed: u64,
    p: f32,
}
impl GpuBackward for DropoutBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            ew::dropout(g, &gx, self.seed, self.p, !fresh)?;
        }
        Ok(())
    }
}

impl GpuGraph {
    fn same_shape(&self, op: &'static str, a: Var, b: Var) -> Result<()> {
        if self.shape(a) != self.shape(b) {
            return Err(Error::shape(op, format!("shapes {:?} and {:?} differ", self.shape(a), self.shape(b))));
        }
        Ok(())
    }

    fn empty_like(&self, x: Var, what: &str) -> Result<GpuTensor> {
        GpuTensor::empty(self.device(), self.shape(x), what)
    }

    /// Pointwise activation.
    pub fn activation(&mut self, x: Var, act: Activation) -> Result<Var> {
        let (fwd, back) = pointwise(act);
        let out = self.empty_like(x, "an activation")?;
        ew::map(self.value(x), &out, fwd, false, 1.0)?;
        let uses_output = matches!(act, Activation::Tanh | Activation::Sigmoid);
        Ok(self.record(out, &[x], PointwiseBack { x, back, uses_output }))
    }

    /// `sin(x)` (Hyena's filter activation).
    pub fn sin(&mut self, x: Var) -> Result<Var> {
        let out = self.empty_like(x, "sin")?;
        ew::map(self.value(x), &out, Unary::Sin, false, 1.0)?;
        Ok(self.record(out, &[x], PointwiseBack { x, back: Binary::SinBack, uses_output: false }))
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape("add", a, b)?;
        let out = self.empty_like(a, "a sum")?;
        ew::zip(self.value(a), self.value(b), &out, Binary::Add, false)?;
        Ok(self.record(out, &[a, b], AddBack { a, b }))
    }

    /// `a * b` elementwise (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape("mul", a, b)?;
        let out = self.empty_like(a, "a product")?;
        ew::zip(self.value(a), self.value(b), &out, Binary::Mul, false)?;
        Ok(self.record(out, &[a, b], MulBack { a, b }))
    }

    /// `x * v` with `v` (C) broadcast over the rows of `x` (..., C).
    pub fn scale_channels(&mut self, x: Var, v: Var) -> Result<Var> {
        let c = *self.shape(x).last().ok_or_else(|| Error::shape("scale_channels", "input is a scalar"))?;
        if self.shape(v) != [c] {
            return Err(Error::shape("scale_channels", format!("scale {:?} is not ({c})", self.shape(v))));
        }
        let out = self.empty_like(x, "scaled channels")?;
        ew::channel_mul(self.value(x), self.value(v), &out, false)?;
        Ok(self.record(out, &[x, v], ChannelMulBack { x, v }))
    }

    /// Gated linear unit over the last axis: `x[..., :C] * sigmoid(x[..., C:])`.
    pub fn glu(&mut self, x: Var) -> Result<Var> {
        let mut shape = self.shape(x).to_vec();
        let two_c = *shape.last().ok_or_else(|| Error::shape("glu", "input is a scalar"))?;
        if two_c % 2 != 0 {
            return Err(Error::shape("glu", format!("last axis {two_c} is odd")));
        }
        let c = two_c / 2;
        if let Some(l) = shape.last_mut() {
            *l = c;
        }
        let out = GpuTensor::empty(self.device(), &shape, "glu")?;
        ew::glu(self.value(x), &out, out.numel() / c.max(1), c)?;
        Ok(self.record(out, &[x], GluBack { x }))
    }

    /// Channels `start..end` of the last axis.
    pub fn slice_channels(&mut self, x: Var, start: usize, end: usize) -> Result<Var> {
        let mut shape = self.shape(x).to_vec();
        let w_in = *shape.last().ok_or_else(|| Error::shape("slice", "input is a scalar"))?;
        if start > end || end > w_in {
            return Err(Error::shape("slice", format!("range {start}..{end} outside the last axis of length {w_in}")));
        }
        if let Some(l) = shape.last_mut() {
            *l = end - start;
        }
        let out = GpuTensor::empty(self.device(), &shape, "a slice")?;
        ew::slice(self.value(x), &out, out.numel() / (end - start).max(1), w_in, start, end - start)?;
        Ok(self.record(out, &[x], SliceBack { x, start }))
    }

    /// Inverted dropout with the counter-based mask of `seed`: in training mode zeroes each
    /// value with probability `p` and scales the rest by 1/(1-p); the identity in eval mode.
    /// The masks are not the CPU engine's (same distribution, other draws).
    pub fn dropout(&mut self, x: Var, p: f32, seed: u64) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config("dropout", format!("probability {p} is not in [0, 1)")));
        }
        if !self.training() || p == 0.0 {
            return Ok(x);
        }
        let out = self.empty_like(x, "dropout")?;
        ew::dropout(self.value(x), &out, seed, p, false)?;
        Ok(self.record(out, &[x], DropoutBack { x, seed, p }))
    }
}
