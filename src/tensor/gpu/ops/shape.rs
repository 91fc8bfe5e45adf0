//! Shape ops and reductions on the GPU tape: reshape, scale, sum, weighted sum; and the CPU
//! tape's remaining ops that have no GPU kernel (no family uses them), which say so.

use crate::error::{Error, Result};
use crate::tensor::gpu::graph::{GpuBackward, GpuGradCtx, GpuGraph};
use crate::tensor::gpu::launch::elementwise::{self as ew, Unary};
use crate::tensor::gpu::launch::reduce::{colsum, Term};
use crate::tensor::gpu::tensor::GpuTensor;
use crate::tensor::Var;

/// The error for an op of the CPU tape without a GPU kernel: it names the op, and nothing
/// is ever copied to the CPU behind the caller's back.
pub(crate) fn no_kernel(op: &str) -> Error {
    Error::device(format!("`{op}` has no GPU kernel: it runs on the CPU tape only (--device cpu); convlm does not move an op to the CPU by itself"))
}

struct ScaleBack {
    x: Var,
    s: f32,
}
impl GpuBackward for ScaleBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            ew::map(g, &gx, Unary::Copy, !fresh, self.s)?;
        }
        Ok(())
    }
}

/// Backward of a sum with constant weights (all ones for a plain sum): gx += g·w.
struct SumBack {
    x: Var,
    weights: GpuTensor,
}
impl GpuBackward for SumBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x)? {
            ew::channel_mul(&self.weights, g, &gx, !fresh)?;
        }
        Ok(())
    }
}

impl GpuGraph {
    /// The same values under another shape with as many elements (a view of the buffer).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let out = self.value(x).reshape(shape)?;
        Ok(self.record(out, &[x], ScaleBack { x, s: 1.0 }))
    }

    /// `s * x`.
    pub fn scale(&mut self, x: Var, s: f32) -> Result<Var> {
        let out = GpuTensor::empty(self.device(), self.shape(x), "a scaled tensor")?;
        ew::map(self.value(x), &out, Unary::Copy, false, s)?;
        Ok(self.record(out, &[x], ScaleBack { x, s }))
    }

    /// Sum of all elements.
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        let n = self.value(x).numel();
        let ones = GpuTensor::empty(self.device(), &[n], "sum weights")?;
        ew::fill(&ones, 1.0)?;
        self.record_weighted(x, ones)
    }

    /// `Σ x · weights` with constant weights of the same size.
    pub fn weighted_sum(&mut self, x: Var, weights: &[f32]) -> Result<Var> {
        if weights.len() != self.value(x).numel() {
            return Err(Error::shape("weighted_sum", "weights and input differ in size"));
        }
        let w = GpuTensor::from_slice(self.device(), &[weights.len()], weights)?;
        self.record_weighted(x, w)
    }

    fn record_weighted(&mut self, x: Var, weights: GpuTensor) -> Result<Var> {
        let out = GpuTensor::empty(self.device(), &[], "a sum")?;
        colsum(self.value(x), Some(&weights), &out, weights.numel(), 1, Term::Product, false, 1.0)?;
        Ok(self.record(out, &[x], SumBack { x, weights }))
    }

    /// Zero padding along an axis: no GPU kernel (see [`no_kernel`]).
    pub fn pad(&mut self, _x: Var, _axis: usize, _left: usize, _right: usize) -> Result<Var> {
        Err(no_kernel("pad"))
    }

    /// Concatenation along an axis: no GPU kernel (see [`no_kernel`]).
    pub fn concat(&mut self, _parts: &[Var], _axis: usize) -> Result<Var> {
        Err(no_kernel("concat"))
    }

    /// Swapping the last two axes: no GPU kernel (the long convolution reads its filter with
    /// the lag as the row instead; see [`no_kernel`]).
    pub fn transpose_last2(&mut self, _x: Var) -> Result<Var> {
        Err(no_kernel("transpose_last2"))
    }
}
