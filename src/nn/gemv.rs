//! Matrix-vector products for one generation step: `out[o] = <w[o, :], x>` over the
//! contiguous rows of a weight matrix.
//!
//! At one position per step the weights are read once per token, so this is bound by how
//! fast the rows stream in. The AVX2 + FMA kernel walks four rows at a time, sharing each load
//! of `x` and keeping eight independent accumulators in flight. Every row is reduced in the
//! same order whether it falls in a block of four or in the remainder, so a row's result does
//! not depend on how the rows are split between threads.

/// Rows per task below which splitting over the thread pool costs more than it saves
/// (measured on the W1 head: waking a worker costs tens of microseconds).
const MIN_PARALLEL_MACS: usize = 1 << 19;

/// `out[o] = <w[o * n .. (o + 1) * n], x>` for every row `o`, with `n = x.len()`; the rows
/// are split over the rayon pool when the matrix is large.
///
/// # Shapes
/// - `w`: (out.len(), n), row-major
/// - `x`: (n,)
/// - `out`: (out.len(),)
pub fn gemv_rows(w: &[f32], x: &[f32], out: &mut [f32]) {
    use rayon::prelude::*;
    let n = x.len();
    // The AVX2 kernel reads rows through raw pointers: the size is its safety contract.
    assert_eq!(w.len(), out.len() * n, "gemv_rows: weight size");
    let threads = rayon::current_num_threads();
    if n == 0 || out.len() * n < MIN_PARALLEL_MACS || threads == 1 {
        gemv_serial(w, x, out);
        return;
    }
    let rows_per_task = out.len().div_ceil(threads).next_multiple_of(4);
    out.par_chunks_mut(rows_per_task).zip(w.par_chunks(rows_per_task * n)).for_each(|(o, w)| gemv_serial(w, x, o));
}

fn gemv_serial(w: &[f32], x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::tensor::cpu::avx2_fma().is_some() {
            // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA.
            unsafe { avx2::gemv(w, x, out) };
            return;
        }
    }
    for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len().max(1))) {
        *o = dot_portable(row, x);
    }
}

/// Dot product with 16 independent accumulators (vectorises without fast-math).
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Four rows at a time, then the remaining rows one at a time; per row: two 8-lane
    /// accumulators over 16-wide chunks, one horizontal sum, then the scalar tail.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA, and `w` must hold at least `out.len() * x.len()` values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemv(w: &[f32], x: &[f32], out: &mut [f32]) {
        // SAFETY: every load reads `x[j..j + 16]` or row `o` of `w` at `j..j + 16` with `j + 16 <= body <= n`, inside `x` and (by the size contract) inside `w`; AVX2 and FMA are present by the contract.
        unsafe {
            let n = x.len();
            let body = n - n % 16;
            let mut rows = out.chunks_exact_mut(4);
            let mut o = 0;
            for block in &mut rows {
                let r: [&[f32]; 4] = [&w[o * n..], &w[(o + 1) * n..], &w[(o + 2) * n..], &w[(o + 3) * n..]];
                let mut lo = [_mm256_setzero_ps(); 4];
                let mut hi = [_mm256_setzero_ps(); 4];
                let mut j = 0;
                while j < body {
                    let x_lo = _mm256_loadu_ps(x.as_ptr().add(j));
                    let x_hi = _mm256_loadu_ps(x.as_ptr().add(j + 8));
                    for i in 0..4 {
                        lo[i] = _mm256_fmadd_ps(_mm256_loadu_ps(r[i].as_ptr().add(j)), x_lo, lo[i]);
                        hi[i] = _mm256_fmadd_ps(_mm256_loadu_ps(r[i].as_ptr().add(j + 8)), x_hi, hi[i]);
                    }
                    j += 16;
                }
                for i in 0..4 {
                    block[i] = finish(lo[i], hi[i], &r[i][body..n], &x[body..]);
                }
                o += 4;
            }
            for slot in rows.into_remainder() {
                let row = &w[o * n..(o + 1) * n];
                let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut j = 0;
                while j < body {
                    lo = _mm256_fmadd_ps(_mm256_loadu_ps(row.as_ptr().add(j)), _mm256_loadu_ps(x.as_ptr().add(j)), lo);
                    hi = _mm256_fmadd_ps(_mm256_loadu_ps(row.as_ptr().add(j + 8)), _mm256_loadu_ps(x.as_ptr().add(j + 8)), hi);
                    j += 16;
                }
                *slot = finish(lo, hi, &row[body..], &x[body..]);
                o += 1;
            }
        }
    }

    /// Horizontal sum of `lo + hi` in a fixed order, plus the scalar tail.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish(lo: __m256, hi: __m256, w_tail: &[f32], x_tail: &[f32]) -> f32 {
        let s = _mm256_add_ps(lo, hi);
        let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
        let mut sum = _mm_cvtss_f32(q);
        for (a, b) in w_tail.iter().zip(x_tail) {
            sum = a.mul_add(*b, sum);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(w: &[f32], x: &[f32], rows: usize) -> Vec<f64> {
        (0..rows).map(|o| w[o * x.len()..(o + 1) * x.len()].iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum()).collect()
    }

    #[test]
    fn matches_f64_reference_for_odd_shapes() {
        for (rows, n) in [(1, 1), (3, 7), (4, 16), (5, 17), (9, 33), (13, 384), (4099, 130)] {
            let w: Vec<f32> = (0..rows * n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
            let x: Vec<f32> = (0..n).map(|i| ((i * 104_729 % 997) as f32 / 498.5) - 1.0).collect();
            let mut out = vec![f32::NAN; rows];
            gemv_rows(&w, &x, &mut out);
            for (o, (got, want)) in out.iter().zip(reference(&w, &x, rows)).enumerate() {
                assert!((*got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "rows {rows} n {n} row {o}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_its_block() {
        // Row 5 of a 9-row matrix falls in the second block of four; alone it is a remainder row.
        let n = 50;
        let w: Vec<f32> = (0..9 * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut all = vec![0.0; 9];
        gemv_rows(&w, &x, &mut all);
        let mut one = vec![0.0; 1];
        gemv_rows(&w[5 * n..6 * n], &x, &mut one);
        assert_eq!(all[5].to_bits(), one[0].to_bits());
    }
}
