//! Shared engine of the convolution kernels: a convolution is a sum over kernel taps of
//! strided GEMMs between a "dense" tensor and a shifted, strided view of a second tensor.
//!
//! Both tensors are channels-last: dense D (B, d_len, d_ch) and strided S (B, s_len, s_ch).
//! A tap links dense row `i` to strided row `i * stride + shift`; partners outside
//! `0..s_len` are zero padding. Each tap therefore covers one contiguous range of dense rows
//! and is one GEMM per group over views of the caller's buffers — no im2col, no padded copy.
//!
//! The weight is (d_ch, s_ch / groups, kernel), which covers conv1d (C_out, C_in/g, K) with
//! D = output, conv_transpose1d (C_in, C_out/g, K) with D = input, and masked conv2d
//! (C_out, C_in, kH*kW) over width-padded, flattened images.
//!
//! - [`TapGemm::d_from_s`]: D[i] += S[i*stride + shift] · W_tapᵀ (conv1d forward, convT grad_x)
//! - [`TapGemm::s_from_d`]: S[i*stride + shift] += D[i] · W_tap (conv1d grad_x, convT forward)
//! - [`TapGemm::weight_grad`]: W_tap += Dᵀ · S_shifted (the weight gradient of both)

use super::matmul::{Gemm, Mat, Par};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// One kernel tap: which slot of the weight's last axis it uses, and its row shift.
#[derive(Clone, Copy, Debug)]
pub struct Tap {
    pub index: usize,
    pub shift: isize,
}

/// The geometry of one convolution call (see the module docs).
#[derive(Clone, Debug)]
pub struct TapGemm {
    pub batch: usize,
    pub d_len: usize,
    pub d_ch: usize,
    pub s_len: usize,
    pub s_ch: usize,
    pub stride: usize,
    pub groups: usize,
    /// Length of the weight's last axis.
    pub kernel: usize,
    pub taps: Vec<Tap>,
}

impl TapGemm {
    fn dpg(&self) -> usize {
        self.d_ch / self.groups
    }

    fn spg(&self) -> usize {
        self.s_ch / self.groups
    }

    /// `(first dense row, row count, first strided row)` of the rows whose partner lies in
    /// `0..s_len`, or `None` when the tap touches only padding.
    fn rows(&self, shift: isize) -> Option<(usize, usize, usize)> {
        let s = self.stride as isize;
        let lo = if shift >= 0 { 0 } else { (-shift + s - 1) / s };
        let room = self.s_len as isize - shift; // partner < s_len  <=>  i * s < room
        let hi = if room <= 0 { 0 } else { ((room + s - 1) / s).min(self.d_len as isize) };
        (lo < hi).then(|| (lo as usize, (hi - lo) as usize, (lo * s + shift) as usize))
    }

    /// W_tap of group `g` as a (d_ch/g, s_ch/g) view.
    fn w_view<'a>(&self, w: &'a [f32], g: usize, tap: Tap) -> Mat<'a> {
        let (dpg, spg, k) = (self.dpg(), self.spg(), self.kernel);
        Mat::strided(&w[g * dpg * spg * k + tap.index..], dpg, spg, spg * k, k)
    }

    /// One batch item: `d` (d_len, d_ch) += taps of `s` (s_len, s_ch).
    pub fn d_from_s(&self, gemm: Gemm, s: &[f32], w: &[f32], d: &mut [f32], par: Par) {
        let (dpg, spg) = (self.dpg(), self.spg());
        for &tap in &self.taps {
            let Some((d0, n, s0)) = self.rows(tap.shift) else { continue };
            for g in 0..self.groups {
                let a = Mat::strided(&s[s0 * self.s_ch + g * spg..], n, spg, self.stride * self.s_ch, 1);
                let dst = &mut d[d0 * self.d_ch + g * dpg..];
                gemm.matmul(dst, self.d_ch, a, self.w_view(w, g, tap).t(), true, par);
            }
        }
    }

    /// One batch item: `s` (s_len, s_ch) += taps of `d` (d_len, d_ch).
    pub fn s_from_d(&self, gemm: Gemm, d: &[f32], w: &[f32], s: &mut [f32], par: Par) {
        let (dpg, spg) = (self.dpg(), self.spg());
        for &tap in &self.taps {
            let Some((d0, n, s0)) = self.rows(tap.shift) else { continue };
            for g in 0..self.groups {
                let a = Mat::strided(&d[d0 * self.d_ch + g * dpg..], n, dpg, self.d_ch, 1);
                let dst = &mut s[s0 * self.s_ch + g * spg..];
                gemm.matmul(dst, self.stride * self.s_ch, a, self.w_view(w, g, tap), true, par);
            }
        }
    }

    /// `gw` (d_ch, s_ch/g, kernel) += Σ over batch and taps of Dᵀ · S_shifted, with `d`
    /// (B, d_len, d_ch) and `s` (B, s_len, s_ch). Threads split the weight's rows, so no
    /// per-thread copies of the whole gradient are needed.
    pub fn weight_grad(&self, gemm: Gemm, d: &[f32], s: &[f32], gw: &mut [f32]) {
        let (dpg, row) = (self.dpg(), self.spg() * self.kernel);
        if dpg == 0 || row == 0 {
            return;
        }
        let pieces = rayon::current_num_threads().div_ceil(self.groups).max(1);
        let rows_per_piece = dpg.div_ceil(pieces);
        gw.par_chunks_mut(dpg * row).enumerate().for_each(|(g, gw_g)| {
            gw_g.par_chunks_mut(rows_per_piece * row).enumerate().for_each(|(p, gw_p)| {
                self.weight_grad_rows(gemm, d, s, g, p * rows_per_piece, gw_p);
            });
        });
    }

    /// The rows `o0..` (within group `g`) of the weight gradient; `gw` holds exactly them.
    fn weight_grad_rows(&self, gemm: Gemm, d: &[f32], s: &[f32], g: usize, o0: usize, gw: &mut [f32]) {
        let (spg, k) = (self.spg(), self.kernel);
        let rows = gw.len() / (spg * k);
        let col = g * self.dpg() + o0;
        let mut acc = vec![0.0f32; self.taps.len() * rows * spg]; // (taps, rows, C_s/g)
        for b in 0..self.batch {
            let d_b = &d[b * self.d_len * self.d_ch..]; // (d_len, d_ch)
            let s_b = &s[b * self.s_len * self.s_ch..]; // (s_len, s_ch)
            for (ti, &tap) in self.taps.iter().enumerate() {
                let Some((d0, n, s0)) = self.rows(tap.shift) else { continue };
                let a = Mat::strided(&d_b[d0 * self.d_ch + col..], n, rows, self.d_ch, 1).t();
                let bm = Mat::strided(&s_b[s0 * self.s_ch + g * spg..], n, spg, self.stride * self.s_ch, 1);
                gemm.matmul(&mut acc[ti * rows * spg..], spg, a, bm, true, Par::Seq);
            }
        }
        for (ti, tap) in self.taps.iter().enumerate() {
            let block = &acc[ti * rows * spg..(ti + 1) * rows * spg]; // (rows, C_s/g)
            for (gw_o, acc_o) in gw.chunks_exact_mut(spg * k).zip(block.chunks_exact(spg)) {
                for (c, v) in acc_o.iter().enumerate() {
                    gw_o[c * k + tap.index] += v;
                }
            }
        }
    }
}

/// Runs `f(b, out_b, par)` for every batch item's block `out_b` (`per_batch` values):
/// in parallel over the batch with single-threaded GEMMs when there are enough items,
/// otherwise one item at a time with pool-parallel GEMMs.
pub fn par_batches<F>(out: &mut [f32], per_batch: usize, f: F)
where
    F: Fn(usize, &mut [f32], Par) + Sync + Send,
{
    if per_batch == 0 {
        return;
    }
    let batch = out.len() / per_batch;
    if batch >= rayon::current_num_threads() && batch > 1 {
        out.par_chunks_mut(per_batch).enumerate().for_each(|(b, o)| f(b, o, Par::Seq));
    } else {
        out.chunks_mut(per_batch).enumerate().for_each(|(b, o)| f(b, o, Par::Pool));
    }
}

/// Sets every row of `out` (rows, cols) to `bias`, or to zero without one.
pub fn fill_rows(out: &mut [f32], bias: Option<&[f32]>, cols: usize) {
    match bias {
        Some(b) => out.chunks_exact_mut(cols).for_each(|r| r.copy_from_slice(b)),
        None => out.fill(0.0),
    }
}

/// `out` (cols) += the column sums of `x` (rows, cols): the bias gradient. Rows are summed
/// in blocks of a fixed size and the blocks' sums added in order, so the result is the same
/// bits whatever the number of threads.
pub fn add_column_sums(x: &[f32], cols: usize, out: &mut [f32]) {
    const ROWS: usize = 256;
    if cols == 0 || x.is_empty() {
        return;
    }
    let partials: Vec<Vec<f32>> = x
        .par_chunks(ROWS * cols)
        .map(|rows| {
            let mut acc = vec![0.0f32; cols]; // (cols)
            for row in rows.chunks_exact(cols) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            acc
        })
        .collect();
    for p in &partials {
        out.iter_mut().zip(p).for_each(|(o, s)| *o += s);
    }
}

/// Errors unless `got` equals the product of the named dimensions.
pub fn check_len(op: &'static str, what: &str, got: usize, dims: &[(&str, usize)]) -> Result<()> {
    let want = dims.iter().try_fold(1usize, |acc, &(_, v)| acc.checked_mul(v));
    if want == Some(got) {
        return Ok(());
    }
    let named: Vec<String> = dims.iter().map(|(n, v)| format!("{n} {v}")).collect();
    let want = want.map_or("more than usize::MAX".to_string(), |w| w.to_string());
    Err(Error::shape(op, format!("{what} holds {got} values but ({}) needs {want}", named.join(", "))))
}

/// Shapes of a convolution's three operands, for the buffer-length checks shared by every
/// kernel: input `x`, weight, and output (the gradient of the output in backward).
pub struct ConvDims {
    pub x: Vec<(&'static str, usize)>,
    pub weight: Vec<(&'static str, usize)>,
    pub out: Vec<(&'static str, usize)>,
    pub out_channels: usize,
}

impl ConvDims {
    /// The shapes of a 1-D convolution (conv1d or conv_transpose1d): input (batch, len,
    /// in_channels), output (batch, out_len, out_channels) and the named weight dims.
    pub fn sequence(batch: usize, len: usize, out_len: usize, in_channels: usize, out_channels: usize, weight: [(&'static str, usize); 3]) -> Self {
        ConvDims {
            x: vec![("batch", batch), ("length", len), ("in_channels", in_channels)],
            weight: weight.to_vec(),
            out: vec![("batch", batch), ("output length", out_len), ("out_channels", out_channels)],
            out_channels,
        }
    }

    /// Checks the forward buffers: input, weight, optional bias and output.
    pub fn check_forward(&self, op: &'static str, x: &[f32], weight: &[f32], bias: Option<&[f32]>, out: &[f32]) -> Result<()> {
        check_len(op, "input", x.len(), &self.x)?;
        check_len(op, "weight", weight.len(), &self.weight)?;
        if let Some(b) = bias {
            check_len(op, "bias", b.len(), &[("out_channels", self.out_channels)])?;
        }
        check_len(op, "output", out.len(), &self.out)
    }

    /// Checks the backward buffers: input, weight, output gradient and each requested
    /// gradient.
    #[allow(clippy::too_many_arguments)]
    pub fn check_backward(
        &self,
        op: &'static str,
        x: &[f32],
        weight: &[f32],
        grad_out: &[f32],
        grad_x: Option<&[f32]>,
        grad_weight: Option<&[f32]>,
        grad_bias: Option<&[f32]>,
    ) -> Result<()> {
        check_len(op, "input", x.len(), &self.x)?;
        check_len(op, "weight", weight.len(), &self.weight)?;
        check_len(op, "grad_out", grad_out.len(), &self.out)?;
        if let Some(gx) = grad_x {
            check_len(op, "grad_x", gx.len(), &self.x)?;
        }
        if let Some(gw) = grad_weight {
            check_len(op, "grad_weight", gw.len(), &self.weight)?;
        }
        if let Some(gb) = grad_bias {
            check_len(op, "grad_bias", gb.len(), &[("out_channels", self.out_channels)])?;
        }
        Ok(())
    }
}

/// Errors naming the first parameter that is zero.
pub fn check_positive(op: &'static str, params: &[(&str, usize)]) -> Result<()> {
    match params.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(Error::shape(op, format!("{name} must be positive"))),
        None => Ok(()),
    }
}

/// Errors unless `groups` divides both channel counts.
pub fn check_groups(op: &'static str, groups: usize, in_channels: usize, out_channels: usize) -> Result<()> {
    if !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
        return Err(Error::shape(op, format!("groups ({groups}) must divide in_channels ({in_channels}) and out_channels ({out_channels})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::add_column_sums;

    fn sums_on(threads: usize, x: &[f32], cols: usize) -> Vec<f32> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let mut out = vec![0.5f32; cols];
        pool.install(|| add_column_sums(x, cols, &mut out));
        out
    }

    #[test]
    fn column_sums_are_exact_and_the_same_bits_on_any_number_of_threads() {
        // 1,000 rows of 7 columns: several blocks of 256 rows and a short last one.
        let (rows, cols) = (1000usize, 7usize);
        let x: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1009) as f32 - 504.0) * 1e-3).collect();
        let one = sums_on(1, &x, cols);
        for c in 0..cols {
            let want: f64 = 0.5 + (0..rows).map(|r| x[r * cols + c] as f64).sum::<f64>();
            assert!((one[c] as f64 - want).abs() < 1e-4, "column {c}: {} vs {want}", one[c]);
        }
        for threads in [2, 3, 8] {
            let got = sums_on(threads, &x, cols);
            assert!(got.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads: {got:?} vs {one:?}");
        }
    }
}
