//! Linear layers and embedding lookups on the GPU tape.

use crate::error::{Error, Result};
use crate::tensor::gpu::graph::{GpuBackward, GpuGradCtx, GpuGraph};
use crate::tensor::gpu::launch::gemm::{gemm, Out, View};
use crate::tensor::gpu::launch::index::{gather, scatter_sorted, sorted_index};
use crate::tensor::gpu::launch::reduce::{colsum, Term};
use crate::tensor::gpu::tensor::{GpuIndex, GpuTensor};
use crate::tensor::Var;

/// Adds the gradients of `x · wᵀ + b` given `g` (rows, n_out): gx = g·w, gw += gᵀ·x, gb += Σ g.
pub(super) fn linear_backward(ctx: &mut GpuGradCtx, g: &GpuTensor, x: Var, w: Var, b: Option<Var>) -> Result<()> {
    let (xv, wv) = (ctx.value(x), ctx.value(w));
    let (n_out, n_in) = (wv.shape()[0], wv.shape()[1]);
    let rows = xv.numel() / n_in.max(1);
    if let Some((gx, fresh)) = ctx.grad_or_fresh(x)? {
        gemm(View::rows(g, n_out), View::rows(wv, n_in), Out::rows(&gx, n_in), (rows, n_in, n_out), 1, None, !fresh)?;
        // (N, In)
    }
    if let Some((gw, fresh)) = ctx.grad_or_fresh(w)? {
        gemm(View::rows(g, n_out).t(), View::rows(xv, n_in), Out::rows(&gw, n_in), (n_out, n_in, rows), 1, None, !fresh)?;
        // (Out, In)
    }
    if let Some(b) = b {
        if let Some((gb, fresh)) = ctx.grad_or_fresh(b)? {
            colsum(g, None, &gb, rows, n_out, Term::Value, !fresh, 1.0)?; // (Out)
        }
    }
    Ok(())
}

struct LinearBack {
    x: Var,
    w: Var,
    b: Option<Var>,
}
impl GpuBackward for LinearBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        linear_backward(ctx, g, self.x, self.w, self.b)
    }
}

struct EmbeddingBack {
    w: Var,
    /// `sorted_index` of the ids, on the device, and its count of distinct ids.
    index: GpuIndex,
    uniq: usize,
}
impl GpuBackward for EmbeddingBack {
    fn backward(&self, _out: &GpuTensor, g: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()> {
        let e = ctx.value(self.w).shape()[1];
        // Only the rows of ids in the batch are written: the rest must hold zeros.
        if let Some(gw) = ctx.grad(self.w)? {
            scatter_sorted(g, &self.index, &gw, g.numel() / e.max(1), self.uniq, e, true)?;
        }
        Ok(())
    }
}

impl GpuGraph {
    /// Checks `linear`'s shapes; returns (rows, n_in, n_out).
    pub(super) fn linear_shapes(&self, op: &'static str, x: Var, w: Var, b: Option<Var>) -> Result<(usize, usize, usize)> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        let n_in = *xs.last().ok_or_else(|| Error::shape(op, "input is a scalar"))?;
        if ws.len() != 2 || ws[1] != n_in {
            return Err(Error::shape(op, format!("weight {ws:?} does not take inputs with {n_in} features")));
        }
        let n_out = ws[0];
        if let Some(b) = b {
            if self.shape(b) != [n_out] {
                return Err(Error::shape(op, format!("bias {:?} is not ({n_out})", self.shape(b))));
            }
        }
        Ok((self.value(x).numel() / n_in.max(1), n_in, n_out))
    }

    /// `x · wᵀ + b` over the last axis (PyTorch `nn.Linear`).
    ///
    /// # Shapes
    /// x: (..., In), w: (Out, In), b: (Out) → (..., Out)
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (rows, n_in, n_out) = self.linear_shapes("linear", x, w, b)?;
        let mut shape = self.shape(x).to_vec();
        if let Some(l) = shape.last_mut() {
            *l = n_out;
        }
        let out = GpuTensor::empty(self.device(), &shape, "a linear layer's output")?;
        let bias = b.map(|b| (self.value(b), 0, 0));
        gemm(View::rows(self.value(x), n_in), View::rows(self.value(w), n_in).t(), Out::rows(&out, n_out), (rows, n_out, n_in), 1, bias, false)?; // (N, Out)
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        Ok(self.record(out, &inputs, LinearBack { x, w, b }))
    }

    /// Looks up rows of the embedding table `w` (V, E) for `ids` (host ids, sent up here).
    ///
    /// # Shapes
    /// ids: `shape` (e.g. (B, T)), w: (V, E) → (*shape, E)
    pub fn embedding(&mut self, w: Var, ids: &[u32], shape: &[usize]) -> Result<Var> {
        let ws = self.shape(w).to_vec();
        if ws.len() != 2 {
            return Err(Error::shape("embedding", format!("table must be (V, E), got {ws:?}")));
        }
        if shape.iter().product::<usize>() != ids.len() {
            return Err(Error::shape("embedding", format!("{} ids do not fill shape {shape:?}", ids.len())));
        }
        let (v, e) = (ws[0], ws[1]);
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= v) {
            return Err(Error::shape("embedding", format!("token id {bad} is outside the vocabulary of {v}")));
        }
        let mut out_shape = shape.to_vec();
        out_shape.push(e);
        let out = GpuTensor::empty(self.device(), &out_shape, "embeddings")?;
        let ids_dev = GpuIndex::upload(self.device(), ids)?;
        gather(self.value(w), &ids_dev, &out, e)?;
        if !self.requires_grad(w) {
            return Ok(self.constant(out));
        }
        let (index, uniq) = sorted_index(ids);
        let index = GpuIndex::upload(self.device(), &index)?;
        Ok(self.record(out, &[w], EmbeddingBack { w, index, uniq }))
    }
}
