//! Hyena's long causal convolution on the GPU tape.
//!
//! Direct form: for W4 (B = 4, T = 1024, C = 128) each pass is B·C·T²/2 ≈ 0.27 G
//! multiply-adds, three passes (forward, input and filter gradients) ≈ 0.8 GMAC per layer
//! and step — about 0.1 ms of an H100's fp32 rate — with every load contiguous across
//! neighbouring channels, no FFT plans, no complex buffers, and sums in a fixed order.
//! An FFT would cut the arithmetic ~50× but not the step time in proportion: the layer's
//! other work (projections, MLP, head) is already larger than the direct convolution.

use crate::error::{Error, Result};
use crate::tensor::gpu::graph::{GpuBackward, GpuGradCtx, GpuGraph};
use crate::tensor::gpu::launch::norm::{long_conv, long_conv_back_h, long_conv_back_u};
use crate::tensor::gpu::launch::reduce::{colsum, Term};
use crate::tensor::gpu::tensor::GpuTensor;
use crate::tensor::Var;

struct LongConvBack {
    u: Var,
    h: Var,
    d: Var,
}
impl GpuBackward for LongConvBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let (uv, hv, dv) = (ctx.value(self.u), ctx.value(self.h), ctx.value(self.d));
        let (batch, len, ch) = (uv.shape()[0], uv.shape()[1], uv.shape()[2]);
        if let Some((gu, fresh)) = ctx.grad_or_fresh(self.u)? {
            long_conv_back_u(g, hv, dv, &gu, batch, len, ch, !fresh)?;
        }
        if let Some((gh, fresh)) = ctx.grad_or_fresh(self.h)? {
            long_conv_back_h(g, uv, &gh, batch, len, ch, !fresh)?;
        }
        if let Some((gd, fresh)) = ctx.grad_or_fresh(self.d)? {
            colsum(g, Some(uv), &gd, batch * len, ch, Term::Product, !fresh, 1.0)?;
        }
        Ok(())
    }
}

impl GpuGraph {
    /// `y = h ∗ u + d ⊙ u`: Hyena's long causal convolution of every channel of `u` with its
    /// filter, `h` given with the lag as the row (as `LongConv::filter` records it).
    ///
    /// # Shapes
    /// u: (B, T, C), h: (T, C), d: (C) → (B, T, C)
    pub fn long_conv(&mut self, u: Var, h: Var, d: Var) -> Result<Var> {
        let us = self.shape(u).to_vec();
        let [batch, len, ch] = us[..] else {
            return Err(Error::shape("long_conv", format!("input must be (B, T, C), got {us:?}")));
        };
        if self.shape(h) != [len, ch] || self.shape(d) != [ch] {
            return Err(Error::shape("long_conv", format!("filter {:?} and skip {:?} do not fit an input of {us:?}", self.shape(h), self.shape(d))));
        }
        let out = GpuTensor::empty(self.device(), &us, "a long convolution's output")?;
        long_conv(self.value(u), self.value(h), self.value(d), &out, batch, len, ch)?;
        Ok(self.record(out, &[u, h, d], LongConvBack { u, h, d }))
    }
}
