//! The product of two channel windows, `a[..., i..i+w] * b[..., j..j+w]`: Hyena's gates read
//! their operands straight out of the short convolution's (B, T, 3d) output, where slicing
//! them out first cost a copy of each window forward and a zero-padded gradient of each
//! backward.

use rayon::prelude::*;

use super::PAR_THRESHOLD;
use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::memory::stale;
use crate::tensor::Tensor;

/// Values per parallel task (whole rows).
const VALUES_PER_TASK: usize = 8192;

/// A window of `width` channels from `start` in a (rows, channels) buffer.
#[derive(Clone, Copy, Debug)]
struct Window {
    channels: usize,
    start: usize,
}

impl Window {
    fn row<'s>(&self, data: &'s [f32], r: usize, width: usize) -> &'s [f32] {
        &data[r * self.channels + self.start..r * self.channels + self.start + width]
    }
}

/// Runs `f(first_row, dst_rows)` over groups of whole rows of `dst` (rows of `row_len`
/// values), in parallel for large buffers.
fn over_rows(dst: &mut [f32], row_len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if row_len == 0 {
        return;
    }
    let per_task = (VALUES_PER_TASK / row_len).max(1); // rows per task
    if dst.len() >= PAR_THRESHOLD {
        dst.par_chunks_mut(per_task * row_len).enumerate().for_each(|(i, d)| f(i * per_task, d));
    } else {
        f(0, dst);
    }
}

/// `dst[r, dst.start + j] (+)= g[r, j] · other[r, other.start + j]` for every row `r` and
/// `j < width`: one operand's gradient from the other operand's window. `put` overwrites
/// (a fresh buffer the window covers whole); otherwise it adds.
fn window_grad(dst: &mut [f32], into: Window, g: &[f32], other: &[f32], from: Window, width: usize, put: bool) {
    over_rows(dst, into.channels, |r0, rows| {
        for (i, drow) in rows.chunks_exact_mut(into.channels).enumerate() {
            let r = r0 + i;
            let d = &mut drow[into.start..into.start + width];
            let (grow, orow) = (&g[r * width..(r + 1) * width], from.row(other, r, width));
            if put {
                d.iter_mut().zip(grow.iter().zip(orow)).for_each(|(d, (&g, &o))| *d = g * o);
            } else {
                d.iter_mut().zip(grow.iter().zip(orow)).for_each(|(d, (&g, &o))| *d += g * o);
            }
        }
    });
}

struct MulChannelsBack {
    a: Var,
    b: Var,
    wa: Window,
    wb: Window,
    width: usize,
}

impl BackwardOp for MulChannelsBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (av, bv, w) = (ctx.value(self.a).data(), ctx.value(self.b).data(), self.width);
        if self.a == self.b {
            // Both windows of one buffer: each adds its own part (they may overlap).
            if let Some(gx) = ctx.grad(self.a) {
                window_grad(gx, self.wa, g, bv, self.wb, w, false);
                window_grad(gx, self.wb, g, av, self.wa, w, false);
            }
            return Ok(());
        }
        for (v, into, other, from) in [(self.a, self.wa, bv, self.wb), (self.b, self.wb, av, self.wa)] {
            if into.start == 0 && into.channels == w {
                // The window is the whole value: a first gradient is written, not added.
                if let Some((gv, fresh)) = ctx.grad_or_fresh(v) {
                    window_grad(gv, into, g, other, from, w, fresh);
                }
            } else if let Some(gv) = ctx.grad(v) {
                window_grad(gv, into, g, other, from, w, false);
            }
        }
        Ok(())
    }
}

impl Graph {
    /// `a[..., a_start..a_start+width] * b[..., b_start..b_start+width]`: the elementwise
    /// product of two windows of the last axis, without copying them out (`a` and `b` may be
    /// the same value). The same values, bit for bit, as two slices and a `mul`.
    ///
    /// # Shapes
    /// a: (..., Ca), b: (..., Cb) with the same leading axes → (..., width)
    pub fn mul_channels(&mut self, a: Var, a_start: usize, b: Var, b_start: usize, width: usize) -> Result<Var> {
        let op = "mul_channels";
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let (Some((&ca, lead)), Some((&cb, lead_b))) = (sa.split_last(), sb.split_last()) else {
            return Err(Error::shape(op, "an input is a scalar"));
        };
        if lead != lead_b {
            return Err(Error::shape(op, format!("shapes {sa:?} and {sb:?} differ before the last axis")));
        }
        for (start, c) in [(a_start, ca), (b_start, cb)] {
            if start.checked_add(width).is_none_or(|end| end > c) {
                return Err(Error::shape(op, format!("channels {start}..{start}+{width} outside a last axis of {c}")));
            }
        }
        let (wa, wb) = (Window { channels: ca, start: a_start }, Window { channels: cb, start: b_start });
        let rows: usize = lead.iter().product();
        let mut data = stale(rows * width); // every row written below
        let (av, bv) = (self.value(a).data(), self.value(b).data());
        over_rows(&mut data, width, |r0, out| {
            for (i, orow) in out.chunks_exact_mut(width).enumerate() {
                let (x, y) = (wa.row(av, r0 + i, width), wb.row(bv, r0 + i, width));
                orow.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&x, &y))| *o = x * y);
            }
        });
        let mut out_shape = lead.to_vec();
        out_shape.push(width);
        let out = Tensor::new(out_shape, data)?; // (..., width)
        Ok(self.record(out, &[a, b], MulChannelsBack { a, b, wa, wb, width }))
    }
}

#[cfg(test)]
mod tests {
    use crate::tensor::{Graph, Tensor, Var};

    fn input(shape: &[usize], seed: f32) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::new(shape.to_vec(), (0..n).map(|i| (i as f32 * 0.37 + seed).sin() * 1.7).collect()).unwrap()
    }

    /// The loss Σ out·r for a fixed `r`, so every output gets its own gradient.
    fn weighted_sum(g: &mut Graph, out: Var) -> Var {
        let r = input(g.shape(out), 0.5);
        let r = g.constant(r);
        let p = g.mul(out, r).unwrap();
        g.sum(p)
    }

    /// The gate as the model wrote it before: two slices and a mul.
    fn sliced(g: &mut Graph, a: Var, i: usize, b: Var, j: usize, w: usize) -> Var {
        let axis = g.shape(a).len() - 1;
        let x = g.slice(a, axis, i, i + w).unwrap();
        let y = g.slice(b, axis, j, j + w).unwrap();
        g.mul(x, y).unwrap()
    }

    fn grads(x: &Tensor, y: &Tensor, same: bool, gate: impl Fn(&mut Graph, Var, Var) -> Var) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut g = Graph::new(true);
        let a = g.leaf(x.clone());
        let b = if same { a } else { g.leaf(y.clone()) };
        let out = gate(&mut g, a, b);
        let value = g.value(out).data().to_vec();
        let loss = weighted_sum(&mut g, out);
        g.backward(loss).unwrap();
        (value, g.grad(a).unwrap().to_vec(), g.grad(b).unwrap().to_vec())
    }

    #[test]
    fn the_gates_equal_slices_and_a_mul_bit_for_bit() {
        // Hyena's two gates at sizes that take the parallel path: v·x1 within one (B, T, 3d)
        // value, then the long conv's whole output times x0.
        let (d, x) = (64, input(&[3, 200, 192], 0.1));
        let v = input(&[3, 200, 64], 0.9);
        let bits = |t: &(Vec<f32>, Vec<f32>, Vec<f32>)| [&t.0, &t.1, &t.2].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let fused = grads(&x, &x, true, |g, a, b| g.mul_channels(a, 2 * d, b, d, d).unwrap());
        let want = grads(&x, &x, true, |g, a, b| sliced(g, a, 2 * d, b, d, d));
        assert_eq!(bits(&fused), bits(&want));
        assert!(fused.1[..d].iter().all(|&v| v == 0.0) && fused.1[d..3 * d].iter().all(|&v| v != 0.0), "x0 untouched, x1 and v set");
        let fused = grads(&v, &x, false, |g, a, b| g.mul_channels(a, 0, b, 0, d).unwrap());
        let want = grads(&v, &x, false, |g, a, b| sliced(g, a, 0, b, 0, d));
        assert_eq!(bits(&fused), bits(&want));
        assert_eq!(fused.0.len(), 3 * 200 * d);
    }

    #[test]
    fn overlapping_windows_of_one_value_match_finite_differences() {
        // out = x[..., 1..4] * x[..., 0..3]: windows overlap, so x[.., 1..3] gets both terms.
        let x = input(&[2, 3, 5], 0.3);
        let (_, grad, _) = grads(&x, &x, true, |g, a, b| g.mul_channels(a, 1, b, 0, 3).unwrap());
        let loss = |x: &Tensor| {
            let mut g = Graph::new(false);
            let a = g.leaf(x.clone());
            let out = g.mul_channels(a, 1, a, 0, 3).unwrap();
            let l = weighted_sum(&mut g, out);
            g.value(l).data()[0] as f64
        };
        for (i, &want) in grad.iter().enumerate() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up.data_mut()[i] += 1e-2;
            down.data_mut()[i] -= 1e-2;
            let fd = (loss(&up) - loss(&down)) / 2e-2;
            assert!((fd - want as f64).abs() < 1e-3, "x[{i}]: {fd} vs {want}");
        }
    }

    #[test]
    fn bad_windows_and_shapes_are_refused_with_their_sizes() {
        let mut g = Graph::new(false);
        let a = g.leaf(input(&[2, 4, 6], 0.0));
        let b = g.leaf(input(&[2, 5, 6], 0.0));
        let err = g.mul_channels(a, 4, a, 0, 3).unwrap_err().to_string();
        assert!(err.contains("mul_channels") && err.contains("4..4+3") && err.contains("of 6"), "{err}");
        let err = g.mul_channels(a, 0, a, usize::MAX, 3).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        let err = g.mul_channels(a, 0, b, 0, 3).unwrap_err().to_string();
        assert!(err.contains("[2, 4, 6]") && err.contains("[2, 5, 6]"), "{err}");
        let s = g.leaf(Tensor::new(vec![], vec![1.0]).unwrap());
        assert!(g.mul_channels(s, 0, s, 0, 0).unwrap_err().to_string().contains("scalar"));
        let empty = g.mul_channels(a, 6, a, 0, 0).unwrap();
        assert_eq!(g.shape(empty), [2, 4, 0]);
    }
}
