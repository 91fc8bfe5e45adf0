//! Fast path of conv1d for stride 1, groups 1 and dilation 1 (or kernel size 1): the K taps
//! of one output row read K consecutive, channels-last input rows, i.e. ONE contiguous
//! window of K·C values. The whole convolution is then a single GEMM per batch item with
//! inner dimension K·C over an overlapping-rows view of the input (row stride C) — no
//! im2col copy. Only the few rows whose window touches padding are built explicitly.

use super::matmul::{matmul, matmul_init, Init, Mat, Par};
use crate::tensor::memory::Scratch;
use rayon::prelude::*;

/// Window geometry: destination row `r` reads source rows `r + offset .. r + offset + k`.
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    pub src_len: usize,
    pub ch: usize,
    pub k: usize,
    pub offset: isize,
    pub rows: usize,
}

impl Windows {
    /// The destination rows `lo..hi` whose whole window lies inside the source.
    pub fn interior(&self) -> (usize, usize) {
        let lo = (-self.offset).max(0) as usize;
        let hi = (self.src_len as isize - self.k as isize - self.offset + 1).clamp(0, self.rows as isize) as usize;
        let lo = lo.min(self.rows);
        (lo, hi.max(lo))
    }

    /// The view of the interior windows (hi - lo, k·ch) over `src` (one item).
    pub fn interior_view<'a>(&self, src: &'a [f32]) -> Option<(usize, Mat<'a>)> {
        let (lo, hi) = self.interior();
        (hi > lo).then(|| {
            let start = (lo as isize + self.offset) as usize * self.ch;
            (lo, Mat::strided(&src[start..], hi - lo, self.k * self.ch, self.ch, 1))
        })
    }

    /// Explicit windows (with zero padding) of destination rows `r0..r1`, row-major.
    pub fn explicit(&self, src: &[f32], r0: usize, r1: usize) -> Vec<f32> {
        let w = self.k * self.ch;
        let mut out = vec![0.0f32; (r1 - r0) * w];
        for (r, row) in (r0..r1).zip(out.chunks_exact_mut(w)) {
            for j in 0..self.k {
                let s = r as isize + self.offset + j as isize;
                if s >= 0 && (s as usize) < self.src_len {
                    let s = s as usize;
                    row[j * self.ch..(j + 1) * self.ch].copy_from_slice(&src[s * self.ch..(s + 1) * self.ch]);
                }
            }
        }
        out
    }

    /// The boundary row ranges (outside the interior).
    pub fn boundary(&self) -> [(usize, usize); 2] {
        let (lo, hi) = self.interior();
        [(0, lo), (hi, self.rows)]
    }

    /// `dst (rows, n) += windows(src) · wp (k·ch, n)`; `dst` has row stride `n`.
    pub fn apply(&self, src: &[f32], wp: &[f32], n: usize, dst: &mut [f32], par: Par) {
        let kc = self.k * self.ch;
        let b = Mat::row_major(wp, kc, n);
        if let Some((lo, a)) = self.interior_view(src) {
            matmul(&mut dst[lo * n..], n, a, b, true, par);
        }
        for (r0, r1) in self.boundary() {
            if r1 > r0 {
                let win = self.explicit(src, r0, r1);
                matmul(&mut dst[r0 * n..], n, Mat::row_major(&win, r1 - r0, kc), b, true, Par::Seq);
            }
        }
    }
}

/// `dst (batch, rows, n) = start + windows(src_b) · wp (k·ch, n)` for every item `b` of a
/// batch, where `init` says what `start` is (the bias, zero, or dst itself).
///
/// When every item has as many destination rows as source rows, destination row `b·rows + r`
/// reads source rows from `b·src_len + r + offset` on: one strided view covers the interior
/// windows of the whole batch, so it is ONE GEMM (the weight is packed once, not once per
/// item). The view's rows that straddle two items are the boundary rows; they are computed
/// apart from explicit windows and written over what the big GEMM left there.
pub fn apply_batch(geo: &Windows, batch: usize, src: &[f32], wp: &[f32], n: usize, dst: &mut [f32], init: Init) {
    let (src_item, dst_item) = (geo.src_len * geo.ch, geo.rows * n);
    let (lo, hi) = geo.interior();
    if batch < 2 || geo.rows != geo.src_len || hi <= lo {
        super::tap_gemm::par_batches(dst, dst_item, |b, dst_b, par| {
            init.fill(dst_b, geo.rows, n, n);
            geo.apply(&src[b * src_item..(b + 1) * src_item], wp, n, dst_b, par);
        });
        return;
    }
    let kc = geo.k * geo.ch;
    let boundary: Vec<(usize, usize)> =
        (0..batch).flat_map(|b| geo.boundary().map(|(r0, r1)| (b * geo.rows + r0, b * geo.rows + r1))).filter(|(r0, r1)| r1 > r0).collect();
    // All boundary rows of the batch in one product, from their own starting values: dst's
    // (saved before the big GEMM below overwrites them with cross-item sums) when
    // accumulating, otherwise whatever `init` writes.
    let windows: Vec<f32> = boundary.iter().flat_map(|&(r0, r1)| boundary_windows(geo, src, r0, r1)).collect();
    let n_rows = windows.len() / kc;
    let mut fixed: Vec<f32> = match init {
        Init::Accumulate => boundary.iter().flat_map(|&(r0, r1)| dst[r0 * n..r1 * n].iter().copied()).collect(),
        _ => vec![0.0; n_rows * n],
    };
    let (first, last) = (lo, (batch - 1) * geo.rows + hi);
    let start = (first as isize + geo.offset) as usize * geo.ch;
    let view = Mat::strided(&src[start..], last - first, kc, geo.ch, 1);
    let wm = Mat::row_major(wp, kc, n);
    // Rows before `first` and after `last` are boundary rows too: nothing else writes them.
    matmul_init(&mut dst[first * n..], n, view, wm, init, Par::Pool);
    matmul_init(&mut fixed, n, Mat::row_major(&windows, n_rows, kc), wm, init, Par::Pool);
    // The boundary rows are written over what the big GEMM left there.
    let mut rows = fixed.chunks_exact(n);
    for &(r0, r1) in &boundary {
        for (d, f) in dst[r0 * n..r1 * n].chunks_exact_mut(n).zip(&mut rows) {
            d.copy_from_slice(f);
        }
    }
}

/// Explicit windows of the flat (batch-wide) destination rows `r0..r1`, all in one item.
fn boundary_windows(geo: &Windows, src: &[f32], r0: usize, r1: usize) -> Vec<f32> {
    let b = r0 / geo.rows;
    let item = &src[b * geo.src_len * geo.ch..(b + 1) * geo.src_len * geo.ch];
    geo.explicit(item, r0 - b * geo.rows, r1 - b * geo.rows)
}

/// Packs a conv weight (C_out, C_in, K) into (K·C_in, C_out) with row `j·C_in + i`,
/// column `o` = w[o, i, j] (the forward weight).
pub fn pack_forward(w: &[f32], c_out: usize, c_in: usize, k: usize) -> Scratch {
    let mut p = Scratch::new(k * c_in * c_out);
    // p[(j*c_in + i) * c_out + o] = w[(o*c_in + i)*k + j]
    // A transpose per tap, in 16 x 16 tiles so that both the reads and the writes stay
    // within a few cache lines (the plain loop wrote with stride C_out: 3% of W2's step).
    const TILE: usize = 16;
    let tap = |(j, pj): (usize, &mut [f32])| {
        for o0 in (0..c_out).step_by(TILE) {
            for i0 in (0..c_in).step_by(TILE) {
                for o in o0..(o0 + TILE).min(c_out) {
                    let wo = &w[o * c_in * k..(o + 1) * c_in * k];
                    for i in i0..(i0 + TILE).min(c_in) {
                        pj[i * c_out + o] = wo[i * k + j];
                    }
                }
            }
        }
    };
    if p.len() < PAR_PACK_MIN {
        p.chunks_mut(c_in * c_out).enumerate().for_each(tap);
    } else {
        p.par_chunks_mut(c_in * c_out).enumerate().for_each(tap);
    }
    p
}

/// Weights smaller than this (values) are packed on the calling thread.
const PAR_PACK_MIN: usize = 1 << 17;

/// (k·C_out, C_in) with row `j·C_out + o` = w[o, :, K-1-j].
pub fn pack_backward(w: &[f32], c_out: usize, c_in: usize, k: usize) -> Scratch {
    let mut p = Scratch::new(k * c_out * c_in);
    let tap_rows = |(j, pj): (usize, &mut [f32])| {
        let tap = k - 1 - j;
        for (o, row) in pj.chunks_exact_mut(c_in).enumerate() {
            let wo = &w[o * c_in * k..(o + 1) * c_in * k];
            for (i, v) in row.iter_mut().enumerate() {
                *v = wo[i * k + tap];
            }
        }
    };
    if p.len() < PAR_PACK_MIN {
        p.chunks_mut(c_out * c_in).enumerate().for_each(tap_rows);
    } else {
        p.par_chunks_mut(c_out * c_in).enumerate().for_each(tap_rows);
    }
    p
}

/// `gw` (C_out, C_in, K) += Σ_b go_bᵀ · windows(x_b), with go (B, rows, C_out) and x
/// (B, src_len, C_in). Threads split the output channels.
///
/// Items stay separate GEMMs here: a batch-wide view would add the straddling windows and
/// subtract them again, which leaves rounding noise where the true gradient is exactly 0
/// (and Adam turns such noise into full-size steps).
pub fn weight_grad(geo: &Windows, batch: usize, go: &[f32], c_out: usize, x: &[f32], gw: &mut [f32]) {
    let (c_in, k) = (geo.ch, geo.k);
    let kc = k * c_in;
    if c_out == 0 || kc == 0 {
        return;
    }
    let pieces = rayon::current_num_threads().max(1);
    let per = c_out.div_ceil(pieces);
    let item_go = geo.rows * c_out;
    let item_x = geo.src_len * c_in;
    gw.par_chunks_mut(per * kc).enumerate().for_each(|(p, gw_p)| {
        let o0 = p * per;
        let rows = gw_p.len() / kc;
        let mut acc = vec![0.0f32; rows * kc]; // (rows, k·c_in) in (tap, channel) order
        for b in 0..batch {
            let go_b = &go[b * item_go..];
            let x_b = &x[b * item_x..(b + 1) * item_x];
            if let Some((lo, win)) = geo.interior_view(x_b) {
                let a = Mat::strided(&go_b[lo * c_out + o0..], win.rows, rows, c_out, 1).t();
                matmul(&mut acc, kc, a, win, true, Par::Seq);
            }
            for (r0, r1) in geo.boundary() {
                if r1 > r0 {
                    let win = geo.explicit(x_b, r0, r1);
                    let a = Mat::strided(&go_b[r0 * c_out + o0..], r1 - r0, rows, c_out, 1).t();
                    matmul(&mut acc, kc, a, Mat::row_major(&win, r1 - r0, kc), true, Par::Seq);
                }
            }
        }
        super::im2col::add_tap_major(&acc, c_in, k, gw_p);
    });
}
