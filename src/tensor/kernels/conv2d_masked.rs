//! PixelCNN masked 2-D convolution (stride 1, "same" padding) over channels-last images.
//!
//! Each image is copied once into a width-padded buffer (rows of `W + kW - 1` pixels) and
//! flattened, so tap (a, e) becomes a plain row shift of `(a - kH/2) * (W + kW - 1) + e`;
//! vertical padding is handled by the tap engine's row clipping. Only taps the mask keeps
//! are computed, so masked weights never contribute and get no gradient.

use super::matmul::Gemm;
use super::tap_gemm::{add_column_sums, check_positive, fill_rows, par_batches, ConvDims, Tap, TapGemm};
use crate::error::{Error, Result};

const OP: &str = "masked_conv2d";

/// PixelCNN mask types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MaskType {
    /// Excludes the centre pixel (first layer: a pixel never sees itself).
    A,
    /// Includes the centre pixel (later layers).
    B,
}

/// Hyper-parameters of a masked convolution: stride 1, padding (kH/2, kW/2), no groups.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskedConv2dSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub mask: MaskType,
}

impl MaskedConv2dSpec {
    /// Checks that every size is positive and both kernel sizes are odd (so that the
    /// output has the input's height and width).
    pub fn validate(&self) -> Result<()> {
        check_positive(
            OP,
            &[("in_channels", self.in_channels), ("out_channels", self.out_channels), ("kernel_h", self.kernel_h), ("kernel_w", self.kernel_w)],
        )?;
        if self.kernel_h.is_multiple_of(2) || self.kernel_w.is_multiple_of(2) {
            return Err(Error::shape(OP, format!("kernel size ({}, {}) must be odd in both dimensions", self.kernel_h, self.kernel_w)));
        }
        Ok(())
    }

    /// The weight's shape (C_out, C_in, kH, kW).
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels, self.kernel_h, self.kernel_w]
    }

    /// Buffer shapes for a (batch, height, width) grid.
    fn dims(&self, batch: usize, height: usize, width: usize) -> ConvDims {
        ConvDims {
            x: vec![("batch", batch), ("height", height), ("width", width), ("in_channels", self.in_channels)],
            weight: self.weight_dims().to_vec(),
            out: vec![("batch", batch), ("height", height), ("width", width), ("out_channels", self.out_channels)],
            out_channels: self.out_channels,
        }
    }

    fn weight_dims(&self) -> [(&'static str, usize); 4] {
        [("out_channels", self.out_channels), ("in_channels", self.in_channels), ("kernel_h", self.kernel_h), ("kernel_w", self.kernel_w)]
    }

    /// Width of a padded image row.
    fn padded_width(&self, width: usize) -> usize {
        width + self.kernel_w - 1
    }

    /// Validates the spec and builds the tap geometry over flattened, width-padded images
    /// (dense side = output, strided side = input).
    fn geometry(&self, batch: usize, height: usize, width: usize) -> Result<TapGemm> {
        self.validate()?;
        check_positive(OP, &[("height", height), ("width", width)])?;
        let (kh, kw, wp) = (self.kernel_h, self.kernel_w, self.padded_width(width));
        let mask = pixelcnn_mask(kh, kw, self.mask);
        let taps = (0..kh * kw)
            .filter(|&i| mask[i] != 0.0)
            .map(|i| Tap { index: i, shift: (i / kw) as isize * wp as isize - (kh / 2 * wp) as isize + (i % kw) as isize })
            .collect();
        let rows = height * wp;
        Ok(TapGemm { batch, d_len: rows, d_ch: self.out_channels, s_len: rows, s_ch: self.in_channels, stride: 1, groups: 1, kernel: kh * kw, taps })
    }
}

/// The PixelCNN mask (kH, kW) in row-major order: 1 on rows above the centre and left of
/// the centre on its row, the centre itself only for [`MaskType::B`], 0 elsewhere.
pub fn pixelcnn_mask(kernel_h: usize, kernel_w: usize, mask: MaskType) -> Vec<f32> {
    let (ch, cw) = (kernel_h / 2, kernel_w / 2);
    let centre_kept = usize::from(mask == MaskType::B);
    (0..kernel_h * kernel_w)
        .map(|i| {
            let (a, e) = (i / kernel_w, i % kernel_w);
            if a < ch || (a == ch && e < cw + centre_kept) {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Copies `rows` image rows of `width` pixels × `ch` channels into zeroed rows of `wp`
/// pixels, starting at pixel `left` of each.
fn widen(src: &[f32], rows: usize, width: usize, ch: usize, left: usize, wp: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * wp * ch]; // (rows, wp, ch)
    for (dst, row) in out.chunks_exact_mut(wp * ch).zip(src.chunks_exact(width * ch)) {
        dst[left * ch..(left + width) * ch].copy_from_slice(row);
    }
    out
}

/// Masked 2-D convolution forward; overwrites `out`. Weights under the mask's zeros are
/// ignored (the op uses `weight * mask`).
///
/// # Shapes
/// - x: `[batch, height, width, in_channels]`
/// - weight: `[out_channels, in_channels, kernel_h, kernel_w]`
/// - bias: `[out_channels]`
/// - out: `[batch, height, width, out_channels]`
#[allow(clippy::too_many_arguments)]
pub fn masked_conv2d_forward(
    spec: &MaskedConv2dSpec,
    x: &[f32],
    batch: usize,
    height: usize,
    width: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    masked_conv2d_forward_with(Gemm::F32, spec, x, batch, height, width, weight, bias, out)
}

/// [`masked_conv2d_forward`] with its products computed as `gemm` says.
#[allow(clippy::too_many_arguments)]
pub fn masked_conv2d_forward_with(
    gemm: Gemm,
    spec: &MaskedConv2dSpec,
    x: &[f32],
    batch: usize,
    height: usize,
    width: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let geo = spec.geometry(batch, height, width)?;
    let (c_in, c_out, wp, pw) = (spec.in_channels, spec.out_channels, spec.padded_width(width), spec.kernel_w / 2);
    spec.dims(batch, height, width).check_forward(OP, x, weight, bias, out)?;
    let image_in = height * width * c_in;
    par_batches(out, height * width * c_out, |b, out_b, par| {
        let xp = widen(&x[b * image_in..(b + 1) * image_in], height, width, c_in, pw, wp); // (H, Wp, C_in)
        let mut yp = vec![0.0f32; height * wp * c_out]; // (H, Wp, C_out)
        fill_rows(&mut yp, bias, c_out);
        geo.d_from_s(gemm, &xp, weight, &mut yp, par);
        for (dst, row) in out_b.chunks_exact_mut(width * c_out).zip(yp.chunks_exact(wp * c_out)) {
            dst.copy_from_slice(&row[..width * c_out]);
        }
    });
    Ok(())
}

/// Masked 2-D convolution backward: ADDS d loss / d (x, weight, bias) into each given
/// buffer; `grad_weight` gets nothing where the mask is zero.
///
/// # Shapes
/// - x, grad_x: `[batch, height, width, in_channels]`
/// - weight, grad_weight: `[out_channels, in_channels, kernel_h, kernel_w]`
/// - grad_out: `[batch, height, width, out_channels]`
/// - grad_bias: `[out_channels]`
#[allow(clippy::too_many_arguments)]
pub fn masked_conv2d_backward(
    spec: &MaskedConv2dSpec,
    x: &[f32],
    batch: usize,
    height: usize,
    width: usize,
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    masked_conv2d_backward_with(Gemm::F32, spec, x, batch, height, width, weight, grad_out, grad_x, grad_weight, grad_bias)
}

/// [`masked_conv2d_backward`] with its products computed as `gemm` says.
#[allow(clippy::too_many_arguments)]
pub fn masked_conv2d_backward_with(
    gemm: Gemm,
    spec: &MaskedConv2dSpec,
    x: &[f32],
    batch: usize,
    height: usize,
    width: usize,
    weight: &[f32],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    let geo = spec.geometry(batch, height, width)?;
    let (c_in, c_out, wp, pw) = (spec.in_channels, spec.out_channels, spec.padded_width(width), spec.kernel_w / 2);
    spec.dims(batch, height, width).check_backward(OP, x, weight, grad_out, grad_x.as_deref(), grad_weight.as_deref(), grad_bias.as_deref())?;
    // grad_out in the padded layout; its extra columns stay zero so they add nothing.
    let gop = widen(grad_out, batch * height, width, c_out, 0, wp); // (B, H, Wp, C_out)
    if let Some(gx) = grad_x {
        let image_out = height * wp * c_out;
        par_batches(gx, height * width * c_in, |b, gx_b, par| {
            let mut gxp = vec![0.0f32; height * wp * c_in]; // (H, Wp, C_in)
            geo.s_from_d(gemm, &gop[b * image_out..(b + 1) * image_out], weight, &mut gxp, par);
            for (dst, row) in gx_b.chunks_exact_mut(width * c_in).zip(gxp.chunks_exact(wp * c_in)) {
                dst.iter_mut().zip(&row[pw * c_in..(pw + width) * c_in]).for_each(|(d, v)| *d += v);
            }
        });
    }
    if let Some(gw) = grad_weight {
        let xp = widen(x, batch * height, width, c_in, pw, wp); // (B, H, Wp, C_in)
        geo.weight_grad(gemm, &gop, &xp, gw);
    }
    if let Some(gb) = grad_bias {
        add_column_sums(grad_out, c_out, gb);
    }
    Ok(())
}
