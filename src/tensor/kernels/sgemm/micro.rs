//! The 6 x 16 register-tile micro-kernel and the loops that walk it over a packed block.

use super::super::mat::{store_edge_tile, Out};
use super::{MR, NR};
use std::arch::x86_64::*;

/// Output rows `ic..ic + mc`, columns `jc..jc + nc` from a packed A block and a packed B
/// panel (strips of NR columns, `kc * NR` values apart).
///
/// # Safety
/// The CPU must support AVX2 and FMA; `ap` must hold the packed A block (`mc` rows rounded
/// up to MR, times `kc`), `bp` the packed panel (`nc` columns rounded up to NR, times `kc`),
/// and rows `ic..ic + mc`, columns `jc..jc + nc` must lie in `out` and be written by no one else.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn packed_block(
    out: Out,
    ap: *const f32,
    bp: *const f32,
    ic: usize,
    mc: usize,
    jc: usize,
    nc: usize,
    kc: usize,
    add: bool,
    start: Option<&[f32]>,
) {
    // SAFETY: each strip starts `jr * kc` values into the panel, inside `bp` by the contract, which `strip_tiles` inherits.
    unsafe {
        for jr in (0..nc).step_by(NR) {
            strip_tiles(out, ap, bp.add(jr * kc), NR, ic, mc, jc + jr, NR.min(nc - jr), kc, add, start);
        }
    }
}

/// The MR-row tiles of rows `ic..ic + mc` against one B strip (columns `col..col + nr`,
/// row stride `b_rs`): the micro-kernel straight into C, or through a scratch tile at edges.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `ap` must hold the packed rows (`mc` rounded up to MR,
/// times `kc`), `b_strip` must be readable for `kc` rows of stride `b_rs` and 16 columns, rows
/// `ic..ic + mc`, columns `col..col + nr` must lie in `out` and be written by no one else, and a
/// `start` row must have at least `col + nr` values (16 past `col` for full tiles).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn strip_tiles(
    out: Out,
    ap: *const f32,
    b_strip: *const f32,
    b_rs: usize,
    ic: usize,
    mc: usize,
    col: usize,
    nr: usize,
    kc: usize,
    add: bool,
    start: Option<&[f32]>,
) {
    // SAFETY: full tiles are written in place (in bounds by the contract); edge tiles go through a local 6 x 16 buffer and only their `mr` x `nr` in-bounds part is copied out.
    unsafe {
        for ir in (0..mc).step_by(MR) {
            let mr = MR.min(mc - ir);
            let c = out.ptr.add((ic + ir) * out.row_stride + col);
            let a_strip = ap.add(ir * kc);
            if mr == MR && nr == NR {
                let row0 = start.map_or(std::ptr::null(), |r| r.as_ptr().add(col));
                kernel_6x16(kc, a_strip, b_strip, b_rs, c, out.row_stride, add, row0);
            } else {
                let mut tile = [0.0f32; MR * NR];
                kernel_6x16(kc, a_strip, b_strip, b_rs, tile.as_mut_ptr(), NR, false, std::ptr::null());
                store_edge_tile(c, out.row_stride, &tile, NR, mr, nr, add, start, col);
            }
        }
    }
}

/// `c (6, 16) = (add ? c : row0 or 0) + a_strip (kc, 6)ᵀ · b_strip (kc, 16)`, where a
/// non-null `row0` points to 16 values every row starts from; `b_strip` has row
/// stride `b_rs` (NR when packed), `c` has row stride `rs`.
///
/// # Safety
/// As [`kernel_body`].
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x16(kc: usize, a: *const f32, b: *const f32, b_rs: usize, c: *mut f32, rs: usize, add: bool, row0: *const f32) {
    // SAFETY: the caller upholds `kernel_body`'s contract, which this forwards unchanged.
    unsafe {
        if b_rs == NR {
            kernel_body::<true>(kc, a, b, NR, c, rs, add, row0)
        } else {
            kernel_body::<false>(kc, a, b, b_rs, c, rs, add, row0)
        }
    }
}

/// [`kernel_6x16`]'s body, its k loop unrolled [`UNROLL`] times. `PACKED` fixes B's row
/// stride at NR, so that every load of the unrolled body has a constant offset. Against the
/// plain loop (same-process alternating calls, W1's head GEMMs), unrolling by 4 with
/// constant offsets ran 5-8% faster; with a run-time B stride ~2%; unrolling by 8 was
/// slower than not unrolling.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must be readable for `kc * MR` values, `b` for `kc`
/// rows of stride `b_rs` and 16 columns, `c` writable (and readable when `add`) for 6 rows of
/// stride `rs` and 16 columns, and a non-null `row0` readable for 16 values.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_body<const PACKED: bool>(kc: usize, mut a: *const f32, mut b: *const f32, b_rs: usize, c: *mut f32, rs: usize, add: bool, row0: *const f32) {
    // SAFETY: every pointer offset below stays inside the extents the contract guarantees: `a` advances MR per step of k, `b` advances `b_rs` per step, and the C tile is 6 x 16.
    unsafe {
        let b_rs = if PACKED { NR } else { b_rs };
        // The C tile is usually not in cache (the outputs are megabytes): start fetching its
        // 6 x 2 lines now, so the stores at the end do not stall. Worth ~20% on W1's head.
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs + NR - 1) as *const i8);
        }
        let start = if row0.is_null() { [_mm256_setzero_ps(); 2] } else { [_mm256_loadu_ps(row0), _mm256_loadu_ps(row0.add(8))] };
        let mut acc = [start; MR];
        // One step of k: two 8-lane B loads, six broadcasts of A, twelve FMAs.
        let step = |acc: &mut [[__m256; 2]; MR], a: *const f32, b: *const f32| {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        };
        for _ in 0..kc / UNROLL {
            for u in 0..UNROLL {
                step(&mut acc, a.add(u * MR), b.add(u * b_rs));
            }
            a = a.add(UNROLL * MR);
            b = b.add(UNROLL * b_rs);
        }
        for _ in 0..kc % UNROLL {
            step(&mut acc, a, b);
            a = a.add(MR);
            b = b.add(b_rs);
        }
        for (i, row) in acc.iter().enumerate() {
            let ci = c.add(i * rs);
            let (mut lo, mut hi) = (row[0], row[1]);
            if add {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(ci));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(ci.add(8)));
            }
            _mm256_storeu_ps(ci, lo);
            _mm256_storeu_ps(ci.add(8), hi);
        }
    }
}

/// Steps of k per iteration of the micro-kernel's loop (see [`kernel_body`]).
const UNROLL: usize = 4;
