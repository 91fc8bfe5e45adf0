//! 1-D transposed convolution over channels-last activations: forward and backward.
//!
//! Input row `i` scatters into output rows `i*stride + k*dilation - padding`; the op is the
//! adjoint of conv1d, so it runs on the same tap engine with input and output swapped.

use super::matmul::Gemm;
use super::tap_gemm::{add_column_sums, check_groups, check_positive, fill_rows, par_batches, ConvDims, Tap, TapGemm};
use crate::error::{Error, Result};

const OP: &str = "conv_transpose1d";

/// Hyper-parameters of a 1-D transposed convolution (PyTorch `ConvTranspose1d` semantics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvTranspose1dSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvTranspose1dSpec {
    /// PyTorch's rules: positive sizes, `groups` divides both channel counts, and
    /// `output_padding < max(stride, dilation)`.
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
        check_groups(OP, self.groups, self.in_channels, self.out_channels)?;
        check_output_padding(self.output_padding, self.stride, self.dilation)
    }

    /// The weight's shape (C_in, C_out/groups, K).
    pub fn weight_shape(&self) -> [usize; 3] {
        [self.in_channels, self.out_channels / self.groups.max(1), self.kernel_size]
    }

    /// The output length for an input of `len` steps.
    pub fn output_len(&self, len: usize) -> Result<usize> {
        conv_transpose_output_len(len, self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation)
    }

    /// Validates the spec and builds the tap geometry (dense side = input) for (batch, len).
    fn geometry(&self, batch: usize, len: usize) -> Result<TapGemm> {
        self.validate()?;
        let l_out = self.output_len(len)?;
        let pad = self.padding as isize;
        let taps = (0..self.kernel_size).map(|k| Tap { index: k, shift: (k * self.dilation) as isize - pad }).collect();
        Ok(TapGemm {
            batch,
            d_len: len,
            d_ch: self.in_channels,
            s_len: l_out,
            s_ch: self.out_channels,
            stride: self.stride,
            groups: self.groups,
            kernel: self.kernel_size,
            taps,
        })
    }

    /// Buffer shapes for (batch, len) with `l_out` output positions.
    fn dims(&self, batch: usize, len: usize, l_out: usize) -> ConvDims {
        ConvDims::sequence(batch, len, l_out, self.in_channels, self.out_channels, self.weight_dims())
    }

    fn weight_dims(&self) -> [(&'static str, usize); 3] {
        let [i, o, k] = self.weight_shape();
        [("in_channels", i), ("out_channels/groups", o), ("kernel_size", k)]
    }
}

/// Output length of a transposed convolution:
/// PyTorch's rule: `output_padding < max(stride, dilation)` (it only picks among the output
/// lengths that one input length can give).
fn check_output_padding(output_padding: usize, stride: usize, dilation: usize) -> Result<()> {
    if output_padding >= stride.max(dilation) {
        return Err(Error::shape(OP, format!("output_padding ({output_padding}) must be smaller than stride ({stride}) or dilation ({dilation})")));
    }
    Ok(())
}

/// `(L-1)*s - 2p + d*(k-1) + output_padding + 1`; errors when it is not positive or when
/// `output_padding` breaks PyTorch's rule (smaller than stride or dilation).
pub fn conv_transpose_output_len(len: usize, kernel_size: usize, stride: usize, padding: usize, output_padding: usize, dilation: usize) -> Result<usize> {
    check_positive(OP, &[("input length", len), ("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)])?;
    check_output_padding(output_padding, stride, dilation)?;
    let wide = |v: usize| v as i128;
    let n = (wide(len) - 1) * wide(stride) - 2 * wide(padding) + wide(dilation) * (wide(kernel_size) - 1) + wide(output_padding) + 1;
    if n <= 0 {
        return Err(Error::shape(OP, format!("output length (L-1)*s - 2p + d*(k-1) + output_padding + 1 = {n} is not positive")));
    }
    usize::try_from(n).map_err(|_| Error::shape(OP, format!("output length {n} does not fit in usize")))
}

/// 1-D transposed convolution forward; overwrites `out`.
///
/// # Shapes
/// - x: `[batch, len, in_channels]`
/// - weight: `[in_channels, out_channels / groups, kernel_size]`
/// - bias: `[out_channels]`
/// - out: `[batch, output_len(len), out_channels]`
pub fn conv_transpose1d_forward(
    spec: &ConvTranspose1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    conv_transpose1d_forward_with(Gemm::F32, spec, x, batch, len, weight, bias, out)
}

/// [`conv_transpose1d_forward`] with its products computed as `gemm` says.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d_forward_with(
    gemm: Gemm,
    spec: &ConvTranspose1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let geo = spec.geometry(batch, len)?;
    let (c_in, c_out, l_out) = (spec.in_channels, spec.out_channels, geo.s_len);
    spec.dims(batch, len, l_out).check_forward(OP, x, weight, bias, out)?;
    par_batches(out, l_out * c_out, |b, out_b, par| {
        fill_rows(out_b, bias, c_out); // (L_out, C_out)
        geo.s_from_d(gemm, &x[b * len * c_in..], weight, out_b, par);
    });
    Ok(())
}

/// 1-D transposed convolution backward: ADDS d loss / d (x, weight, bias) into each given
/// buffer.
///
/// # Shapes
/// - x, grad_x: `[batch, len, in_channels]`
/// - weight, grad_weight: `[in_channels, out_channels / groups, kernel_size]`
/// - grad_out: `[batch, output_len(len), out_channels]`
/// - grad_bias: `[out_channels]`
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d_backward(
    spec: &ConvTranspose1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    conv_transpose1d_backward_with(Gemm::F32, spec, x, batch, len, weight, grad_out, grad_x, grad_weight, grad_bias)
}

/// [`conv_transpose1d_backward`] with its products computed as `gemm` says.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d_backward_with(
    gemm: Gemm,
    spec: &ConvTranspose1dSpec,
    x: &[f32],
    batch: usize,
    len: usize,
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    let geo = spec.geometry(batch, len)?;
    let (c_in, c_out, l_out) = (spec.in_channels, spec.out_channels, geo.s_len);
    spec.dims(batch, len, l_out).check_backward(OP, x, weight, grad_out, grad_x.as_deref(), grad_weight.as_deref(), grad_bias.as_deref())?;
    if let Some(gx) = grad_x {
        par_batches(gx, len * c_in, |b, gx_b, par| geo.d_from_s(gemm, &grad_out[b * l_out * c_out..], weight, gx_b, par));
    }
    if let Some(gw) = grad_weight {
        geo.weight_grad(gemm, x, grad_out, gw);
    }
    if let Some(gb) = grad_bias {
        add_column_sums(grad_out, c_out, gb);
    }
    Ok(())
}
