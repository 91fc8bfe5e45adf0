//! The 12 x 32 register-tile micro-kernels of the AVX-512 GEMM, one per kind of word, and
//! the loops that walk them over a packed block.
//!
//! fp32: one step of k is two loads of B (32 columns), then per row of A one broadcast
//! and two FMAs. bf16: one step takes two steps of k — per row of A one broadcast pair and
//! two `vdpbf16ps`, each adding to 16 fp32 accumulators the two products of a pair (bf16
//! products are exact in fp32). 24 accumulators of 16 lanes cover the tile, enough
//! independent chains to hide either instruction's latency.

use super::super::mat::{store_edge_tile, Out};
use super::{Words, MR, NR};
use std::arch::x86_64::*;

/// Output rows `ic..ic + mc`, columns `jc..jc + nc`, one block of `kc` steps of k, from a
/// packed A block and a packed B panel (strips of NR columns, `words.words(kc) * NR` words
/// apart).
///
/// # Safety
/// `ap` must hold the packed A block (`mc` rows rounded up to MR, times `words.words(kc)`),
/// `bp` the packed panel (`nc` columns rounded up to NR, times `words.words(kc)`), and rows
/// `ic..ic + mc`, columns `jc..jc + nc` must lie in `out` and be written by no one else; a
/// `start` row must have at least `jc + nc` values.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn packed_block(
    words: Words,
    out: Out,
    ap: *const u32,
    bp: *const u32,
    ic: usize,
    mc: usize,
    jc: usize,
    nc: usize,
    kc: usize,
    add: bool,
    start: Option<&[f32]>,
) {
    let kw = words.words(kc);
    // SAFETY: `words` proves the CPU features of the kind it names; each strip starts
    // `jr * kw` words into the panel (strip `jr / NR`), inside `bp` by the contract; the
    // rows, columns and start row are forwarded within the contract.
    unsafe {
        for jr in (0..nc).step_by(NR) {
            let (b_strip, col, nr) = (bp.add(jr * kw), jc + jr, NR.min(nc - jr));
            match words {
                Words::F32(_) => strip_tiles_f32(out, ap, b_strip, ic, mc, col, nr, kw, add, start),
                Words::Bf16(_) => strip_tiles_bf16(out, ap, b_strip, ic, mc, col, nr, kw, add, start),
            }
        }
    }
}

/// Defines `$name`, the MR-row tiles of rows `ic..ic + mc` against one packed B strip
/// (columns `col..col + nr`, `kw` packed rows) with `$kernel`: the micro-kernel straight
/// into C for full tiles, through a local tile at edges. Compiled with the kernel's
/// features, so that the kernel is inlined into the loop (called across a feature boundary
/// instead, once per tile, the bf16 products ran 10-15% slower).
macro_rules! strip_tiles_with {
    ($name:ident, $features:literal, $kernel:ident) => {
        /// # Safety
        /// The CPU must support the kernel's features; otherwise as [`packed_block`], for one
        /// strip of `nr` columns and `kw` packed rows.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            out: Out,
            ap: *const u32,
            b_strip: *const u32,
            ic: usize,
            mc: usize,
            col: usize,
            nr: usize,
            kw: usize,
            add: bool,
            start: Option<&[f32]>,
        ) {
            // SAFETY: full tiles are written in place (in bounds by the contract); edge tiles
            // go through a local MR x NR tile and only their `mr` x `nr` in-bounds part is
            // copied out.
            unsafe {
                for ir in (0..mc).step_by(MR) {
                    let mr = MR.min(mc - ir);
                    let c = out.ptr.add((ic + ir) * out.row_stride + col);
                    let a_strip = ap.add(ir * kw);
                    if mr == MR && nr == NR {
                        let row0 = start.map_or(std::ptr::null(), |r| r.as_ptr().add(col));
                        $kernel(kw, a_strip.cast(), b_strip.cast(), c, out.row_stride, add, row0);
                    } else {
                        let mut tile = [0.0f32; MR * NR];
                        $kernel(kw, a_strip.cast(), b_strip.cast(), tile.as_mut_ptr(), NR, false, std::ptr::null());
                        store_edge_tile(c, out.row_stride, &tile, NR, mr, nr, add, start, col);
                    }
                }
            }
        }
    };
}

strip_tiles_with!(strip_tiles_f32, "avx512f,avx512vl", kernel_f32);
strip_tiles_with!(strip_tiles_bf16, "avx512f,avx512bw,avx512vl,avx512bf16", kernel_bf16);

/// Prefetches the C tile: it is usually not in cache (outputs are megabytes), so its 12 x 2
/// lines are fetched while the kernel computes and the stores at the end do not stall.
///
/// # Safety
/// The CPU must support AVX-512F; `c` must point into a tile of 12 rows of stride `rs`.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn prefetch_tile(c: *mut f32, rs: usize) {
    for i in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * rs) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * rs + NR - 1) as *const i8);
    }
}

/// Writes the accumulators to the C tile, adding what it holds when `add`.
///
/// # Safety
/// The CPU must support AVX-512F; `c` must be writable (and readable when `add`) for 12 rows
/// of stride `rs` and 32 columns.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn store_tile(acc: &[[__m512; 2]; MR], c: *mut f32, rs: usize, add: bool) {
    // SAFETY: row `i` of the tile is 32 values at `c + i * rs`, inside the tile the contract names.
    unsafe {
        for (i, row) in acc.iter().enumerate() {
            let ci = c.add(i * rs);
            let (mut lo, mut hi) = (row[0], row[1]);
            if add {
                lo = _mm512_add_ps(lo, _mm512_loadu_ps(ci));
                hi = _mm512_add_ps(hi, _mm512_loadu_ps(ci.add(16)));
            }
            _mm512_storeu_ps(ci, lo);
            _mm512_storeu_ps(ci.add(16), hi);
        }
    }
}

/// The accumulators' start: every row from the 32 values at `row0`, or zero when it is null.
///
/// # Safety
/// The CPU must support AVX-512F; a non-null `row0` must be readable for 32 values.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn start_tile(row0: *const f32) -> [[__m512; 2]; MR] {
    // SAFETY: 32 values at a non-null `row0`, by the contract.
    let start = if row0.is_null() { [_mm512_setzero_ps(); 2] } else { unsafe { [_mm512_loadu_ps(row0), _mm512_loadu_ps(row0.add(16))] } };
    [start; MR]
}

/// `c (12, 32) = (add ? c : row0 or 0) + a (kc, 12)ᵀ · b (kc, 32)` in fp32, where a
/// non-null `row0` points to 32 values every row starts from; `c` has row stride `rs`.
///
/// # Safety
/// The CPU must support AVX512F and AVX512VL; `a` must be readable for `kc * MR` values,
/// `b` for `kc * NR` values, `c` writable (and readable when `add`) for 12 rows of stride
/// `rs` and 32 columns, and a non-null `row0` readable for 32 values.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn kernel_f32(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, add: bool, row0: *const f32) {
    // SAFETY: `a` advances MR values and `b` NR values per step of k, `kc` steps in all; the
    // C tile and `row0` are as the contract gives.
    unsafe {
        prefetch_tile(c, rs);
        let mut acc = start_tile(row0);
        let step = |acc: &mut [[__m512; 2]; MR], a: *const f32, b: *const f32| {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
        };
        let (mut a, mut b) = (a, b);
        for _ in 0..kc / UNROLL {
            for u in 0..UNROLL {
                step(&mut acc, a.add(u * MR), b.add(u * NR));
            }
            a = a.add(UNROLL * MR);
            b = b.add(UNROLL * NR);
        }
        for _ in 0..kc % UNROLL {
            step(&mut acc, a, b);
            a = a.add(MR);
            b = b.add(NR);
        }
        store_tile(&acc, c, rs, add);
    }
}

/// `c (12, 32) = (add ? c : row0 or 0) + a (kp, 12 pairs)ᵀ · b (kp, 32 pairs)`, where a
/// non-null `row0` points to 32 values every row starts from; `c` has row stride `rs`.
///
/// # Safety
/// The CPU must support the bf16 kernels' features; `a` must be readable for `kp * MR`
/// words, `b` for `kp * NR` words, `c` writable (and readable when `add`) for 12 rows of
/// stride `rs` and 32 columns, and a non-null `row0` readable for 32 values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
unsafe fn kernel_bf16(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, add: bool, row0: *const f32) {
    // SAFETY: `a` advances MR words and `b` NR words per packed row, `kp` rows in all; the C
    // tile is 12 x 32 at stride `rs`, as the contract gives.
    unsafe {
        prefetch_tile(c, rs);
        let mut acc = start_tile(row0);
        let step = |acc: &mut [[__m512; 2]; MR], a: *const u32, b: *const u32| {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(16).cast()));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], b0, ai);
                row[1] = _mm512_dpbf16_ps(row[1], b1, ai);
            }
        };
        let (mut a, mut b) = (a, b);
        for _ in 0..kp / UNROLL {
            for u in 0..UNROLL {
                step(&mut acc, a.add(u * MR), b.add(u * NR));
            }
            a = a.add(UNROLL * MR);
            b = b.add(UNROLL * NR);
        }
        for _ in 0..kp % UNROLL {
            step(&mut acc, a, b);
            a = a.add(MR);
            b = b.add(NR);
        }
        store_tile(&acc, c, rs, add);
    }
}

/// Packed rows (steps or pairs of k) per iteration of the micro-kernels' loops: constant
/// offsets into both packed strips, as in `sgemm`'s kernel.
const UNROLL: usize = 4;
