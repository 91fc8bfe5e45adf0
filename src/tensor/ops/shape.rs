//! Shape ops: zero-pad, slice and concatenate along an axis, reshape, transpose.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::dense::transpose_last2_into;
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::memory::{stale, Scratch};
use crate::tensor::Tensor;

/// (outer, axis length, inner) sizes of a shape split at `axis`.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

/// Copies `src` blocks (outer, src_len, inner) into `dst` (outer, dst_len, inner) at `offset`
/// along the axis, adding (`acc`) or overwriting.
/// Large copies run in parallel over groups of whole blocks.
fn copy_blocks(dst: &mut [f32], dst_len: usize, src: &[f32], src_len: usize, inner: usize, offset: usize, acc: bool) {
    let (sb, db) = (src_len * inner, dst_len * inner);
    if sb == 0 || db == 0 {
        return;
    }
    let copy = |dst: &mut [f32], src: &[f32]| {
        for (d, s) in dst.chunks_exact_mut(db).zip(src.chunks_exact(sb)) {
            let d = &mut d[offset * inner..offset * inner + sb];
            if acc {
                d.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            } else {
                d.copy_from_slice(s);
            }
        }
    };
    const PAR_VALUES: usize = 1 << 15;
    if dst.len() >= PAR_VALUES {
        let per_task = (8192 / db).max(1); // blocks per task
        dst.par_chunks_mut(per_task * db).zip(src.par_chunks(per_task * sb)).for_each(|(d, s)| copy(d, s));
    } else {
        copy(dst, src);
    }
}

/// Backward of pad (a slice of the gradient) and of slice (a zero-padded gradient).
struct WindowBack {
    x: Var,
    axis: usize,
    /// Offset of the input inside the output along `axis` (pad) or of the output inside the
    /// input (slice, stored negated through `input_is_larger`).
    offset: usize,
    input_is_larger: bool,
}
impl BackwardOp for WindowBack {
    fn backward(&self, out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let xs = ctx.value(self.x).shape().to_vec();
        let (_, x_len, inner) = split_at_axis(&xs, self.axis);
        let out_len = out.shape()[self.axis];
        let Some(gx) = ctx.grad(self.x) else { return Ok(()) };
        if self.input_is_larger {
            copy_blocks(gx, x_len, g, out_len, inner, self.offset, true);
        } else {
            let (ob, xb) = (out_len * inner, x_len * inner);
            for (o, gxb) in gx.chunks_mut(xb.max(1)).enumerate() {
                let s = &g[o * ob + self.offset * inner..o * ob + self.offset * inner + xb];
                gxb.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            }
        }
        Ok(())
    }
}

struct ConcatBack {
    parts: Vec<Var>,
    axis: usize,
}
impl BackwardOp for ConcatBack {
    fn backward(&self, out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let out_len = out.shape()[self.axis];
        let mut offset = 0;
        for &p in &self.parts {
            let ps = ctx.value(p).shape().to_vec();
            let (_, len, inner) = split_at_axis(&ps, self.axis);
            if let Some(gp) = ctx.grad(p) {
                let (ob, pb) = (out_len * inner, len * inner);
                for (o, gpb) in gp.chunks_mut(pb.max(1)).enumerate() {
                    let s = &g[o * ob + offset * inner..o * ob + offset * inner + pb];
                    gpb.iter_mut().zip(s).for_each(|(a, b)| *a += b);
                }
            }
            offset += len;
        }
        Ok(())
    }
}

struct ReshapeBack {
    x: Var,
}
impl BackwardOp for ReshapeBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        if let Some(gx) = ctx.grad(self.x) {
            gx.iter_mut().zip(g).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }
}

struct TransposeBack {
    x: Var,
}
impl BackwardOp for TransposeBack {
    fn backward(&self, out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        if ctx.needs_grad(self.x) {
            let mut gt = Scratch::new(g.len()); // x's shape; every value written below
            transpose_last2_into(g, out.shape(), &mut gt);
            if let Some(gx) = ctx.grad(self.x) {
                gx.iter_mut().zip(gt.iter()).for_each(|(a, b)| *a += b);
            }
        }
        Ok(())
    }
}

impl Graph {
    fn check_axis(&self, op: &'static str, x: Var, axis: usize) -> Result<Vec<usize>> {
        let shape = self.shape(x).to_vec();
        if axis >= shape.len() {
            return Err(Error::shape(op, format!("axis {axis} out of range for shape {shape:?}")));
        }
        Ok(shape)
    }

    /// Zero-pads `x` with `left` and `right` entries along `axis`.
    ///
    /// # Shapes
    /// (…, L, …) → (…, left + L + right, …)
    pub fn pad(&mut self, x: Var, axis: usize, left: usize, right: usize) -> Result<Var> {
        let shape = self.check_axis("pad", x, axis)?;
        let (_, len, inner) = split_at_axis(&shape, axis);
        let mut out_shape = shape.clone();
        out_shape[axis] = left + len + right;
        let mut out = Tensor::zeros(out_shape.clone());
        copy_blocks(out.data_mut(), out_shape[axis], self.value(x).data(), len, inner, left, false);
        Ok(self.record(out, &[x], WindowBack { x, axis, offset: left, input_is_larger: false }))
    }

    /// `x[.., start..end, ..]` along `axis`.
    pub fn slice(&mut self, x: Var, axis: usize, start: usize, end: usize) -> Result<Var> {
        let shape = self.check_axis("slice", x, axis)?;
        if start > end || end > shape[axis] {
            return Err(Error::shape("slice", format!("range {start}..{end} outside axis {axis} of length {}", shape[axis])));
        }
        let (_, len, inner) = split_at_axis(&shape, axis);
        let mut out_shape = shape.clone();
        out_shape[axis] = end - start;
        let (ob, xb) = ((end - start) * inner, len * inner);
        let mut data = stale(out_shape.iter().product()); // every block written below
        if let Some(per_task) = 8192usize.checked_div(ob) {
            let src = self.value(x).data();
            let per_task = per_task.max(1); // blocks per task
            data.par_chunks_mut(per_task * ob).zip(src.par_chunks(per_task * xb.max(1))).for_each(|(d, s)| {
                for (d, s) in d.chunks_exact_mut(ob).zip(s.chunks(xb.max(1))) {
                    d.copy_from_slice(&s[start * inner..start * inner + ob]);
                }
            });
        }
        let out = Tensor::new(out_shape, data)?;
        Ok(self.record(out, &[x], WindowBack { x, axis, offset: start, input_is_larger: true }))
    }

    /// Concatenates tensors that agree on every axis but `axis`.
    pub fn concat(&mut self, parts: &[Var], axis: usize) -> Result<Var> {
        let first = *parts.first().ok_or_else(|| Error::shape("concat", "nothing to concatenate"))?;
        let mut out_shape = self.check_axis("concat", first, axis)?;
        out_shape[axis] = 0;
        for &p in parts {
            let s = self.shape(p);
            let same_rest = s.len() == out_shape.len() && s.iter().zip(&out_shape).enumerate().all(|(i, (a, b))| i == axis || a == b);
            if !same_rest {
                return Err(Error::shape("concat", format!("shape {s:?} does not match {out_shape:?} off axis {axis}")));
            }
            out_shape[axis] += s[axis];
        }
        let mut out = Tensor::zeros(out_shape.clone());
        let mut offset = 0;
        for &p in parts {
            let (_, len, inner) = split_at_axis(self.shape(p), axis);
            copy_blocks(out.data_mut(), out_shape[axis], self.value(p).data(), len, inner, offset, false);
            offset += len;
        }
        Ok(self.record(out, parts, ConcatBack { parts: parts.to_vec(), axis }))
    }

    /// The same values under another shape with as many elements.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let out = self.value(x).clone().reshape(shape.to_vec())?;
        Ok(self.record(out, &[x], ReshapeBack { x }))
    }

    /// Swaps the last two axes, e.g. (B, T, C) ↔ (B, C, T).
    pub fn transpose_last2(&mut self, x: Var) -> Result<Var> {
        if self.shape(x).len() < 2 {
            return Err(Error::shape("transpose", "needs at least two axes"));
        }
        let out = self.value(x).transpose_last2();
        Ok(self.record(out, &[x], TransposeBack { x }))
    }
}
