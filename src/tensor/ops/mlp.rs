//! A position-wise MLP, `fc2(act(fc1(x)))`, as one op: its activation runs on each block of
//! rows as soon as the first product has computed it, while the rows are in cache, and
//! backward multiplies by the activation's derivative the same way, in the epilogue of the
//! product that computes the hidden gradient (`Gemm::matmul_then_as_plain`: fused where the
//! plain product's kernel has an epilogue, so the bits stay the plain product's). Apart, the
//! hidden (N, H) values were written, read back for the activation, written again; backward
//! wrote the activation's gradient and read it back once more. The values are the same, bit
//! for bit.

use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::kernels::matmul::{Gemm, Init, Mat, Par, EPILOGUE_ROWS};
use crate::tensor::kernels::tap_gemm::add_column_sums;
use crate::tensor::memory::Scratch;
use crate::tensor::{Activation, Tensor};

/// One linear layer of the MLP: weight (Out, In) and an optional bias (Out).
#[derive(Clone, Copy, Debug)]
pub struct Dense {
    pub weight: Var,
    pub bias: Option<Var>,
}

struct MlpBack {
    x: Var,
    fc1: Dense,
    fc2: Dense,
    act: Activation,
    /// fc1's output, the activation's input (N, H).
    hidden: Tensor,
    /// The activation's output, fc2's input (N, H).
    activated: Tensor,
    gemm: Gemm,
}

impl BackwardOp for MlpBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (x, w1, w2) = (ctx.value(self.x), ctx.value(self.fc1.weight), ctx.value(self.fc2.weight));
        let (h, d) = (w1.shape()[0], w1.shape()[1]);
        let n_out = w2.shape()[0];
        let rows = self.hidden.numel() / h.max(1);
        let (hidden, activated) = (self.hidden.data(), self.activated.data());
        let gm = Mat::row_major(g, rows, n_out); // (N, Out)
        if let Some(gw2) = ctx.grad(self.fc2.weight) {
            self.gemm.matmul(gw2, h, gm.t(), Mat::row_major(activated, rows, h), true, Par::Pool);
            // (Out, H)
        }
        if let Some(gb2) = self.fc2.bias.and_then(|b| ctx.grad(b)) {
            add_column_sums(g, n_out, gb2); // (Out)
        }
        // The hidden gradient, times act' on each block of rows as soon as it is computed.
        let mut g_hidden = Scratch::new(rows * h); // (N, H), every value written by the product
        let block = EPILOGUE_ROWS * h;
        let derivative = |i: usize, rows: &mut [f32]| {
            let at = i * block..i * block + rows.len();
            self.act.grad_in_place(rows, &hidden[at.clone()], &activated[at]);
        };
        self.gemm.matmul_then_as_plain(&mut g_hidden, gm, Mat::row_major(w2.data(), n_out, h), Init::Zero, Par::Pool, &derivative);
        let ghm = Mat::row_major(&g_hidden, rows, h); // (N, H)
        if let Some(gw1) = ctx.grad(self.fc1.weight) {
            self.gemm.matmul(gw1, d, ghm.t(), Mat::row_major(x.data(), rows, d), true, Par::Pool);
            // (H, In)
        }
        if let Some(gb1) = self.fc1.bias.and_then(|b| ctx.grad(b)) {
            add_column_sums(&g_hidden, h, gb1); // (H)
        }
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x) {
            self.gemm.matmul(gx, d, ghm, Mat::row_major(w1.data(), h, d), !fresh, Par::Pool);
            // (N, In)
        }
        Ok(())
    }
}

impl Graph {
    /// `fc2(act(fc1(x)))` over the last axis (two `nn.Linear` around an activation), with
    /// the activation fused into the products forward and backward.
    ///
    /// # Shapes
    /// x: (..., In), fc1: (H, In) + (H), fc2: (Out, H) + (Out) → (..., Out)
    pub fn mlp(&mut self, x: Var, fc1: Dense, act: Activation, fc2: Dense) -> Result<Var> {
        let op = "mlp";
        let xs = self.shape(x).to_vec();
        let (w1s, w2s) = (self.shape(fc1.weight).to_vec(), self.shape(fc2.weight).to_vec());
        let d = *xs.last().ok_or_else(|| Error::shape(op, "input is a scalar"))?;
        let ([h, d1], [n_out, h2]) = (w1s.as_slice(), w2s.as_slice()) else {
            return Err(Error::shape(op, format!("weights {w1s:?} and {w2s:?} are not (H, In) and (Out, H)")));
        };
        let (h, n_out) = (*h, *n_out);
        if *d1 != d || *h2 != h {
            return Err(Error::shape(op, format!("weights {w1s:?} and {w2s:?} do not chain from {d} input features")));
        }
        for (bias, len) in [(fc1.bias, h), (fc2.bias, n_out)] {
            if let Some(b) = bias.filter(|&b| self.shape(b) != [len]) {
                return Err(Error::shape(op, format!("bias {:?} is not ({len})", self.shape(b))));
            }
        }
        let rows = self.value(x).numel() / d.max(1);
        let mut hidden_shape = xs.clone();
        *hidden_shape.last_mut().unwrap_or(&mut 0) = h;
        let mut hidden = Tensor::stale(hidden_shape.clone()); // (N, H), the product overwrites every value
        let mut activated = Tensor::stale(hidden_shape); // (N, H), written block by block below
        let gemm = self.gemm();
        {
            let block = EPILOGUE_ROWS * h.max(1);
            let blocks: Vec<Mutex<&mut [f32]>> = activated.data_mut().chunks_mut(block).map(Mutex::new).collect();
            let activate = |i: usize, rows: &mut [f32]| {
                if let Some(out) = blocks.get(i) {
                    act.apply_slice(&mut out.lock().unwrap_or_else(PoisonError::into_inner), rows);
                }
            };
            let xm = Mat::row_major(self.value(x).data(), rows, d);
            let w1 = Mat::row_major(self.value(fc1.weight).data(), h, d);
            let init = fc1.bias.map_or(Init::Zero, |b| Init::Rows(self.value(b).data()));
            gemm.matmul_then_as_plain(hidden.data_mut(), xm, w1.t(), init, Par::Pool, &activate);
            // (N, H)
        }
        let mut out_shape = xs;
        *out_shape.last_mut().unwrap_or(&mut 0) = n_out;
        let mut out = Tensor::stale(out_shape); // (N, Out), the product overwrites every value
        let am = Mat::row_major(activated.data(), rows, h);
        let w2 = Mat::row_major(self.value(fc2.weight).data(), n_out, h);
        let init = fc2.bias.map_or(Init::Zero, |b| Init::Rows(self.value(b).data()));
        gemm.matmul_init(out.data_mut(), n_out, am, w2.t(), init, Par::Pool); // (N, Out)
        let inputs: Vec<Var> = [Some(x), Some(fc1.weight), fc1.bias, Some(fc2.weight), fc2.bias].into_iter().flatten().collect();
        Ok(self.record(out, &inputs, MlpBack { x, fc1, fc2, act, hidden, activated, gemm }))
    }
}

#[cfg(test)]
mod tests;
