//! Launchers of the elementwise and shape kernels (`unary.wgsl`, `binary.wgsl`).

use super::{f, u};
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, BINARY, UNARY};
use crate::tensor::gpu::tensor::GpuTensor;

/// Unary ops of `unary.wgsl`'s `map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unary {
    Copy = 0,
    Tanh = 1,
    Relu = 2,
    Gelu = 3,
    Sigmoid = 4,
    Sin = 5,
}

/// Binary ops of `binary.wgsl`'s `zip` (the `*Back` ones take the output's gradient and the
/// saved value their rule needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binary {
    Add = 0,
    Mul = 1,
    TanhBack = 2,
    ReluBack = 3,
    GeluBack = 4,
    SigmoidBack = 5,
    SinBack = 6,
}

/// Every value of `t` set to `value`.
pub(crate) fn fill(t: &GpuTensor, value: f32) -> Result<()> {
    let d = t.device();
    d.dispatch(k(&UNARY, "fill"), &[u(t.numel()), f(value)], &[None, Some(t.raw())], d.grid(t.numel(), 256))
}

/// `y = (accumulate ? y : 0) + scale · op(x)` elementwise.
pub(crate) fn map(x: &GpuTensor, y: &GpuTensor, op: Unary, accumulate: bool, scale: f32) -> Result<()> {
    let d = x.device();
    let n = x.numel().min(y.numel());
    d.dispatch(k(&UNARY, "map"), &[u(n), op as u32, accumulate as u32, f(scale)], &[Some(x.raw()), Some(y.raw())], d.grid(n, 256))
}

/// `y = (accumulate ? y : 0) + op(a, b)` elementwise.
pub(crate) fn zip(a: &GpuTensor, b: &GpuTensor, y: &GpuTensor, op: Binary, accumulate: bool) -> Result<()> {
    let d = a.device();
    let n = a.numel().min(b.numel()).min(y.numel());
    d.dispatch(k(&BINARY, "zip"), &[u(n), op as u32, accumulate as u32], &[Some(a.raw()), Some(b.raw()), Some(y.raw())], d.grid(n, 256))
}

/// `y[r, c] = (accumulate ? y : 0) + a[r, c]·v[c]`.
pub(crate) fn channel_mul(a: &GpuTensor, v: &GpuTensor, y: &GpuTensor, accumulate: bool) -> Result<()> {
    let d = a.device();
    let c = v.numel();
    let rows = a.numel() / c.max(1);
    d.dispatch(k(&BINARY, "channel_mul"), &[u(rows), u(c), accumulate as u32], &[Some(a.raw()), Some(v.raw()), Some(y.raw())], d.grid(rows * c, 256))
}

/// Inverted dropout of `x` into `y` with the mask of `seed` (dropped with probability `p`,
/// kept values scaled by 1/(1-p)); the same call masks the gradient in backward.
pub(crate) fn dropout(x: &GpuTensor, y: &GpuTensor, seed: u64, p: f32, accumulate: bool) -> Result<()> {
    let d = x.device();
    let n = x.numel();
    let threshold = (f64::from(p) * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let keep = 1.0 / (1.0 - p);
    let words = [u(n), seed as u32, (seed >> 32) as u32, threshold, f(keep), accumulate as u32];
    d.dispatch(k(&UNARY, "dropout"), &words, &[Some(x.raw()), Some(y.raw())], d.grid(n, 256))
}

/// GLU over the last axis of `x` (rows, 2c) into `y` (rows, c).
pub(crate) fn glu(x: &GpuTensor, y: &GpuTensor, rows: usize, c: usize) -> Result<()> {
    let d = x.device();
    d.dispatch(k(&UNARY, "glu"), &[u(rows), u(c)], &[Some(x.raw()), Some(y.raw())], d.grid(rows * c, 256))
}

/// GLU backward: `gx (+)= ∂/∂x` from `g` (rows, c) and `x` (rows, 2c).
pub(crate) fn glu_back(g: &GpuTensor, x: &GpuTensor, gx: &GpuTensor, rows: usize, c: usize, accumulate: bool) -> Result<()> {
    let d = g.device();
    d.dispatch(k(&BINARY, "glu_back"), &[u(rows), u(c), accumulate as u32], &[Some(g.raw()), Some(x.raw()), Some(gx.raw())], d.grid(rows * c, 256))
}

/// `y[r, j] = x[r, start + j]` for rows of `w_in` values, `w_out` of them taken.
pub(crate) fn slice(x: &GpuTensor, y: &GpuTensor, rows: usize, w_in: usize, start: usize, w_out: usize) -> Result<()> {
    let d = x.device();
    d.dispatch(k(&UNARY, "slice"), &[u(rows), u(w_in), u(start), u(w_out)], &[Some(x.raw()), Some(y.raw())], d.grid(rows * w_out, 256))
}

/// `gx[r, start + j] += g[r, j]`.
pub(crate) fn slice_back(g: &GpuTensor, gx: &GpuTensor, rows: usize, w_in: usize, start: usize, w_out: usize) -> Result<()> {
    let d = g.device();
    d.dispatch(k(&UNARY, "slice_back"), &[u(rows), u(w_in), u(start), u(w_out)], &[Some(g.raw()), Some(gx.raw())], d.grid(rows * w_out, 256))
}
