//! Dense ops: linear layers over the last axis and embedding lookups.

use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::kernels::matmul::{matmul, matmul_init, Init, Mat, Par};
use crate::tensor::kernels::tap_gemm::add_column_sums;
use crate::tensor::memory::stale;
use crate::tensor::Tensor;

/// Adds `bias` (C) to every row of `out` (N, C).
pub(crate) fn add_bias_rows(out: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    for row in out.chunks_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
    }
}

struct LinearBack {
    x: Var,
    w: Var,
    b: Option<Var>,
}
impl BackwardOp for LinearBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (x, w) = (ctx.value(self.x), ctx.value(self.w));
        let (n_out, n_in) = (w.shape()[0], w.shape()[1]);
        let rows = x.numel() / n_in.max(1);
        let gm = Mat::row_major(g, rows, n_out); // (N, Out)
                                                 // A gradient buffer created here is overwritten by the product.
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x) {
            matmul(gx, n_in, gm, Mat::row_major(w.data(), n_out, n_in), !fresh, Par::Pool);
            // (N, In)
        }
        if let Some(gw) = ctx.grad(self.w) {
            matmul(gw, n_in, gm.t(), Mat::row_major(x.data(), rows, n_in), true, Par::Pool);
            // (Out, In)
        }
        if let Some(b) = self.b {
            if let Some(gb) = ctx.grad(b) {
                add_column_sums(g, n_out, gb); // (Out)
            }
        }
        Ok(())
    }
}

struct EmbeddingBack {
    w: Var,
    ids: Vec<u32>,
}
impl BackwardOp for EmbeddingBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let e = ctx.value(self.w).shape()[1];
        if let Some(gw) = ctx.grad(self.w) {
            for (&id, grow) in self.ids.iter().zip(g.chunks(e)) {
                let dst = &mut gw[id as usize * e..(id as usize + 1) * e];
                dst.iter_mut().zip(grow).for_each(|(a, b)| *a += b);
            }
        }
        Ok(())
    }
}

impl Graph {
    /// `x · wᵀ + b` over the last axis (PyTorch `nn.Linear`).
    ///
    /// # Shapes
    /// x: (..., In), w: (Out, In), b: (Out) → (..., Out)
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        let n_in = *xs.last().ok_or_else(|| Error::shape("linear", "input is a scalar"))?;
        if ws.len() != 2 || ws[1] != n_in {
            return Err(Error::shape("linear", format!("weight {ws:?} does not take inputs with {n_in} features")));
        }
        let n_out = ws[0];
        if let Some(b) = b {
            if self.shape(b) != [n_out] {
                return Err(Error::shape("linear", format!("bias {:?} is not ({n_out})", self.shape(b))));
            }
        }
        let rows = self.value(x).numel() / n_in.max(1);
        let mut out_shape = xs.clone();
        *out_shape.last_mut().unwrap_or(&mut 0) = n_out;
        let mut out = Tensor::stale(out_shape); // the product overwrites every value
        let xm = Mat::row_major(self.value(x).data(), rows, n_in);
        let wm = Mat::row_major(self.value(w).data(), n_out, n_in);
        let init = b.map_or(Init::Zero, |b| Init::Rows(self.value(b).data()));
        matmul_init(out.data_mut(), n_out, xm, wm.t(), init, Par::Pool); // (N, Out)
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        Ok(self.record(out, &inputs, LinearBack { x, w, b }))
    }

    /// Looks up rows of the embedding table `w` (V, E).
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
        let table = self.value(w).data();
        let mut data = stale(ids.len() * e); // every row written below
        for (&id, row) in ids.iter().zip(data.chunks_exact_mut(e.max(1))) {
            row.copy_from_slice(&table[id as usize * e..(id as usize + 1) * e]);
        }
        let mut out_shape = shape.to_vec();
        out_shape.push(e);
        let out = Tensor::new(out_shape, data)?;
        Ok(self.record(out, &[w], EmbeddingBack { w, ids: ids.to_vec() }))
    }
}
