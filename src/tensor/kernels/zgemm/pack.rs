//! Packing of the AVX-512 GEMM's operands into 32-bit words ([`Words`]): fp32 values as
//! they are, or fp32 values rounded to bf16 (to nearest, ties to even) and laid out as
//! `vdpbf16ps` reads them, two consecutive steps of k in one word (step 2p in the low half,
//! 2p + 1 in the high half; a missing last step is zero). B is packed in strips of [`NR`]
//! columns, each (words(kc), NR) words row-major; A in strips of [`MR`] rows, each
//! (words(kc), MR) words, so the micro-kernel reads both front to back.
//!
//! Every layout the engine hands over has a vector path: operands whose rows run along the
//! strip (B row-major, A transposed) copy (fp32) or interleave two rows of k at a time
//! (bf16); operands whose rows run along k (A row-major, B transposed) load 8 steps (fp32)
//! or convert 16 steps (bf16) of 8 lines and transpose them 8 x 8. Other strides take a
//! scalar path with the same rounding.

use super::super::bf16::bf16_bits;
use super::super::mat::Mat;
use super::{Words, MR, NR};
use std::arch::x86_64::*;

/// Words of one packed row of pairs for `kc` steps of k.
fn pairs(kc: usize) -> usize {
    kc.div_ceil(2)
}

/// Lane `2j` takes element `j` of the low half, lane `2j + 1` element `j` of the high half.
const INTERLEAVE: [u16; 32] = {
    let mut idx = [0u16; 32];
    let mut j = 0;
    while j < 16 {
        idx[2 * j] = j as u16;
        idx[2 * j + 1] = 16 + j as u16;
        j += 1;
    }
    idx
};

/// The first `n` lanes (n ≤ 16).
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Sixteen pair words from two rows of 16 values: word `j` = (`lo[j]`, `hi[j]`).
///
/// # Safety
/// The CPU must support AVX512F, AVX512BW and AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
unsafe fn interleave(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY: plain register operations; INTERLEAVE is 64 readable bytes.
    unsafe {
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo)); // lo's 16 bf16, then hi's
        _mm512_permutexvar_epi16(_mm512_loadu_si512(INTERLEAVE.as_ptr().cast()), packed)
    }
}

/// Rows of k along the strip: word (p, j) of `dst` (row stride `width`) = (src[2p][j],
/// src[2p + 1][j]) for the `valid` first columns, zero for the others up to `width`. `src`
/// points at (step 0, column 0); steps are `row_stride` apart, columns adjacent.
///
/// # Safety
/// The CPU must support the bf16 kernels' features; `src` must be readable for `kc` rows of
/// `valid` values, `dst` writable for `pairs(kc) * width` words; `width` is a multiple of 4.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
unsafe fn rows_to_pairs(src: *const f32, row_stride: usize, kc: usize, valid: usize, width: usize, dst: *mut u32) {
    // SAFETY: loads are masked to the `valid` columns of existing rows; stores are masked to the `width` words of each packed row, inside `dst` by the contract.
    unsafe {
        for p in 0..pairs(kc) {
            let r0 = src.add(2 * p * row_stride);
            let has_r1 = 2 * p + 1 < kc;
            for c0 in (0..width).step_by(16) {
                let load = lanes(valid.saturating_sub(c0));
                let (lo, hi) = if load == 0 {
                    (_mm512_setzero_ps(), _mm512_setzero_ps())
                } else {
                    let hi = if has_r1 { _mm512_maskz_loadu_ps(load, r0.add(row_stride + c0)) } else { _mm512_setzero_ps() };
                    (_mm512_maskz_loadu_ps(load, r0.add(c0)), hi)
                };
                _mm512_mask_storeu_epi32(dst.add(p * width + c0).cast(), lanes(width - c0), interleave(lo, hi));
            }
        }
    }
}

/// The 8 x 8 transpose of 32-bit words: row `i` of the result holds word `i` of each input.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// Lines along k: word (p, l) of `dst` (row stride `width`) = (line l [2p], line l [2p + 1])
/// for the `valid` first lines, zero for the others up to `width`. `src` points at (line 0,
/// step 0); lines are `line_stride` apart, steps adjacent.
///
/// # Safety
/// The CPU must support the bf16 kernels' features; `src` must be readable for `valid`
/// lines of `kc` values, `dst` writable for `pairs(kc) * width` words; `width` is a
/// multiple of 4.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
unsafe fn lines_to_pairs(src: *const f32, line_stride: usize, kc: usize, valid: usize, width: usize, dst: *mut u32) {
    // SAFETY: loads are masked to the `kc` steps of the `valid` lines; stores write the first `min(8, width - g0)` words of packed rows that exist (p < pairs(kc)), inside `dst`.
    unsafe {
        let kp = pairs(kc);
        for g0 in (0..width).step_by(8) {
            let store = (lanes(width - g0) & 0xFF) as __mmask8;
            for q0 in (0..kp).step_by(8) {
                let load = lanes(kc - 2 * q0);
                let lines: [__m256i; 8] = std::array::from_fn(|l| {
                    if g0 + l < valid {
                        std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(load, src.add((g0 + l) * line_stride + 2 * q0))))
                    } else {
                        _mm256_setzero_si256()
                    }
                });
                for (q, row) in transpose8(lines).into_iter().enumerate().take(kp - q0) {
                    _mm256_mask_storeu_epi32(dst.add((q0 + q) * width + g0).cast(), store, row);
                }
            }
        }
    }
}

/// fp32 rows of k along the strip: word (s, j) of `dst` (row stride `width`) = src[s][j] for
/// the `valid` first columns, zero for the others up to `width`. `src` points at (step 0,
/// column 0); steps are `row_stride` apart, columns adjacent.
///
/// # Safety
/// The CPU must support AVX512F and AVX512VL; `src` must be readable for `kc` rows of
/// `valid` values, `dst` writable for `kc * width` words.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn rows_to_words(src: *const f32, row_stride: usize, kc: usize, valid: usize, width: usize, dst: *mut u32) {
    // SAFETY: loads are masked to the `valid` columns of the `kc` rows; stores are masked to
    // the `width` words of each packed row, inside `dst` by the contract.
    unsafe {
        for s in 0..kc {
            let row = src.add(s * row_stride);
            for c0 in (0..width).step_by(16) {
                let v = _mm512_maskz_loadu_ps(lanes(valid.saturating_sub(c0)), row.add(c0));
                _mm512_mask_storeu_ps(dst.add(s * width + c0).cast(), lanes(width - c0), v);
            }
        }
    }
}

/// fp32 lines along k: word (s, l) of `dst` (row stride `width`) = line l [s] for the `valid`
/// first lines, zero for the others up to `width`. `src` points at (line 0, step 0); lines
/// are `line_stride` apart, steps adjacent.
///
/// # Safety
/// The CPU must support AVX512F and AVX512VL; `src` must be readable for `valid` lines of
/// `kc` values, `dst` writable for `kc * width` words.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn lines_to_words(src: *const f32, line_stride: usize, kc: usize, valid: usize, width: usize, dst: *mut u32) {
    // SAFETY: loads are masked to the `kc` steps of the `valid` lines; stores write the first
    // `min(8, width - g0)` words of packed rows that exist (s < kc), inside `dst`.
    unsafe {
        for g0 in (0..width).step_by(8) {
            let store = (lanes(width - g0) & 0xFF) as __mmask8;
            for s0 in (0..kc).step_by(8) {
                let load = (lanes(kc - s0) & 0xFF) as __mmask8;
                let lines: [__m256i; 8] = std::array::from_fn(|l| {
                    if g0 + l < valid {
                        _mm256_castps_si256(_mm256_maskz_loadu_ps(load, src.add((g0 + l) * line_stride + s0)))
                    } else {
                        _mm256_setzero_si256()
                    }
                });
                for (s, row) in transpose8(lines).into_iter().enumerate().take(kc - s0) {
                    _mm256_mask_storeu_epi32(dst.add((s0 + s) * width + g0).cast(), store, row);
                }
            }
        }
    }
}

/// fp32, any strides: element (step s, column j) at `src + s * s_stride + j * j_stride`.
///
/// # Safety
/// `src` must be readable at every such element for `s < kc`, `j < valid`, and `dst`
/// writable for `kc * width` words.
unsafe fn strided_to_words(src: *const f32, s_stride: usize, j_stride: usize, kc: usize, valid: usize, width: usize, dst: *mut u32) {
    // SAFETY: reads only the elements the contract names; writes `kc * width` words.
    unsafe {
        for s in 0..kc {
            for j in 0..width {
                *dst.add(s * width + j) = if j < valid { (*src.add(s * s_stride + j * j_stride)).to_bits() } else { 0 };
            }
        }
    }
}

/// bf16 pairs, any strides: element (step s, column j) at `src + s * s_stride + j * j_stride`.
///
/// # Safety
/// `src` must be readable at every such element for `s < kc`, `j < valid`, and `dst`
/// writable for `pairs(kc) * width` words.
unsafe fn strided_to_pairs(src: *const f32, s_stride: usize, j_stride: usize, kc: usize, valid: usize, width: usize, dst: *mut u32) {
    // SAFETY: reads only the elements the contract names; writes `pairs(kc) * width` words.
    unsafe {
        let at = |s: usize, j: usize| if s < kc && j < valid { u32::from(bf16_bits(*src.add(s * s_stride + j * j_stride))) } else { 0 };
        for p in 0..pairs(kc) {
            for j in 0..width {
                *dst.add(p * width + j) = at(2 * p, j) | at(2 * p + 1, j) << 16;
            }
        }
    }
}

/// Defines `$pack_b` and `$pack_a` for one kind of word, compiled with its packers'
/// features so that the packers are inlined with the strip widths (NR, MR) as constants:
/// called through pointers instead, with run-time widths, the products of a transposed A
/// (weight gradients) ran up to a third slower.
macro_rules! packing_for {
    ($pack_b:ident, $pack_a:ident, $features:literal, $words:expr, $along:ident, $across:ident, $strided:ident) => {
        /// Packs `b[pc .. pc + kc, jc .. jc + nc]` as consecutive strips of NR columns, each
        /// (words(kc), NR) words; columns past `nc` are zero.
        ///
        /// # Safety
        /// The CPU must support the packers' features; `b` must be a view checked by
        /// `Mat::check` that covers rows `pc..pc + kc` and columns `jc..jc + nc`, and `bp`
        /// must hold `nc` rounded up to NR times words(kc) words.
        #[target_feature(enable = $features)]
        unsafe fn $pack_b(b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, bp: &mut [u32]) {
            let kw = $words(kc);
            assert!(bp.len() >= nc.div_ceil(NR) * NR * kw, "pack_b: buffer too small");
            // SAFETY: each strip reads the block of `b` the contract names and writes its own
            // `kw * NR` words of `bp` (asserted above).
            unsafe {
                for (s, jr) in (0..nc).step_by(NR).enumerate() {
                    let nr = NR.min(nc - jr);
                    let src = b.data.as_ptr().add(pc * b.row_stride + (jc + jr) * b.col_stride);
                    let dst = bp.as_mut_ptr().add(s * kw * NR);
                    if b.col_stride == 1 {
                        $along(src, b.row_stride, kc, nr, NR, dst);
                    } else if b.row_stride == 1 {
                        $across(src, b.col_stride, kc, nr, NR, dst);
                    } else {
                        $strided(src, b.row_stride, b.col_stride, kc, nr, NR, dst);
                    }
                }
            }
        }

        /// Packs `a[ic .. ic + mc, pc .. pc + kc]` as consecutive strips of MR rows, each
        /// (words(kc), MR) words; rows past `mc` are zero.
        ///
        /// # Safety
        /// The CPU must support the packers' features; `a` must be a view checked by
        /// `Mat::check` that covers rows `ic..ic + mc` and columns `pc..pc + kc`, and `ap`
        /// must hold `mc` rounded up to MR times words(kc) words.
        #[target_feature(enable = $features)]
        unsafe fn $pack_a(a: &Mat, ic: usize, mc: usize, pc: usize, kc: usize, ap: &mut [u32]) {
            let kw = $words(kc);
            assert!(ap.len() >= mc.div_ceil(MR) * MR * kw, "pack_a: buffer too small");
            // SAFETY: as in the B packer, for strips of MR rows.
            unsafe {
                for (s, ir) in (0..mc).step_by(MR).enumerate() {
                    let mr = MR.min(mc - ir);
                    let src = a.data.as_ptr().add((ic + ir) * a.row_stride + pc * a.col_stride);
                    let dst = ap.as_mut_ptr().add(s * kw * MR);
                    if a.col_stride == 1 {
                        $across(src, a.row_stride, kc, mr, MR, dst);
                    } else if a.row_stride == 1 {
                        $along(src, a.col_stride, kc, mr, MR, dst);
                    } else {
                        $strided(src, a.col_stride, a.row_stride, kc, mr, MR, dst);
                    }
                }
            }
        }
    };
}

packing_for!(pack_b_f32, pack_a_f32, "avx512f,avx512vl", |kc: usize| kc, rows_to_words, lines_to_words, strided_to_words);
packing_for!(pack_b_bf16, pack_a_bf16, "avx512f,avx512bw,avx512vl,avx512bf16", pairs, rows_to_pairs, lines_to_pairs, strided_to_pairs);

/// Packs `b[pc .. pc + kc, jc .. jc + nc]` as consecutive strips of NR columns, each
/// (words(kc), NR) words; columns past `nc` are zero.
///
/// # Safety
/// `b` must be a view checked by `Mat::check` that covers rows `pc..pc + kc` and columns
/// `jc..jc + nc`, and `bp` must hold `nc` rounded up to NR times `words.words(kc)` words.
pub(super) unsafe fn pack_b(words: Words, b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, bp: &mut [u32]) {
    // SAFETY: `words` proves the packers' CPU features; the rest is the caller's contract.
    unsafe {
        match words {
            Words::F32(_) => pack_b_f32(b, pc, kc, jc, nc, bp),
            Words::Bf16(_) => pack_b_bf16(b, pc, kc, jc, nc, bp),
        }
    }
}

/// Packs `a[ic .. ic + mc, pc .. pc + kc]` as consecutive strips of MR rows, each
/// (words(kc), MR) words; rows past `mc` are zero.
///
/// # Safety
/// `a` must be a view checked by `Mat::check` that covers rows `ic..ic + mc` and columns
/// `pc..pc + kc`, and `ap` must hold `mc` rounded up to MR times `words.words(kc)` words.
pub(super) unsafe fn pack_a(words: Words, a: &Mat, ic: usize, mc: usize, pc: usize, kc: usize, ap: &mut [u32]) {
    // SAFETY: `words` proves the packers' CPU features; the rest is the caller's contract.
    unsafe {
        match words {
            Words::F32(_) => pack_a_f32(a, ic, mc, pc, kc, ap),
            Words::Bf16(_) => pack_a_bf16(a, ic, mc, pc, kc, ap),
        }
    }
}
