//! Packing of the GEMM operands: B into panels of [`NR`]-column strips, A into strips of
//! [`MR`] rows, both (kc, width) row-major so the micro-kernel reads them front to back.

use super::super::mat::Mat;
use super::{MR, NR};
use std::arch::x86_64::*;

/// Packs `b[pc .. pc + kc, jc .. jc + nc]` as consecutive strips of NR columns, each strip
/// (kc, NR) row-major; columns past `nc` are zero.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `b` must be a view checked by `Mat::check` that covers
/// rows `pc..pc + kc` and columns `jc..jc + nc`, and `bp` must hold `nc` rounded up to NR times
/// `kc` values.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn pack_b(b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, bp: &mut [f32]) {
    // SAFETY: every source address is an element of `b` inside the block the contract names; the destinations are slices of `bp`, bounds-checked.
    unsafe {
        let base = b.data.as_ptr();
        for (s, jr) in (0..nc).step_by(NR).enumerate() {
            let nr = NR.min(nc - jr);
            let strip = &mut bp[s * kc * NR..(s + 1) * kc * NR];
            for p in 0..kc {
                let row = base.add((pc + p) * b.row_stride + (jc + jr) * b.col_stride);
                let dst = &mut strip[p * NR..(p + 1) * NR];
                if b.col_stride == 1 && nr == NR {
                    std::ptr::copy_nonoverlapping(row, dst.as_mut_ptr(), NR);
                } else {
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = if j < nr { *row.add(j * b.col_stride) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Packs `a[ic .. ic + mc, pc .. pc + kc]` as consecutive strips of MR rows, each strip
/// (kc, MR) row-major (column `i` of step `p` is row `i` of the strip); rows past `mc` are 0.
/// `ap` holds [`A_SLACK`] values past the last strip.
///
/// Packing A touches each of its values once per block of N, so for thin products (W1's
/// head input gradient: N = 128, K = 15000) a scalar copy took ~17% of the GEMM; both common
/// layouts are therefore copied with vector loads.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must be a view checked by `Mat::check` that covers
/// rows `ic..ic + mc` and columns `pc..pc + kc`, and `ap` must hold `mc` rounded up to MR times
/// `kc` values plus [`A_SLACK`].
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn pack_a(a: &Mat, ic: usize, mc: usize, pc: usize, kc: usize, ap: &mut [f32]) {
    // SAFETY: sources are elements of the block of `a` the contract names; destinations are the strips of `ap`, whose size (slack included) the contract gives.
    unsafe {
        let base = a.data.as_ptr();
        let row = |i: usize| base.add((ic + i) * a.row_stride + pc * a.col_stride);
        if a.row_stride == 1 && mc.is_multiple_of(MR) {
            // A transposed view: step p's values of all mc rows are contiguous. One pass over
            // the kc source rows (each read once, front to back) fills every strip.
            for p in 0..kc {
                let src = row(0).add(p * a.col_stride);
                for s in 0..mc / MR {
                    std::ptr::copy_nonoverlapping(src.add(s * MR), ap.as_mut_ptr().add(s * kc * MR + p * MR), MR);
                }
            }
            return;
        }
        for (s, ir) in (0..mc).step_by(MR).enumerate() {
            let mr = MR.min(mc - ir);
            let strip = ap.as_mut_ptr().add(s * kc * MR);
            let row = |i: usize| row(ir + i);
            if mr == MR && a.col_stride == 1 {
                pack_rows_6(std::array::from_fn(row), kc, strip);
            } else if mr == MR && a.row_stride == 1 {
                for p in 0..kc {
                    std::ptr::copy_nonoverlapping(row(0).add(p * a.col_stride), strip.add(p * MR), MR);
                }
            } else {
                for p in 0..kc {
                    for i in 0..MR {
                        *strip.add(p * MR + i) = if i < mr { *row(i).add(p * a.col_stride) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Values past the last packed A strip that [`pack_rows_6`] may overwrite.
pub(super) const A_SLACK: usize = 2;

/// Interleaves six contiguous rows of `kc` values into `strip` (kc, 6): eight steps at a
/// time, as an 8 x 8 transpose of the six rows and two zero rows. Each step's 8-lane store
/// spills 2 values into the next step's slot, which the next store overwrites; the last one
/// spills into [`A_SLACK`] or the next strip (packed after this one).
///
/// # Safety
/// The CPU must support AVX2 and FMA; each of the six row pointers must be readable for `kc`
/// values, and `strip` writable for `kc * MR + A_SLACK` values.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn pack_rows_6(rows: [*const f32; MR], kc: usize, strip: *mut f32) {
    // SAFETY: loads read `rows[i][p..p + 8]` with `p + 8 <= kc`; stores write 8 values at `(p + j) * MR`, the last of which ends at most `A_SLACK` values past `kc * MR`, as the contract allows.
    unsafe {
        let mut p = 0;
        while p + 8 <= kc {
            let r: [__m256; MR] = std::array::from_fn(|i| _mm256_loadu_ps(rows[i].add(p)));
            let z = _mm256_setzero_ps();
            // Standard 8x8 transpose (rows 6 and 7 are zero).
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, z);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, z);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, z);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, z);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (j, col) in cols.iter().enumerate() {
                _mm256_storeu_ps(strip.add((p + j) * MR), *col);
            }
            p += 8;
        }
        for p in p..kc {
            for (i, r) in rows.iter().enumerate() {
                *strip.add(p * MR + i) = *r.add(p);
            }
        }
    }
}
