//! Batch-wide "columns" of a groups-1 conv1d: row `b·T_out + t` holds the K input rows that
//! output `t` of item `b` reads, `cols[., j·C_in + i] = x[b, t·stride + j·dilation - pad, i]`
//! (zero where that falls in the padding).
//!
//! Small convolutions (W2's dilated stack: 24 steps, 32 items) spend more time in the
//! per-item, per-tap GEMM calls (each re-packing its operands) than in arithmetic. Copying
//! the windows once makes the whole layer ONE GEMM with inner dimension K·C_in, and the
//! explicit zeros keep the padding exact (no cross-item terms to subtract). For large layers
//! too the copy is cheap next to the GEMM, and one batch-wide GEMM packs the weight once
//! instead of once per item (W1's head weight gradient: 16 items, 7.7 MB each time). Used
//! whenever the columns fit in [`MAX_COLS`]; larger convs keep the copy-free tap GEMMs.

use super::matmul::{matmul, Mat, Par};
use crate::tensor::memory::Scratch;
use rayon::prelude::*;

/// Columns bigger than this (in f32 values) are not materialised (64 MiB).
pub const MAX_COLS: usize = 16 << 20;

/// The window geometry of one conv1d call.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    pub batch: usize,
    pub len: usize,
    pub c_in: usize,
    pub t_out: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_left: usize,
}

impl Columns {
    /// Width of one row: K·C_in.
    pub fn width(&self) -> usize {
        self.kernel_size * self.c_in
    }

    /// Number of values of the whole matrix (B·T_out, K·C_in).
    pub fn numel(&self) -> usize {
        self.batch * self.t_out * self.width()
    }

    /// Input row of output row `t`, tap `j`, or None in the padding.
    fn source(&self, t: usize, j: usize) -> Option<usize> {
        let s = (t * self.stride + j * self.dilation) as isize - self.pad_left as isize;
        (s >= 0 && (s as usize) < self.len).then_some(s as usize)
    }

    /// The columns of `x` (B, len, C_in): (B·T_out, K·C_in). Every value is written
    /// (zeros in the padding), so the buffer need not start zeroed.
    pub fn gather(&self, x: &[f32]) -> Scratch {
        let (w, c) = (self.width(), self.c_in);
        let mut cols = Scratch::new(self.numel());
        cols.par_chunks_mut((self.t_out * w).max(1)).enumerate().for_each(|(b, cols_b)| {
            let x_b = &x[b * self.len * c..(b + 1) * self.len * c];
            for (t, row) in cols_b.chunks_exact_mut(w).enumerate() {
                for (j, tap) in row.chunks_exact_mut(c).enumerate() {
                    match self.source(t, j) {
                        Some(s) => tap.copy_from_slice(&x_b[s * c..(s + 1) * c]),
                        None => tap.fill(0.0),
                    }
                }
            }
        });
        cols
    }

    /// `gx` (B, len, C_in) += scale · the input gradient of a conv with weight (C_out, C_in, K),
    /// given its output gradient `grad_out` (B·T_out, C_out): one GEMM into columns
    /// (B·T_out, C_out) · (C_out, K·C_in), folded back with [`Columns::scatter_add`].
    pub fn grad_input(&self, weight: &[f32], c_out: usize, grad_out: &[f32], scale: f32, gx: &mut [f32]) {
        let (rows, w) = (self.batch * self.t_out, self.width());
        let wt = tap_major(weight, self.c_in, self.kernel_size); // (C_out, K·C_in)
        let mut g_cols = Scratch::new(rows * w); // (B·T_out, K·C_in), overwritten by the GEMM
        matmul(&mut g_cols, w, Mat::row_major(grad_out, rows, c_out), Mat::row_major(&wt, c_out, w), false, Par::Pool);
        scale_values(&mut g_cols, scale);
        self.scatter_add(&g_cols, gx);
    }

    /// `gw` (C_out, C_in, K) += scale · grad_outᵀ · x_cols: the weight gradient from the output
    /// gradient (B·T_out, C_out) and the input's columns ([`Columns::gather`]), one GEMM over
    /// the whole batch.
    pub fn grad_weight(&self, x_cols: &[f32], c_out: usize, grad_out: &[f32], scale: f32, gw: &mut [f32]) {
        let (rows, w) = (self.batch * self.t_out, self.width());
        let mut acc = Scratch::new(c_out * w); // (C_out, K·C_in), overwritten by the GEMM
        let go_t = Mat::row_major(grad_out, rows, c_out).t();
        matmul(&mut acc, w, go_t, Mat::row_major(x_cols, rows, w), false, Par::Pool);
        scale_values(&mut acc, scale);
        add_tap_major(&acc, self.c_in, self.kernel_size, gw);
    }

    /// `gx` (B, len, C_in) += the columns' gradient `gcols` (B·T_out, K·C_in) folded back.
    pub fn scatter_add(&self, gcols: &[f32], gx: &mut [f32]) {
        let (w, c) = (self.width(), self.c_in);
        gx.par_chunks_mut((self.len * c).max(1)).enumerate().for_each(|(b, gx_b)| {
            let g_b = &gcols[b * self.t_out * w..(b + 1) * self.t_out * w];
            // Taps in ascending order per output row, rows in ascending order: a fixed order.
            for (t, row) in g_b.chunks_exact(w).enumerate() {
                for j in 0..self.kernel_size {
                    if let Some(s) = self.source(t, j) {
                        gx_b[s * c..(s + 1) * c].iter_mut().zip(&row[j * c..(j + 1) * c]).for_each(|(g, v)| *g += v);
                    }
                }
            }
        });
    }
}

/// `v *= scale` unless scale is 1.
fn scale_values(v: &mut [f32], scale: f32) {
    if scale != 1.0 {
        v.par_chunks_mut(1 << 14).for_each(|c| c.iter_mut().for_each(|x| *x *= scale));
    }
}

/// `gw` (rows, C_in, K) += `acc` (rows, K·C_in) whose columns are in (tap, channel) order:
/// the weight-gradient layout of every GEMM over windows or columns.
pub fn add_tap_major(acc: &[f32], c_in: usize, kernel_size: usize, gw: &mut [f32]) {
    let w = (c_in * kernel_size).max(1);
    gw.par_chunks_mut(w).zip(acc.par_chunks(w)).for_each(|(g_o, a_o)| {
        for j in 0..kernel_size {
            for i in 0..c_in {
                g_o[i * kernel_size + j] += a_o[j * c_in + i];
            }
        }
    });
}

/// The weight (rows, C_in, K) with each row's columns in (tap, channel) order: (rows, K·C_in),
/// row-major. As the unit-stride B of `columns · weightᵀ` products it packs with plain copies,
/// where a transposed view of [`super::window_gemm::pack_forward`] needs a strided gather.
pub fn tap_major(w: &[f32], c_in: usize, kernel_size: usize) -> Scratch {
    let width = (c_in * kernel_size).max(1);
    let mut out = Scratch::new(w.len());
    out.par_chunks_mut(width * 64).zip(w.par_chunks(width * 64)).for_each(|(o_rows, w_rows)| {
        for (o_row, w_row) in o_rows.chunks_exact_mut(width).zip(w_rows.chunks_exact(width)) {
            for (i, taps) in w_row.chunks_exact(kernel_size).enumerate() {
                for (j, &v) in taps.iter().enumerate() {
                    o_row[j * c_in + i] = v;
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_major_is_undone_by_add_tap_major() {
        let (rows, c_in, k) = (3, 4, 2);
        let w: Vec<f32> = (0..rows * c_in * k).map(|v| v as f32 * 0.5 - 3.0).collect();
        let t = tap_major(&w, c_in, k);
        // Row 0, tap 1, channel 2 sits at column 1·C_in + 2 and came from w[0, 2, 1].
        assert_eq!(t[c_in + 2], w[2 * k + 1]);
        assert_eq!(t.len(), w.len());
        let mut back = vec![0.0f32; w.len()];
        add_tap_major(&t, c_in, k, &mut back);
        assert_eq!(back, w);
    }

    fn geometry() -> Columns {
        Columns { batch: 2, len: 5, c_in: 2, t_out: 3, kernel_size: 2, stride: 2, dilation: 2, pad_left: 1 }
    }

    #[test]
    fn gather_places_every_tap_and_zero_padding() {
        let g = geometry();
        let x: Vec<f32> = (0..g.batch * g.len * g.c_in).map(|v| v as f32 + 1.0).collect();
        let cols = g.gather(&x);
        // item 0, t = 0: taps at rows -1 (padding) and 1; t = 2: rows 3 and 5 (padding).
        assert_eq!(&cols[0..4], &[0.0, 0.0, 3.0, 4.0]);
        assert_eq!(&cols[8..12], &[7.0, 8.0, 0.0, 0.0]);
        // item 1, t = 1: rows 1 and 3 of item 1 (values start at 11).
        assert_eq!(&cols[(3 + 1) * 4..(3 + 2) * 4], &[13.0, 14.0, 17.0, 18.0]);
    }

    #[test]
    fn scatter_add_is_the_adjoint_of_gather() {
        // <gather(x), y> == <x, scatter_add(y)> for arbitrary x, y.
        let g = geometry();
        let x: Vec<f32> = (0..g.batch * g.len * g.c_in).map(|v| (v as f32 * 0.7).sin()).collect();
        let y: Vec<f32> = (0..g.numel()).map(|v| (v as f32 * 0.3).cos()).collect();
        let lhs: f32 = g.gather(&x).iter().zip(&y).map(|(a, b)| a * b).sum();
        let mut gx = vec![0.0; x.len()];
        g.scatter_add(&y, &mut gx);
        let rhs: f32 = x.iter().zip(&gx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
    }
}
