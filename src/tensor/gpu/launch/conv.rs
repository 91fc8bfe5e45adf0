//! Launchers of the convolution kernels (`conv_cols.wgsl`, `conv_direct.wgsl`).

use super::reduce::{finish, ROWS_PER_BLOCK};
use super::u;
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, CONV_COLS, CONV_DIRECT};
use crate::tensor::gpu::tensor::GpuTensor;

/// The sizes of a 1-D convolution over (batch, t_in, c_in) → (batch, t_out, c_out): output
/// `to` reads inputs `to·stride − pad + kk·dilation` (a transposed conv: the other way).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo {
    pub batch: usize,
    pub t_in: usize,
    pub c_in: usize,
    pub t_out: usize,
    pub c_out: usize,
    pub stride: usize,
    pub pad: usize,
    pub dilation: usize,
    pub k: usize,
    pub groups: usize,
}

impl Geo {
    /// Rows of the columns of one group: batch · t_out.
    pub fn rows(&self) -> usize {
        self.batch * self.t_out
    }

    /// Width of the columns of one group: (c_in / groups) · k.
    pub fn col_width(&self) -> usize {
        self.c_in / self.groups * self.k
    }

    fn cols_words(&self, accumulate: bool) -> [u32; 11] {
        let g = self;
        [u(g.batch), u(g.t_in), u(g.c_in), u(g.t_out), u(g.stride), u(g.pad), u(g.dilation), u(g.k), u(g.groups), u(g.c_in / g.groups), accumulate as u32]
    }

    fn direct_words(&self, has_bias: bool, last: usize) -> [u32; 12] {
        let g = self;
        [u(g.batch), u(g.t_in), u(g.c_in), u(g.t_out), u(g.c_out), u(g.stride), u(g.pad), u(g.dilation), u(g.k), u(g.groups), has_bias as u32, u(last)]
    }
}

/// Columns (groups, batch·t_out, c_in/groups·k) of `x`.
pub(crate) fn im2col(x: &GpuTensor, cols: &GpuTensor, g: &Geo) -> Result<()> {
    let d = x.device();
    let n = g.groups * g.rows() * g.col_width();
    d.dispatch(k(&CONV_COLS, "im2col"), &g.cols_words(false), &[Some(x.raw()), Some(cols.raw())], d.grid(n, 256))
}

/// `gx (+)=` the adjoint of [`im2col`] applied to the columns' gradient.
pub(crate) fn col2im(gcols: &GpuTensor, gx: &GpuTensor, g: &Geo, accumulate: bool) -> Result<()> {
    let d = gx.device();
    d.dispatch(k(&CONV_COLS, "col2im"), &g.cols_words(accumulate), &[Some(gcols.raw()), Some(gx.raw())], d.grid(g.batch * g.t_in * g.c_in, 256))
}

/// The depthwise words: as `direct_words` with word 9 = has_bias and word 10 = `last`.
fn depthwise_words(g: &Geo, has_bias: bool, last: usize) -> [u32; 11] {
    [u(g.batch), u(g.t_in), u(g.c_in), u(g.t_out), u(g.c_out), u(g.stride), u(g.pad), u(g.dilation), u(g.k), has_bias as u32, u(last)]
}

/// A depthwise conv (groups = c_in): `y = conv(x, w) + bias`.
pub(crate) fn depthwise(x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, y: &GpuTensor, g: &Geo) -> Result<()> {
    let d = x.device();
    let words = depthwise_words(g, bias.is_some(), 0);
    d.dispatch(
        k(&CONV_DIRECT, "depthwise"),
        &words,
        &[Some(x.raw()), Some(w.raw()), bias.map(|b| b.raw()), Some(y.raw())],
        d.grid(g.batch * g.t_out * g.c_out, 256),
    )
}

/// Depthwise input gradient.
pub(crate) fn depthwise_back_x(gy: &GpuTensor, w: &GpuTensor, gx: &GpuTensor, g: &Geo, accumulate: bool) -> Result<()> {
    let d = gy.device();
    let words = depthwise_words(g, false, accumulate as usize);
    d.dispatch(k(&CONV_DIRECT, "depthwise_back_x"), &words, &[Some(gy.raw()), Some(w.raw()), None, Some(gx.raw())], d.grid(g.batch * g.t_in * g.c_in, 256))
}

/// Depthwise weight gradient, by blocks of rows then the blocks in order.
pub(crate) fn depthwise_back_w(gy: &GpuTensor, x: &GpuTensor, gw: &GpuTensor, g: &Geo, accumulate: bool) -> Result<()> {
    let d = gy.device();
    let blocks = g.rows().div_ceil(ROWS_PER_BLOCK).max(1);
    let width = g.c_out * g.k;
    let partial = GpuTensor::zeros(d, &[blocks, width], "weight gradient partial sums")?;
    let words = depthwise_words(g, false, ROWS_PER_BLOCK);
    d.dispatch(k(&CONV_DIRECT, "depthwise_back_w"), &words, &[Some(gy.raw()), Some(x.raw()), None, Some(partial.raw())], d.grid(blocks * width, 256))?;
    finish(&partial, blocks, width, gw, accumulate, 1.0)
}

/// A transposed conv: `y = conv_transpose(x, w) + bias`.
pub(crate) fn conv_t(x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, y: &GpuTensor, g: &Geo) -> Result<()> {
    let d = x.device();
    let words = g.direct_words(bias.is_some(), 0);
    d.dispatch(
        k(&CONV_DIRECT, "conv_t"),
        &words,
        &[Some(x.raw()), Some(w.raw()), bias.map(|b| b.raw()), Some(y.raw())],
        d.grid(g.batch * g.t_out * g.c_out, 256),
    )
}

/// Transposed conv input gradient.
pub(crate) fn conv_t_back_x(gy: &GpuTensor, w: &GpuTensor, gx: &GpuTensor, g: &Geo, accumulate: bool) -> Result<()> {
    let d = gy.device();
    let words = g.direct_words(false, accumulate as usize);
    d.dispatch(k(&CONV_DIRECT, "conv_t_back_x"), &words, &[Some(gy.raw()), Some(w.raw()), None, Some(gx.raw())], d.grid(g.batch * g.t_in * g.c_in, 256))
}

/// Transposed conv weight gradient.
pub(crate) fn conv_t_back_w(gy: &GpuTensor, x: &GpuTensor, gw: &GpuTensor, g: &Geo, accumulate: bool) -> Result<()> {
    let d = gy.device();
    let words = g.direct_words(false, accumulate as usize);
    let n = g.c_in * (g.c_out / g.groups) * g.k;
    d.dispatch(k(&CONV_DIRECT, "conv_t_back_w"), &words, &[Some(gy.raw()), Some(x.raw()), None, Some(gw.raw())], d.grid(n, 256))
}

/// The sizes of a masked 2-D conv over (batch, height, width, c_in) → (…, c_out).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid2d {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    /// Mask B: the centre tap is kept.
    pub centre: bool,
}

impl Grid2d {
    fn words(&self, has_bias: bool, accumulate: bool) -> [u32; 10] {
        let g = self;
        [u(g.batch), u(g.height), u(g.width), u(g.c_in), u(g.c_out), u(g.kh), u(g.kw), g.centre as u32, has_bias as u32, accumulate as u32]
    }

    fn pixels(&self) -> usize {
        self.batch * self.height * self.width
    }
}

/// Masked 2-D conv forward.
pub(crate) fn masked2d(x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, y: &GpuTensor, g: &Grid2d) -> Result<()> {
    let d = x.device();
    d.dispatch(
        k(&CONV_DIRECT, "masked2d"),
        &g.words(bias.is_some(), false),
        &[Some(x.raw()), Some(w.raw()), bias.map(|b| b.raw()), Some(y.raw())],
        d.grid(g.pixels() * g.c_out, 256),
    )
}

/// Masked 2-D conv input gradient.
pub(crate) fn masked2d_back_x(gy: &GpuTensor, w: &GpuTensor, gx: &GpuTensor, g: &Grid2d, accumulate: bool) -> Result<()> {
    let d = gy.device();
    d.dispatch(
        k(&CONV_DIRECT, "masked2d_back_x"),
        &g.words(false, accumulate),
        &[Some(gy.raw()), Some(w.raw()), None, Some(gx.raw())],
        d.grid(g.pixels() * g.c_in, 256),
    )
}

/// Masked 2-D conv weight gradient.
pub(crate) fn masked2d_back_w(gy: &GpuTensor, x: &GpuTensor, gw: &GpuTensor, g: &Grid2d, accumulate: bool) -> Result<()> {
    let d = gy.device();
    let n = g.c_out * g.c_in * g.kh * g.kw;
    d.dispatch(k(&CONV_DIRECT, "masked2d_back_w"), &g.words(false, accumulate), &[Some(gy.raw()), Some(x.raw()), None, Some(gw.raw())], d.grid(n, 256))
}
