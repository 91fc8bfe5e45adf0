//! A groups-1 conv1d whose output only feeds a mean cross-entropy (a language model's head:
//! logits over the vocabulary), fused into one kernel.
//!
//! The logits (B·T_out, V) are the biggest tensor of a step (W1: 82 MB). Computed apart,
//! they are written by the conv, read by the loss, whose gradient goes to a second buffer
//! that is read once more for the bias gradient. Here each block of [`EPILOGUE_ROWS`] rows
//! of logits becomes its loss and gradient in place ([`matmul_then`]: on AVX2-only CPUs as
//! soon as the GEMM has computed it, while it is still in cache; with AVX-512 after the
//! faster whole product), and the bias gradient is summed on the way. Only the gradient
//! buffer ever exists; backward reads it twice, in one GEMM each for the input and the
//! weight gradient, over the input's explicit columns.

use std::sync::{Mutex, PoisonError};

use super::conv1d::Conv1dSpec;
use super::im2col::{Columns, MAX_COLS};
use super::matmul::{matmul_then, Init, Mat, Par, EPILOGUE_ROWS};
use super::softmax::{count_targets, row_lse, softmax_in_place, IGNORE_INDEX};
use super::window_gemm::pack_forward;
use crate::error::{Error, Result};
use crate::tensor::cpu::avx2_fma;
use crate::tensor::memory::Scratch;

const OP: &str = "conv1d_cross_entropy";

/// The loss of [`conv1d_cross_entropy`] and, when asked for, what its backward needs.
pub struct HeadLoss {
    /// Mean cross-entropy over the targets that count.
    pub loss: f32,
    /// The saved gradient state (with `with_grad` only).
    pub grad: Option<HeadGrad>,
}

/// The gradient state of a fused head, for [`HeadGrad::backward`].
pub struct HeadGrad {
    cols: Columns,
    out_channels: usize,
    /// d loss / d logits for an upstream gradient of 1: `(softmax − one_hot(target)) / count`,
    /// zero rows where the target is ignored. (B·T_out, V)
    grad_logits: Scratch,
    /// Σ over rows of `grad_logits`: the bias gradient. (V)
    grad_bias: Vec<f32>,
    /// The input's columns. (B·T_out, K·C_in)
    x_cols: Scratch,
}

/// One epilogue block's share: its rows' summed loss and, with gradients, their column sums.
#[derive(Default)]
struct BlockResult {
    loss: f64,
    grad_bias: Vec<f32>,
}

/// Whether [`conv1d_cross_entropy`] takes `spec` on inputs of (batch, len): groups 1 and
/// columns of at most [`MAX_COLS`] values.
pub fn fuses(spec: &Conv1dSpec, batch: usize, len: usize) -> bool {
    spec.validate().is_ok() && spec.output_len(len).is_ok_and(|t_out| spec.columns(batch, len, t_out).is_some())
}

/// Mean cross-entropy of `conv1d(x, weight, bias)` over its channels against `targets`
/// (one per output row; [`IGNORE_INDEX`] rows do not count). With `with_grad`, the
/// gradient state is kept for [`HeadGrad::backward`].
///
/// # Shapes
/// - x: `[batch, len, in_channels]`
/// - weight: `[out_channels, in_channels, kernel_size]` (groups 1)
/// - bias: `[out_channels]`
/// - targets: `[batch · output_len(len)]`, values in `0..out_channels` or [`IGNORE_INDEX`]
#[allow(clippy::too_many_arguments)]
pub fn conv1d_cross_entropy(
    spec: &Conv1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    targets: &[i64],
    with_grad: bool,
) -> Result<HeadLoss> {
    spec.validate()?;
    let t_out = spec.output_len(len)?;
    let (v, rows) = (spec.out_channels, batch * t_out);
    let cols = spec.columns(batch, len, t_out).ok_or_else(|| Error::shape(OP, format!("needs groups 1 and at most {MAX_COLS} column values")))?;
    // (B·T_out, V), overwritten by the GEMM; becomes the gradient in place. A scratch
    // buffer: the last step's 82 MB (W1) come back instead of being zeroed on one thread.
    let mut logits = Scratch::new(rows * v);
    spec.dims(batch, len, t_out).check_forward(OP, x, weight, bias, &logits)?;
    let count = count_targets(OP, targets, rows, v)?;
    let width = cols.width();
    let x_cols = cols.gather(x); // (B·T_out, K·C_in)
    let wp = pack_forward(weight, v, spec.in_channels, spec.kernel_size); // (K·C_in, V)
    let blocks: Vec<Mutex<BlockResult>> = (0..rows.div_ceil(EPILOGUE_ROWS)).map(|_| Mutex::default()).collect();
    let (per_target, avx2) = (1.0 / count as f32, avx2_fma());
    let epilogue = |block: usize, logits: &mut [f32]| {
        let mut res = BlockResult { loss: 0.0, grad_bias: vec![0.0; if with_grad { v } else { 0 }] };
        for (row, &t) in logits.chunks_exact_mut(v).zip(&targets[block * EPILOGUE_ROWS..]) {
            if t == IGNORE_INDEX {
                row.fill(0.0);
                continue;
            }
            let t = t as usize;
            let logit = row[t];
            let lse = if with_grad {
                let lse = softmax_in_place(row, per_target, avx2);
                row[t] -= per_target;
                res.grad_bias.iter_mut().zip(row.iter()).for_each(|(b, g)| *b += g);
                lse
            } else {
                row_lse(row, avx2)
            };
            res.loss += (lse - logit) as f64;
        }
        *blocks[block].lock().unwrap_or_else(PoisonError::into_inner) = res;
    };
    let init = bias.map_or(Init::Zero, Init::Rows);
    matmul_then(&mut logits, Mat::row_major(&x_cols, rows, width), Mat::row_major(&wp, width, v), init, Par::Pool, &epilogue);
    // Blocks are added in order, so the sums do not depend on the thread count.
    let mut loss = 0.0f64;
    let mut grad_bias = vec![0.0f32; if with_grad { v } else { 0 }];
    for block in blocks {
        let block = block.into_inner().unwrap_or_else(PoisonError::into_inner);
        loss += block.loss;
        grad_bias.iter_mut().zip(&block.grad_bias).for_each(|(a, b)| *a += b);
    }
    let grad = with_grad.then(|| HeadGrad { cols, out_channels: v, grad_logits: logits, grad_bias, x_cols });
    Ok(HeadLoss { loss: (loss / count as f64) as f32, grad })
}

impl HeadGrad {
    /// ADDS `scale` (the loss's upstream gradient) times d loss / d (x, weight, bias) into
    /// each given buffer.
    ///
    /// # Shapes
    /// - weight, grad_weight: `[out_channels, in_channels, kernel_size]`
    /// - grad_x: `[batch, len, in_channels]`
    /// - grad_bias: `[out_channels]`
    pub fn backward(
        &self,
        weight: &[f32],
        scale: f32,
        grad_x: Option<&mut [f32]>,
        grad_weight: Option<&mut [f32]>,
        grad_bias: Option<&mut [f32]>,
    ) -> Result<()> {
        let (cols, v) = (&self.cols, self.out_channels);
        let sizes = [
            ("weight", Some(weight.len()), v * cols.width()),
            ("grad_weight", grad_weight.as_deref().map(<[f32]>::len), v * cols.width()),
            ("grad_x", grad_x.as_deref().map(<[f32]>::len), cols.batch * cols.len * cols.c_in),
            ("grad_bias", grad_bias.as_deref().map(<[f32]>::len), v),
        ];
        for (name, got, want) in sizes {
            if let Some(got) = got.filter(|&got| got != want) {
                return Err(Error::shape(OP, format!("{name} has {got} values, expected {want}")));
            }
        }
        if let Some(gb) = grad_bias {
            gb.iter_mut().zip(&self.grad_bias).for_each(|(g, b)| *g += scale * b);
        }
        if let Some(gw) = grad_weight {
            cols.grad_weight(&self.x_cols, v, &self.grad_logits, scale, gw);
        }
        if let Some(gx) = grad_x {
            cols.grad_input(weight, v, &self.grad_logits, scale, gx);
        }
        Ok(())
    }
}
