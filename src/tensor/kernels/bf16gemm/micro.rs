//! The 12 x 32 register-tile micro-kernel of the bf16 GEMM and the loops that walk it over
//! a packed block.
//!
//! One step of the kernel takes two steps of k: two loads of B (32 columns of pairs), then
//! per row of A one broadcast pair and two `vdpbf16ps` — each adds, to 16 fp32 accumulators,
//! the two products of a pair (bf16 products are exact in fp32). 24 accumulators of 16 lanes
//! cover the tile, enough independent chains to hide the instruction's latency.

use super::super::mat::Out;
use super::pack::pairs;
use super::{MR, NR};
use std::arch::x86_64::*;

/// Output rows `ic..ic + mc`, columns `jc..jc + nc`, one block of k, from a packed A block
/// and a packed B panel (strips of NR columns, `pairs(kc) * NR` words apart).
///
/// # Safety
/// The CPU must support AVX512F, AVX512BW, AVX512VL and AVX512_BF16; `ap` must hold the
/// packed A block (`mc` rows rounded up to MR, times `pairs(kc)`), `bp` the packed panel
/// (`nc` columns rounded up to NR, times `pairs(kc)`), and rows `ic..ic + mc`, columns
/// `jc..jc + nc` must lie in `out` and be written by no one else; a `start` row must have at
/// least `jc + nc` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) unsafe fn packed_block(
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
    let kp = pairs(kc);
    // SAFETY: each strip starts `jr * kp` words into the panel (strip `jr / NR`), inside `bp`
    // by the contract; the rows, columns and start row are forwarded within the contract.
    unsafe {
        for jr in (0..nc).step_by(NR) {
            strip_tiles(out, ap, bp.add(jr * kp), ic, mc, jc + jr, NR.min(nc - jr), kp, add, start);
        }
    }
}

/// The MR-row tiles of rows `ic..ic + mc` against one packed B strip (columns `col..col +
/// nr`): the micro-kernel straight into C for full tiles, through a local tile at edges.
///
/// # Safety
/// As [`packed_block`], for one strip of `nr` columns and `kp` packed rows.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn strip_tiles(out: Out, ap: *const u32, b_strip: *const u32, ic: usize, mc: usize, col: usize, nr: usize, kp: usize, add: bool, start: Option<&[f32]>) {
    // SAFETY: full tiles are written in place (in bounds by the contract); edge tiles go
    // through a local MR x NR tile and only their `mr` x `nr` in-bounds part is copied out.
    unsafe {
        for ir in (0..mc).step_by(MR) {
            let mr = MR.min(mc - ir);
            let c = out.ptr.add((ic + ir) * out.row_stride + col);
            let a_strip = ap.add(ir * kp);
            if mr == MR && nr == NR {
                let row0 = start.map_or(std::ptr::null(), |r| r.as_ptr().add(col));
                kernel(kp, a_strip, b_strip, c, out.row_stride, add, row0);
            } else {
                let mut tile = [0.0f32; MR * NR];
                kernel(kp, a_strip, b_strip, tile.as_mut_ptr(), NR, false, std::ptr::null());
                for i in 0..mr {
                    for j in 0..nr {
                        let dst = c.add(i * out.row_stride + j);
                        let base = if add { *dst } else { start.map_or(0.0, |r| r[col + j]) };
                        *dst = base + tile[i * NR + j];
                    }
                }
            }
        }
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
unsafe fn kernel(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, add: bool, row0: *const f32) {
    // SAFETY: `a` advances MR words and `b` NR words per packed row, `kp` rows in all; the C
    // tile is 12 x 32 at stride `rs`, as the contract gives.
    unsafe {
        // The C tile is usually not in cache (outputs are megabytes): fetch its 12 x 2 lines
        // now, so the stores at the end do not stall.
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs + NR - 1) as *const i8);
        }
        let start = if row0.is_null() { [_mm512_setzero_ps(); 2] } else { [_mm512_loadu_ps(row0), _mm512_loadu_ps(row0.add(16))] };
        let mut acc = [start; MR];
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

/// Packed rows (pairs of k) per iteration of the micro-kernel's loop: constant offsets into
/// both packed strips, as in `sgemm`'s kernel.
const UNROLL: usize = 4;
