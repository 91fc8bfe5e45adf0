//! The long causal convolution of Hyena on the tape, and the two small ops its implicit
//! filter network needs: `sin` and a per-channel scale with a trainable scale vector.

use rayon::prelude::*;

use super::{map_slices, PAR_THRESHOLD};
use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::kernels::long_conv::{long_conv_backward, long_conv_forward, LongConvShape};
use crate::tensor::Tensor;

struct LongConvBack {
    u: Var,
    k: Var,
    d: Var,
    shape: LongConvShape,
}

impl BackwardOp for LongConvBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (u, k, d) = (ctx.value(self.u).data(), ctx.value(self.k).data(), ctx.value(self.d).data());
        // u, k and d have different ranks, so they are never the same variable.
        let [gu, gk, gd] =
            ctx.grads_disjoint([Some(self.u), Some(self.k), Some(self.d)]).ok_or_else(|| Error::shape("long_conv", "u, k and d must be distinct variables"))?;
        long_conv_backward(&self.shape, u, k, d, g, gu, gk, gd)
    }
}

struct SinBack {
    x: Var,
}

impl BackwardOp for SinBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let x = ctx.value(self.x).data();
        if let Some(gx) = ctx.grad(self.x) {
            super::acc_zip(gx, g, x, |g, x| g * x.cos());
        }
        Ok(())
    }
}

struct ScaleChannelsBack {
    x: Var,
    v: Var,
}

impl BackwardOp for ScaleChannelsBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (x, v) = (ctx.value(self.x).data(), ctx.value(self.v).data());
        let c = v.len();
        if let Some(gv) = ctx.grad(self.v) {
            // gv[c] += Σ_rows g[row, c]·x[row, c], in f64 per block of rows.
            let sums = channel_dots(g, x, c);
            gv.iter_mut().zip(&sums).for_each(|(a, s)| *a += *s as f32);
        }
        if let Some(gx) = ctx.grad(self.x) {
            scale_rows_acc(gx, g, v);
        }
        Ok(())
    }
}

/// `Σ_rows a[row, c]·b[row, c]` for every channel of (rows, C) buffers, summed in f64.
fn channel_dots(a: &[f32], b: &[f32], c: usize) -> Vec<f64> {
    const ROWS: usize = 256;
    if c == 0 {
        return Vec::new();
    }
    let block = |(ra, rb): (&[f32], &[f32])| {
        let mut acc = vec![0.0f64; c];
        for (xa, xb) in ra.chunks_exact(c).zip(rb.chunks_exact(c)) {
            acc.iter_mut().zip(xa.iter().zip(xb)).for_each(|(s, (&p, &q))| *s += p as f64 * q as f64);
        }
        acc
    };
    let add = |mut x: Vec<f64>, y: Vec<f64>| {
        x.iter_mut().zip(&y).for_each(|(s, v)| *s += v);
        x
    };
    if a.len() >= PAR_THRESHOLD {
        a.par_chunks(ROWS * c).zip(b.par_chunks(ROWS * c)).map(block).reduce(|| vec![0.0; c], add)
    } else {
        a.chunks(ROWS * c).zip(b.chunks(ROWS * c)).map(block).fold(vec![0.0; c], add)
    }
}

/// `out[row, c] += g[row, c]·v[c]` over (rows, C) buffers.
fn scale_rows_acc(out: &mut [f32], g: &[f32], v: &[f32]) {
    let c = v.len();
    if c == 0 {
        return;
    }
    let rows = |o: &mut [f32], g: &[f32]| {
        for (orow, grow) in o.chunks_exact_mut(c).zip(g.chunks_exact(c)) {
            orow.iter_mut().zip(grow.iter().zip(v)).for_each(|(o, (&g, &s))| *o += g * s);
        }
    };
    let chunk = c * (4096 / c).max(1);
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(chunk).zip(g.par_chunks(chunk)).for_each(|(o, g)| rows(o, g));
    } else {
        rows(out, g);
    }
}

impl Graph {
    /// Long causal depthwise convolution (reference/models.py `long_causal_conv`, channels
    /// last): `y[b, t, c] = Σ_{s≤t} k[c, t−s]·u[b, s, c] + d[c]·u[b, t, c]`, by FFT from
    /// `kernels::long_conv::FFT_MIN_LEN` steps on. Taps of `k` past the sequence length are
    /// not read (their gradient is zero).
    ///
    /// # Shapes
    /// u: (B, T, C), k: (C, L) with L ≥ T, d: (C) → (B, T, C)
    pub fn long_conv(&mut self, u: Var, k: Var, d: Var) -> Result<Var> {
        let op = "long_conv";
        let (us, ks, ds) = (self.shape(u).to_vec(), self.shape(k).to_vec(), self.shape(d).to_vec());
        let ([b, t, c], [kc, l], [dc]) = (us.as_slice(), ks.as_slice(), ds.as_slice()) else {
            return Err(Error::shape(op, format!("expected u (B, T, C), k (C, L), d (C), got {us:?}, {ks:?}, {ds:?}")));
        };
        if kc != c || dc != c {
            return Err(Error::shape(op, format!("u has {c} channels but k has {kc} and d {dc}")));
        }
        let shape = LongConvShape::new(*b, *t, *c, *l);
        let mut out = Tensor::stale(us.clone()); // (B, T, C), overwritten by the kernel
        long_conv_forward(&shape, self.value(u).data(), self.value(k).data(), self.value(d).data(), out.data_mut())?;
        Ok(self.record(out, &[u, k, d], LongConvBack { u, k, d, shape }))
    }

    /// `sin(x)` elementwise (the activation of Hyena's filter network).
    pub fn sin(&mut self, x: Var) -> Var {
        let xv = self.value(x);
        let mut out = Tensor::stale(xv.shape().to_vec()); // every value written below
        map_slices(out.data_mut(), xv.data(), |o, a| o.iter_mut().zip(a).for_each(|(o, &a)| *o = a.sin()));
        self.record(out, &[x], SinBack { x })
    }

    /// `x[..., c]·v[c]`: every channel scaled by its own (trainable) factor.
    ///
    /// # Shapes
    /// x: (..., C), v: (C) → (..., C)
    pub fn scale_channels(&mut self, x: Var, v: Var) -> Result<Var> {
        let c = *self.shape(x).last().ok_or_else(|| Error::shape("scale_channels", "input is a scalar"))?;
        if self.shape(v) != [c] {
            return Err(Error::shape("scale_channels", format!("scale has shape {:?}, expected [{c}]", self.shape(v))));
        }
        let mut out = Tensor::zeros(self.shape(x).to_vec());
        scale_rows_acc(out.data_mut(), self.value(x).data(), self.value(v).data());
        Ok(self.record(out, &[x, v], ScaleChannelsBack { x, v }))
    }
}
