//! Launchers of the reductions (`colsum.wgsl`, `total.wgsl`): column sums, vector sums and
//! the step status. Every sum runs in a fixed order, so results do not vary between runs.

use super::{f, u};
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, COLSUM, TOTAL};
use crate::tensor::gpu::tensor::GpuTensor;

/// Rows per block of the first pass of a column sum.
pub(crate) const ROWS_PER_BLOCK: usize = 64;
/// Values per workgroup of the first pass of a vector sum.
pub(crate) const SUM_BLOCK: usize = 16384;

/// What a column sum adds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Term {
    /// `a[r, c]`.
    Value = 0,
    /// `a[r, c]·b[r, c]`.
    Product = 1,
    /// `(a[r, c] − b[c])²`.
    SquaredDeviation = 2,
}

/// `out[c] = (accumulate ? out[c] : 0) + scale · Σ_r term(r, c)` over `rows` rows of `cols`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn colsum(a: &GpuTensor, b: Option<&GpuTensor>, out: &GpuTensor, rows: usize, cols: usize, term: Term, accumulate: bool, scale: f32) -> Result<()> {
    colsum_at(a, b, out, 0, rows, cols, term, accumulate, scale)
}

/// [`colsum`] into `out[off..off + cols]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn colsum_at(
    a: &GpuTensor,
    b: Option<&GpuTensor>,
    out: &GpuTensor,
    off: usize,
    rows: usize,
    cols: usize,
    term: Term,
    accumulate: bool,
    scale: f32,
) -> Result<()> {
    let d = a.device();
    let blocks = rows.div_ceil(ROWS_PER_BLOCK).max(1);
    let partial = GpuTensor::empty(d, &[blocks, cols], "column partial sums")?;
    d.dispatch(
        k(&COLSUM, "partial"),
        &[u(rows), u(cols), u(ROWS_PER_BLOCK), term as u32],
        &[Some(a.raw()), Some(b.unwrap_or(a).raw()), Some(partial.raw())],
        d.grid(blocks * cols, 256),
    )?;
    if rows == 0 {
        crate::tensor::gpu::launch::elementwise::fill(&partial, 0.0)?;
    }
    finish_at(&partial, blocks, cols, out, off, accumulate, scale)
}

/// `out[c] = (accumulate ? out[c] : 0) + scale · Σ_blk partial[blk, c]`, blocks in order.
pub(crate) fn finish(partial: &GpuTensor, blocks: usize, cols: usize, out: &GpuTensor, accumulate: bool, scale: f32) -> Result<()> {
    finish_at(partial, blocks, cols, out, 0, accumulate, scale)
}

fn finish_at(partial: &GpuTensor, blocks: usize, cols: usize, out: &GpuTensor, off: usize, accumulate: bool, scale: f32) -> Result<()> {
    let d = partial.device();
    let words = [u(blocks), u(cols), accumulate as u32, f(scale), u(off)];
    d.dispatch(k(&COLSUM, "finish"), &words, &[Some(partial.raw()), Some(partial.raw()), Some(out.raw())], d.grid(cols, 256))
}

/// `out[slot] = scale · Σ x` (`squares`: Σ x²), in two passes for long vectors.
pub(crate) fn sum_into(x: &GpuTensor, n: usize, out: &GpuTensor, slot: usize, scale: f32, squares: bool) -> Result<()> {
    let d = x.device();
    if n <= SUM_BLOCK {
        return d.dispatch(k(&TOTAL, "sum"), &[u(n), u(slot), f(scale), squares as u32], &[Some(x.raw()), Some(out.raw())], [1, 1, 1]);
    }
    let blocks = n.div_ceil(SUM_BLOCK);
    let partial = GpuTensor::empty(d, &[blocks], "partial sums")?;
    partials(x, n, &partial, 0, squares)?;
    d.dispatch(k(&TOTAL, "sum"), &[u(blocks), u(slot), f(scale), 0], &[Some(partial.raw()), Some(out.raw())], [1, 1, 1])
}

/// Block sums of `x[0..n)` (of `SUM_BLOCK` values each) into `out[off..]`; returns how many.
pub(crate) fn partials(x: &GpuTensor, n: usize, out: &GpuTensor, off: usize, squares: bool) -> Result<usize> {
    let d = x.device();
    let blocks = n.div_ceil(SUM_BLOCK);
    d.dispatch(k(&TOTAL, "partials"), &[u(n), u(SUM_BLOCK), squares as u32, u(off)], &[Some(x.raw()), Some(out.raw())], d.grid(blocks, 1))?;
    Ok(blocks)
}

/// Fills `status` ([loss, norm, clip coefficient, skip, …], the loss already in slot 0) from
/// the squared-norm partials `partials[0..n)`; `max_norm` clips (None: never).
pub(crate) fn status(partials: &GpuTensor, n: usize, status: &GpuTensor, max_norm: Option<f32>) -> Result<()> {
    let d = partials.device();
    d.dispatch(k(&TOTAL, "status"), &[u(n), f(max_norm.unwrap_or(-1.0))], &[Some(partials.raw()), Some(status.raw())], [1, 1, 1])
}
