//! f32 GEMM for x86-64 CPUs with AVX2 and FMA, in the BLIS layout: B is packed in panels
//! of 16 columns, A in strips of 6 rows, and a 6 x 16 register-tile micro-kernel does
//! the arithmetic (12 accumulators, 2 loads and 6 broadcasts per step of k).
//!
//! On this project's AMD Zen 3 machines (FMA peak ~98 GFLOP/s per core) the `gemm` crate
//! reached ~60 GFLOP/s per core on W1's head GEMMs and this one 65–90, depending on how
//! busy the shared machine is: the micro-kernel alone runs at ~90% of peak, and prefetching
//! the C tile (megabytes of output that are not in cache) is what lifts the whole GEMM past
//! the crate. Unrolling the kernel's k loop by 4 with constant offsets into the packed B
//! strip added 5-8% on those GEMMs (not in cache: more loads in flight at once), reaching
//! 145-165 GFLOP/s on two cores. The conv GEMMs of the benchmark workloads are all
//! (m, k, n) with k in the hundreds, which this layout suits.
//!
//! Every output element is reduced over k in the same order (blocks of [`KC`], ascending)
//! however the work is split between threads, so results do not depend on the thread count.

mod micro;
mod pack;
#[cfg(test)]
mod tests;

use super::mat::{Init, Mat, Out, EPILOGUE_ROWS};
use micro::{packed_block, strip_tiles};
use pack::{pack_a, pack_b, A_SLACK};
use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of the register tile (two 8-lane vectors).
const NR: usize = 16;
/// Depth of one packed block: a 24 KB B strip stays in L1 across the micro-kernel loop, and
/// K = 384 (every W1 conv's K·C_in) is one block, so C is read and written once. Measured
/// against 256 and 320 in same-process alternating runs: 3-10% faster on W1's shapes.
const KC: usize = 384;
/// Rows of A packed at once (~150 KB at KC = 384: fits the 512 KB L2 with room for B).
const MC: usize = 96;
/// Up to this many rows of A, B is read in place instead of packed.
const DIRECT_B_MAX_ROWS: usize = 4 * MR;
/// Columns of B packed at once (~4.5 MB at KC = 384: lives in L3).
const NC: usize = 3072;

/// Whether this CPU can run [`gemm`].
pub fn available() -> bool {
    crate::tensor::cpu::avx2_fma().is_some()
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` where `init` says what `start` is, on `threads`
/// threads. Tall, shallow products share one packed B panel and hand out blocks of MC rows
/// to whichever thread is free (a fixed half each left one thread idle whenever the machine
/// slowed the other); the rest split the output into `threads` blocks along its longer side.
///
/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]); the views must be in bounds and
/// `dst` must hold `(m - 1) * dst_row_stride + n` elements (the caller, `matmul`, checks
/// both).
pub unsafe fn gemm(dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, threads: usize) {
    let (m, n) = (a.rows, b.cols);
    let out = Out { ptr: dst.as_mut_ptr(), row_stride: dst_row_stride };
    let threads = threads.max(1);
    if threads == 1 {
        // SAFETY: the caller's contract (CPU features, views in bounds, dst large enough).
        unsafe { gemm_block(out, a, b, 0..m, 0..n, init) };
        return;
    }
    // The shared panel costs two fork-joins per block of k; deep products (W1's head
    // gradients, k in the thousands) measured faster with a fixed split.
    if m >= 2 * MC * threads && a.cols <= 2 * KC {
        // SAFETY: the caller's contract (CPU features, views in bounds, dst large enough).
        unsafe { gemm_shared(out, a, b, init) };
        return;
    }
    let split_rows = m >= n;
    let (len, unit) = if split_rows { (m, MR) } else { (n, NR) };
    let per = len.div_ceil(threads).div_ceil(unit) * unit;
    (0..len.div_ceil(per)).into_par_iter().for_each(|piece| {
        let range = piece * per..((piece + 1) * per).min(len);
        // SAFETY: pieces cover disjoint rows (or columns) of `dst`.
        unsafe {
            if split_rows {
                gemm_block(out, a, b, range, 0..n, init);
            } else {
                gemm_block(out, a, b, 0..m, range, init);
            }
        }
    });
}

/// One thread's block of the output: rows `rows`, columns `cols`.
///
/// # Safety
/// As [`gemm`], for rows `rows` and columns `cols` of the output, which no other thread may
/// write during the call.
unsafe fn gemm_block(out: Out, a: Mat, b: Mat, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, init: Init) {
    PACK_BUFFERS.with(|cell| {
        let mut buffers = cell.borrow_mut();
        let (ap, bp) = &mut *buffers;
        let kc = KC.min(a.cols);
        ap.resize(ap.len().max(MC.min(rows.len().next_multiple_of(MR)) * kc + A_SLACK), 0.0);
        bp.resize(bp.len().max(NC.min(cols.len().next_multiple_of(NR)) * kc), 0.0);
        // SAFETY: the caller's contract; the buffers were just sized for this block.
        unsafe { gemm_block_with(out, a, b, rows, cols, init, ap, bp) };
    });
}

thread_local! {
    /// Per-thread packing buffers (A block, B panel), kept between calls: allocating and
    /// zeroing them per call cost more than packing for the small per-item GEMMs.
    static PACK_BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// # Safety
/// As [`gemm_block`], with `ap` and `bp` sized for one MC x KC block of A and one KC x NC
/// panel of B (plus [`A_SLACK`]).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_block_with(out: Out, a: Mat, b: Mat, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, init: Init, ap: &mut [f32], bp: &mut [f32]) {
    // SAFETY: the blocks of k, rows and columns walked below stay inside the views and the output rows the contract names, the packing buffers hold a block each, and unpacked strips of B are only read in place when all 16 of their columns exist (`nr == NR`).
    unsafe {
        let k = a.cols;
        // With few rows of A a packed B panel is not reused enough to pay for packing it: full
        // strips of a row-major B are then read in place.
        let direct_b = b.col_stride == 1 && rows.len() <= DIRECT_B_MAX_ROWS;
        for jc in cols.clone().step_by(NC) {
            let nc = NC.min(cols.end - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let (add, start) = init.block_start(pc);
                if !direct_b {
                    pack_b(&b, pc, kc, jc, nc, bp);
                }
                for ic in rows.clone().step_by(MC) {
                    let mc = MC.min(rows.end - ic);
                    pack_a(&a, ic, mc, pc, kc, ap);
                    if !direct_b {
                        packed_block(out, ap.as_ptr(), bp.as_ptr(), ic, mc, jc, nc, kc, add, start);
                        continue;
                    }
                    for jr in (0..nc).step_by(NR) {
                        let nr = NR.min(nc - jr);
                        let (b_strip, b_rs) = if nr == NR {
                            (b.data.as_ptr().add(pc * b.row_stride + jc + jr), b.row_stride)
                        } else {
                            pack_b(&b, pc, kc, jc + jr, nr, bp);
                            (bp.as_ptr(), NR)
                        };
                        strip_tiles(out, ap.as_ptr(), b_strip, b_rs, ic, mc, jc + jr, nr, kc, add, start);
                    }
                }
            }
        }
    }
}

/// A packed B panel shared by the threads of one product (read-only while they use it).
#[derive(Clone, Copy)]
struct Panel(*const f32);
// SAFETY: the panel is fully written before the parallel loop starts, only read in it, and
// outlives it (the loop joins before the buffer is touched again).
unsafe impl Send for Panel {}
// SAFETY: as for `Send`: while shared, the panel is read-only.
unsafe impl Sync for Panel {}

/// The shared B panel buffer, kept between calls; a product that finds it in use (two tall
/// products at once) allocates its own.
static SHARED_PANEL: std::sync::Mutex<Vec<f32>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` with a shared panel buffer of at least `len` values.
fn with_shared_panel<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut guard = SHARED_PANEL.try_lock().ok();
    let mut own = Vec::new();
    let bp: &mut Vec<f32> = match guard.as_deref_mut() {
        Some(v) => v,
        None => &mut own,
    };
    if bp.len() < len {
        bp.resize(len, 0.0);
    }
    f(bp)
}

/// Packs `b[pc .. pc + kc, jc .. jc + nc]` into `bp` as [`pack_b`] does, one strip per task
/// when `parallel`.
///
/// # Safety
/// As [`pack_b`] for the whole panel: the CPU supports AVX2 and FMA, `b` covers the block, and
/// `bp` holds `nc` rounded up to NR times `kc` values.
unsafe fn pack_panel(b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, bp: &mut [f32], parallel: bool) {
    let pack = |(s, strip): (usize, &mut [f32])| {
        // SAFETY: the caller's contract (CPU features, `b` covers the block); each strip is a
        // `kc * NR` chunk of `bp`.
        unsafe { pack_b(b, pc, kc, jc + s * NR, NR.min(nc - s * NR), strip) }
    };
    let strips = &mut bp[..nc.div_ceil(NR) * NR * kc];
    if parallel {
        strips.par_chunks_mut(kc * NR).enumerate().for_each(pack);
    } else {
        strips.chunks_mut(kc * NR).enumerate().for_each(pack);
    }
}

/// Output rows `ic..ic + mc`, columns `jc..jc + nc`, block of k `pc..pc + kc`, from a packed
/// B panel: packs the rows of A into this thread's buffer and runs the micro-kernel.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must cover rows `ic..ic + mc` and columns
/// `pc..pc + kc`; `panel` must hold the packed panel of B for columns `jc..jc + nc` and stay
/// unchanged during the call; rows `ic..ic + mc` of `out` must be written by no one else.
#[allow(clippy::too_many_arguments)]
unsafe fn row_block(out: Out, a: &Mat, panel: Panel, ic: usize, mc: usize, jc: usize, nc: usize, pc: usize, kc: usize, add: bool, start: Option<&[f32]>) {
    PACK_BUFFERS.with(|cell| {
        let ap = &mut cell.borrow_mut().0;
        ap.resize(ap.len().max(mc.next_multiple_of(MR) * kc + A_SLACK), 0.0);
        // SAFETY: the caller's contract; `ap` was just sized for `mc` rows of `kc` values.
        unsafe {
            pack_a(a, ic, mc, pc, kc, ap);
            packed_block(out, ap.as_ptr(), panel.0, ic, mc, jc, nc, kc, add, start);
        }
    });
}

/// Tall products (see [`gemm`]): per block of B, the threads pack its strips together, then
/// take blocks of MC rows of A as they become free. Every output value is still reduced in
/// the same order, block of k by block of k.
///
/// # Safety
/// As [`gemm`] (the output is dense, row stride n).
unsafe fn gemm_shared(out: Out, a: Mat, b: Mat, init: Init) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    with_shared_panel(NC.min(n.next_multiple_of(NR)) * KC.min(k), |bp| {
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let (add, start) = init.block_start(pc);
                // SAFETY: the caller's contract; `bp` was sized for one panel.
                unsafe { pack_panel(&b, pc, kc, jc, nc, bp, true) };
                let panel = Panel(bp.as_ptr());
                (0..m.div_ceil(MC)).into_par_iter().for_each(|block| {
                    let ic = block * MC;
                    // SAFETY: blocks write disjoint rows of `out`.
                    unsafe { row_block(out, &a, panel, ic, MC.min(m - ic), jc, nc, pc, kc, add, start) };
                });
            }
        }
    });
}

/// Whether [`gemm_then`] takes products with inner dimension `k` (one block of k).
pub fn fuses_epilogue(k: usize) -> bool {
    k <= KC
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` (`dst` row stride n), then
/// `epilogue(block, rows)` on each block of [`EPILOGUE_ROWS`] rows, on the thread that
/// computed it and as soon as its values are final, while they are still in cache.
///
/// One packed panel holds all of B, so each block of rows is finished in one pass.
///
/// # Safety
/// As [`gemm`], with `dst` holding `m * n` values and `k` ≤ [`KC`] ([`fuses_epilogue`]).
pub unsafe fn gemm_then(dst: &mut [f32], a: Mat, b: Mat, init: Init, threads: usize, epilogue: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let rows = EPILOGUE_ROWS;
    let parallel = threads > 1;
    debug_assert!(fuses_epilogue(k), "gemm_then: k = {k} > KC");
    let out = Out { ptr: dst.as_mut_ptr(), row_stride: n };
    let (add, start) = init.block_start(0);
    with_shared_panel(n.next_multiple_of(NR) * k, |bp| {
        // SAFETY: the caller's contract; `bp` was sized for the whole of B (k <= KC).
        unsafe { pack_panel(&b, 0, k, 0, n, bp, parallel) };
        let panel = Panel(bp.as_ptr());
        let run = |block: usize| {
            let (ic, mc) = (block * rows, rows.min(m - block * rows));
            // SAFETY: blocks write, then hand out, disjoint rows of `dst` (row stride n).
            unsafe {
                row_block(out, &a, panel, ic, mc, 0, n, 0, k, add, start);
                epilogue(block, out.rows_mut(ic, mc));
            }
        };
        if parallel {
            (0..m.div_ceil(rows)).into_par_iter().for_each(run);
        } else {
            (0..m.div_ceil(rows)).for_each(run);
        }
    });
}
