//! 1-D convolution over channels-last activations: forward and backward.
//!
//! Output row `t` reads input rows `t*stride + k*dilation - pad_left` for the K taps `k`.
//! Three GEMM layouts, chosen by shape and size:
//! - stride 1, dilation 1, groups 1: one GEMM with inner dimension K·C_in over overlapping
//!   windows read in place (`window_gemm`), one GEMM over the whole batch; its weight
//!   gradient reads explicit batch-wide columns (`im2col`);
//! - other groups-1 convs whose columns fit in `im2col::MAX_COLS`: explicit columns;
//! - depthwise convs (groups = C_in = C_out, stride 1): a direct kernel over contiguous
//!   channels (`depthwise`), no GEMM;
//! - everything else: one GEMM per tap and group over strided views (`tap_gemm`).

use super::depthwise::{self, Depthwise};
use super::im2col::{self, Columns};
use super::matmul::{Gemm, Init, Mat, Par};
use super::tap_gemm::{add_column_sums, check_groups, check_positive, fill_rows, par_batches, ConvDims, Tap, TapGemm};
use super::window_gemm::{self, Windows};
use crate::error::{Error, Result};

const OP: &str = "conv1d";

/// Zero padding of the time axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Padding {
    /// The same amount on both sides (PyTorch's `padding=p`).
    Symmetric(usize),
    /// Different amounts on each side (PyTorch's `F.pad(x, (left, right))` before the conv).
    Asymmetric { left: usize, right: usize },
}

impl Padding {
    /// Left-only padding of `dilation * (kernel_size - 1)`: output `t` sees inputs `<= t`
    /// and the output is as long as the input (stride 1).
    pub fn causal(kernel_size: usize, dilation: usize) -> Self {
        Padding::Asymmetric { left: dilation * kernel_size.saturating_sub(1), right: 0 }
    }

    /// Zeros before the first time step.
    pub fn left(&self) -> usize {
        match *self {
            Padding::Symmetric(p) => p,
            Padding::Asymmetric { left, .. } => left,
        }
    }

    /// Zeros after the last time step.
    pub fn right(&self) -> usize {
        match *self {
            Padding::Symmetric(p) => p,
            Padding::Asymmetric { right, .. } => right,
        }
    }
}

/// Hyper-parameters of a 1-D convolution (PyTorch `Conv1d` semantics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv1dSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub padding: Padding,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv1dSpec {
    /// Checks that every size is positive and that `groups` divides both channel counts.
    pub fn validate(&self) -> Result<()> {
        check_positive(
            OP,
            &[
                ("in_channels", self.in_channels),
                ("out_channels", self.out_channels),
                ("kernel_size", self.kernel_size),
                ("stride", self.stride),
                ("dilation", self.dilation),
                ("groups", self.groups),
            ],
        )?;
        check_groups(OP, self.groups, self.in_channels, self.out_channels)
    }

    /// The weight's shape (C_out, C_in/groups, K).
    pub fn weight_shape(&self) -> [usize; 3] {
        [self.out_channels, self.in_channels / self.groups.max(1), self.kernel_size]
    }

    /// The output length for an input of `len` steps.
    pub fn output_len(&self, len: usize) -> Result<usize> {
        conv_output_len(len, self.kernel_size, self.stride, self.padding.left(), self.padding.right(), self.dilation)
    }

    /// Validates the spec and builds the tap geometry for (batch, len).
    pub(super) fn geometry(&self, batch: usize, len: usize) -> Result<TapGemm> {
        self.validate()?;
        let t_out = self.output_len(len)?;
        let pad = self.padding.left() as isize;
        let taps = (0..self.kernel_size).map(|k| Tap { index: k, shift: (k * self.dilation) as isize - pad }).collect();
        Ok(TapGemm {
            batch,
            d_len: t_out,
            d_ch: self.out_channels,
            s_len: len,
            s_ch: self.in_channels,
            stride: self.stride,
            groups: self.groups,
            kernel: self.kernel_size,
            taps,
        })
    }

    /// Stride 1, groups 1 and dilation 1 (or a single tap): one window GEMM per item.
    fn windowed(&self) -> bool {
        self.stride == 1 && self.groups == 1 && (self.dilation == 1 || self.kernel_size == 1)
    }

    /// The direct kernel's geometry when this conv is depthwise (groups = C_in = C_out > 1,
    /// stride 1).
    fn depthwise(&self, len: usize, t_out: usize) -> Option<Depthwise> {
        let depthwise = self.stride == 1 && self.groups > 1 && self.groups == self.in_channels && self.in_channels == self.out_channels;
        depthwise.then_some(Depthwise { len, t_out, ch: self.in_channels, k: self.kernel_size, dilation: self.dilation, pad_left: self.padding.left() })
    }

    /// The batch-wide columns geometry when this conv should use it (groups 1, columns
    /// no bigger than [`im2col::MAX_COLS`]).
    pub(super) fn columns(&self, batch: usize, len: usize, t_out: usize) -> Option<Columns> {
        let cols = Columns {
            batch,
            len,
            c_in: self.in_channels,
            t_out,
            kernel_size: self.kernel_size,
            stride: self.stride,
            dilation: self.dilation,
            pad_left: self.padding.left(),
        };
        (self.groups == 1 && cols.numel() <= im2col::MAX_COLS).then_some(cols)
    }

    /// Buffer shapes for (batch, len) with `t_out` output positions.
    pub(super) fn dims(&self, batch: usize, len: usize, t_out: usize) -> ConvDims {
        ConvDims::sequence(batch, len, t_out, self.in_channels, self.out_channels, self.weight_dims())
    }

    fn weight_dims(&self) -> [(&'static str, usize); 3] {
        let [o, i, k] = self.weight_shape();
        [("out_channels", o), ("in_channels/groups", i), ("kernel_size", k)]
    }
}

/// Output length of a convolution: `(L + left + right - d*(k-1) - 1) / s + 1`.
///
/// Errors when a size is zero or the dilated kernel is longer than the padded input.
pub fn conv_output_len(len: usize, kernel_size: usize, stride: usize, pad_left: usize, pad_right: usize, dilation: usize) -> Result<usize> {
    check_positive(OP, &[("input length", len), ("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)])?;
    // Exact in u128 (sizes are at most 2^64 - 1): saturating here once made an overflowing
    // kernel span "fit" an input of the same saturated length.
    let padded = len as u128 + pad_left as u128 + pad_right as u128;
    let effective = dilation as u128 * (kernel_size as u128 - 1) + 1;
    if effective > padded {
        return Err(Error::shape(OP, format!("kernel (effective size d*(k-1)+1 = {effective}) is longer than the padded input ({padded})")));
    }
    usize::try_from((padded - effective) / stride as u128 + 1)
        .map_err(|_| Error::shape(OP, format!("output length does not fit in usize (padded input {padded})")))
}

/// 1-D convolution forward; overwrites `out`.
///
/// # Shapes
/// - x: `[batch, len, in_channels]`
/// - weight: `[out_channels, in_channels / groups, kernel_size]`
/// - bias: `[out_channels]`
/// - out: `[batch, output_len(len), out_channels]`
pub fn conv1d_forward(spec: &Conv1dSpec, x: &[f32], batch: usize, len: usize, weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
    conv1d_forward_with(Gemm::F32, spec, x, batch, len, weight, bias, out)
}

/// [`conv1d_forward`] with its products computed as `gemm` says (the depthwise kernel,
/// which runs no GEMM, stays fp32).
#[allow(clippy::too_many_arguments)]
pub fn conv1d_forward_with(
    gemm: Gemm,
    spec: &Conv1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let geo = spec.geometry(batch, len)?;
    let (c_in, c_out, t_out) = (spec.in_channels, spec.out_channels, geo.d_len);
    spec.dims(batch, len, t_out).check_forward(OP, x, weight, bias, out)?;
    if let Some(dw) = spec.depthwise(len, t_out) {
        depthwise::forward(&dw, x, weight, bias, out);
        return Ok(());
    }
    if spec.windowed() {
        let k = spec.kernel_size;
        let win = Windows { src_len: len, ch: c_in, k, offset: -(spec.padding.left() as isize), rows: t_out };
        let wp = window_gemm::pack_forward(weight, c_out, c_in, k);
        let init = bias.map_or(Init::Zero, Init::Rows);
        window_gemm::apply_batch(gemm, &win, batch, x, &wp, c_out, out, init);
        return Ok(());
    }
    if let Some(cols) = spec.columns(batch, len, t_out) {
        let wp = window_gemm::pack_forward(weight, c_out, c_in, spec.kernel_size); // (K·C_in, C_out)
        let x_cols = cols.gather(x); // (B·T_out, K·C_in)
        let kc = cols.width();
        let init = bias.map_or(Init::Zero, Init::Rows);
        gemm.matmul_init(out, c_out, Mat::row_major(&x_cols, batch * t_out, kc), Mat::row_major(&wp, kc, c_out), init, Par::Pool);
        return Ok(());
    }
    par_batches(out, t_out * c_out, |b, out_b, par| {
        fill_rows(out_b, bias, c_out); // (T_out, C_out)
        geo.d_from_s(gemm, &x[b * len * c_in..], weight, out_b, par);
    });
    Ok(())
}

/// 1-D convolution backward: ADDS d loss / d (x, weight, bias) into each given buffer.
///
/// # Shapes
/// - x, grad_x: `[batch, len, in_channels]`
/// - weight, grad_weight: `[out_channels, in_channels / groups, kernel_size]`
/// - grad_out: `[batch, output_len(len), out_channels]`
/// - grad_bias: `[out_channels]`
#[allow(clippy::too_many_arguments)]
pub fn conv1d_backward(
    spec: &Conv1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    conv1d_backward_hinted(spec, x, batch, len, weight, grad_out, grad_x, false, grad_weight, grad_bias)
}

/// [`conv1d_backward`], told whether `grad_x` holds only zeros (a gradient buffer just
/// created): its GEMM then writes `grad_x` instead of reading and adding to it, which W1's
/// hidden layers measured ~15% faster for that product.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_backward_hinted(
    spec: &Conv1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_x_is_zero: bool,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    conv1d_backward_with(Gemm::F32, spec, x, batch, len, weight, grad_out, grad_x, grad_x_is_zero, grad_weight, grad_bias)
}

/// [`conv1d_backward_hinted`] with its products computed as `gemm` says.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_backward_with(
    gemm: Gemm,
    spec: &Conv1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_x_is_zero: bool,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    let geo = spec.geometry(batch, len)?;
    let (c_in, c_out, t_out) = (spec.in_channels, spec.out_channels, geo.d_len);
    spec.dims(batch, len, t_out).check_backward(OP, x, weight, grad_out, grad_x.as_deref(), grad_weight.as_deref(), grad_bias.as_deref())?;
    if let Some(dw) = spec.depthwise(len, t_out) {
        depthwise::backward(&dw, x, weight, grad_out, grad_x, grad_weight, grad_bias);
        return Ok(());
    }
    let (k, pl) = (spec.kernel_size, spec.padding.left() as isize);
    let columns = spec.columns(batch, len, t_out);
    if let Some(gx) = grad_x {
        if spec.windowed() {
            let win = Windows { src_len: t_out, ch: c_out, k, offset: pl - (k as isize - 1), rows: len };
            let wp = window_gemm::pack_backward(weight, c_out, c_in, k);
            let init = if grad_x_is_zero { Init::Zero } else { Init::Accumulate };
            window_gemm::apply_batch(gemm, &win, batch, grad_out, &wp, c_in, gx, init);
        } else if let Some(cols) = columns {
            cols.grad_input(gemm, weight, c_out, grad_out, 1.0, gx);
        } else {
            par_batches(gx, len * c_in, |b, gx_b, par| geo.s_from_d(gemm, &grad_out[b * t_out * c_out..], weight, gx_b, par));
        }
    }
    if let Some(gw) = grad_weight {
        // Even windowed convs, whose windows could be read in place, materialise them here:
        // a per-item weight gradient would re-pack both operands once per item.
        if let Some(cols) = columns {
            cols.grad_weight(gemm, &cols.gather(x), c_out, grad_out, 1.0, gw);
        } else if spec.windowed() {
            let win = Windows { src_len: len, ch: c_in, k, offset: -pl, rows: t_out };
            window_gemm::weight_grad(gemm, &win, batch, grad_out, c_out, x, gw);
        } else {
            geo.weight_grad(gemm, grad_out, x, gw);
        }
    }
    if let Some(gb) = grad_bias {
        add_column_sums(grad_out, c_out, gb);
    }
    Ok(())
}

/// The depthwise kernel against the general grouped path (here, so that `depthwise` needs
/// nothing from this file).
#[cfg(test)]
mod depthwise_tests {
    use super::depthwise::{backward, forward, Depthwise};
    use super::{Conv1dSpec, Padding};
    use crate::tensor::kernels::tap_gemm::par_batches;
    use crate::tensor::Tensor;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn randn(n: usize, seed: u64) -> Vec<f32> {
        Tensor::randn(vec![n], 1.0, &mut ChaCha8Rng::seed_from_u64(seed)).into_data()
    }

    /// |a - b| ≤ 1e-6 · terms · (1 + |b|): sums of `terms` products of unit values, added in
    /// different orders.
    fn close(what: &str, a: &[f32], b: &[f32], terms: usize) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-6 * (terms.max(10) as f32) * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Forward and all gradients equal the grouped conv path (one GEMM per tap and group)
    /// for causal, symmetric and dilated paddings, batch and block boundaries included.
    #[test]
    fn equals_the_grouped_tap_gemm_path() {
        let cases = [
            (2, 70, 5, 3, 1, Padding::causal(3, 1)),
            (3, 130, 17, 3, 2, Padding::causal(3, 2)),
            (1, 9, 4, 4, 1, Padding::Symmetric(1)),
            (2, 12, 3, 2, 3, Padding::Asymmetric { left: 1, right: 4 }),
            (2, 5, 8, 1, 1, Padding::Symmetric(0)),
        ];
        for (n, &(batch, len, ch, k, dilation, padding)) in cases.iter().enumerate() {
            let spec = Conv1dSpec { in_channels: ch, out_channels: ch, kernel_size: k, stride: 1, padding, dilation, groups: ch };
            let geo = spec.geometry(batch, len).unwrap();
            let t_out = geo.d_len;
            let dw = Depthwise { len, t_out, ch, k, dilation, pad_left: padding.left() };
            let seed = 10 * n as u64;
            let (x, w, bias, g) = (randn(batch * len * ch, seed), randn(ch * k, seed + 1), randn(ch, seed + 2), randn(batch * t_out * ch, seed + 3));

            let mut want = vec![0.0f32; batch * t_out * ch];
            par_batches(&mut want, t_out * ch, |b, out_b, par| {
                out_b.chunks_exact_mut(ch).for_each(|r| r.copy_from_slice(&bias));
                geo.d_from_s(crate::tensor::Gemm::F32, &x[b * len * ch..], &w, out_b, par);
            });
            let mut got = vec![f32::NAN; want.len()];
            forward(&dw, &x, &w, Some(&bias), &mut got);
            close("forward", &got, &want, k);

            let mut want_gx = randn(x.len(), seed + 4);
            let mut got_gx = want_gx.clone();
            par_batches(&mut want_gx, len * ch, |b, gx_b, par| geo.s_from_d(crate::tensor::Gemm::F32, &g[b * t_out * ch..], &w, gx_b, par));
            let mut want_gw = randn(w.len(), seed + 5);
            let mut got_gw = want_gw.clone();
            geo.weight_grad(crate::tensor::Gemm::F32, &g, &x, &mut want_gw);
            let mut want_gb = randn(ch, seed + 6);
            let mut got_gb = want_gb.clone();
            for row in g.chunks_exact(ch) {
                want_gb.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            backward(&dw, &x, &w, &g, Some(&mut got_gx), Some(&mut got_gw), Some(&mut got_gb));
            close("grad_x", &got_gx, &want_gx, k);
            close("grad_w", &got_gw, &want_gw, batch * t_out);
            close("grad_b", &got_gb, &want_gb, batch * t_out);
        }
    }
}
