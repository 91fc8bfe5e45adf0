//! GEMM for x86-64 CPUs with AVX-512, on 32-bit words of either kind ([`Words`]): fp32
//! values (`dst = start + a · b` in fp32), or pairs of bf16 values — both operands rounded
//! to bf16 (to nearest, ties to even) as they are packed, products accumulated in fp32 by
//! `vdpbf16ps`: torch.autocast's bf16 matmul, except that the output stays fp32.
//!
//! The BLIS layout: B packed in panels of [`NR`] = 32 columns, A in strips of [`MR`] = 12
//! rows (bf16 as pairs of consecutive k, `pack`), and a 12 x 32 register tile of 24
//! accumulators of 16 lanes (`micro`). One driver serves both kinds: they differ only in
//! how a word is packed and multiplied, and in the depth of a block of k ([`Words::kc`]).
//!
//! Every output element is reduced over k in the same order (blocks of k ascending, steps
//! or pairs ascending within a block) however the work is split between threads, so
//! results do not depend on the thread count.

mod micro;
mod pack;
#[cfg(test)]
mod tests;

use super::mat::{Init, Mat, Out, EPILOGUE_ROWS};
use crate::tensor::cpu::{Avx512, Avx512Bf16};
use micro::packed_block;
use pack::{pack_a, pack_b};
use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile (two 16-lane vectors).
const NR: usize = 32;
/// Rows of A packed at once (16 tiles, ~200-300 KB of words: stays in L2 with B's strip).
const MC: usize = 16 * MR;
/// Columns of B packed at once (~3-5 MB of words: lives in L3).
const NC: usize = 3072;

/// What a packed 32-bit word holds, with the proof that the CPU runs its kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Words {
    /// One fp32 value per step of k.
    F32(Avx512),
    /// Two consecutive steps of k as bf16 (`vdpbf16ps`'s pairs).
    Bf16(Avx512Bf16),
}

impl Words {
    /// Steps of k per packed block. bf16: 512 (a 32 KB B strip of pairs): against 384, one
    /// block for W4's k = 512 products took (4096·512·128) from 87 to 112 GFLOP/s and the
    /// others gained 3-10% (one thread's CPU time, alternating with fp32, Zen 5); 768
    /// measured the same. fp32: 384 (a 48 KB strip), so that every W1 conv's K·C_in and its
    /// head's (384) is one block, whose output is written once and can be finished by a
    /// fused epilogue ([`gemm_then`]).
    pub(super) fn kc(self) -> usize {
        match self {
            Words::F32(_) => 384,
            Words::Bf16(_) => 512,
        }
    }

    /// Words of one packed row (of MR or NR lanes) for `kc` steps of k.
    pub(super) fn words(self, kc: usize) -> usize {
        match self {
            Words::F32(_) => kc,
            Words::Bf16(_) => kc.div_ceil(2),
        }
    }
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` computed as `words` says, where `init` says
/// what `start` is, on `threads` threads: tall, shallow products share one packed B
/// panel and hand out blocks of MC rows to whichever thread is free; the others split the
/// output into `threads` blocks along its longer side.
///
/// # Safety
/// The views must be in bounds and `dst` must hold `(m - 1) * dst_row_stride + n` elements
/// (the caller, `matmul`, checks both); `dst` must not overlap `a` or `b`.
pub unsafe fn gemm(words: Words, dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, threads: usize) {
    let (m, n) = (a.rows, b.cols);
    let out = Out { ptr: dst.as_mut_ptr(), row_stride: dst_row_stride };
    let threads = threads.max(1);
    if threads == 1 {
        // SAFETY: the caller's contract; `words` proves the CPU features.
        unsafe { gemm_block(words, out, a, b, 0..m, 0..n, init) };
        return;
    }
    if m >= 2 * MC * threads && a.cols <= 2 * words.kc() {
        // SAFETY: the caller's contract; `words` proves the CPU features.
        unsafe { gemm_shared(words, out, a, b, init) };
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
                gemm_block(words, out, a, b, range, 0..n, init);
            } else {
                gemm_block(words, out, a, b, 0..m, range, init);
            }
        }
    });
}

thread_local! {
    /// Per-thread packing buffers (A block, B panel), kept between calls.
    static PACK_BUFFERS: std::cell::RefCell<(Vec<u32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// One thread's block of the output: rows `rows`, columns `cols`.
///
/// # Safety
/// As [`gemm`], for rows `rows` and columns `cols` of the output, which no other thread may
/// write during the call.
unsafe fn gemm_block(words: Words, out: Out, a: Mat, b: Mat, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, init: Init) {
    PACK_BUFFERS.with(|cell| {
        let mut buffers = cell.borrow_mut();
        let (ap, bp) = &mut *buffers;
        let kw = words.words(words.kc().min(a.cols));
        grow(ap, MC.min(rows.len().next_multiple_of(MR)) * kw);
        grow(bp, NC.min(cols.len().next_multiple_of(NR)) * kw);
        // SAFETY: the caller's contract; the buffers were just sized for this block.
        unsafe { gemm_block_with(words, out, a, b, rows, cols, init, ap, bp) };
    });
}

/// Grows `buf` to at least `len` words.
fn grow(buf: &mut Vec<u32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// # Safety
/// As [`gemm_block`], with `ap` and `bp` sized for one MC x KC block of A and one KC x NC
/// panel of B.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block_with(
    words: Words,
    out: Out,
    a: Mat,
    b: Mat,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    init: Init,
    ap: &mut [u32],
    bp: &mut [u32],
) {
    let (k, block) = (a.cols, words.kc());
    for jc in cols.clone().step_by(NC) {
        let nc = NC.min(cols.end - jc);
        for pc in (0..k).step_by(block) {
            let kc = block.min(k - pc);
            let (add, start) = init.block_start(pc);
            // SAFETY: `words` proves the CPU features; the blocks of k, rows and columns
            // stay inside the views and the output rows the contract names, and the buffers
            // hold a block each.
            unsafe {
                pack_b(words, &b, pc, kc, jc, nc, bp);
                for ic in rows.clone().step_by(MC) {
                    let mc = MC.min(rows.end - ic);
                    pack_a(words, &a, ic, mc, pc, kc, ap);
                    packed_block(words, out, ap.as_ptr(), bp.as_ptr(), ic, mc, jc, nc, kc, add, start);
                }
            }
        }
    }
}

/// A packed B panel shared by the threads of one product (read-only while they use it).
#[derive(Clone, Copy)]
struct Panel(*const u32);
// SAFETY: the panel is fully written before the parallel loop starts, only read in it, and
// outlives it (the loop joins before the buffer is touched again).
unsafe impl Send for Panel {}
// SAFETY: as for `Send`: while shared, the panel is read-only.
unsafe impl Sync for Panel {}

/// The shared B panel buffer, kept between calls; a product that finds it in use (two tall
/// products at once) allocates its own.
static SHARED_PANEL: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` with a shared panel buffer of at least `len` words.
fn with_shared_panel<R>(len: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    let mut guard = SHARED_PANEL.try_lock().ok();
    let mut own = Vec::new();
    let bp: &mut Vec<u32> = match guard.as_deref_mut() {
        Some(v) => v,
        None => &mut own,
    };
    grow(bp, len);
    f(bp)
}

/// Packs `b[pc .. pc + kc, jc .. jc + nc]` into `bp` as [`pack_b`] does, one strip per task
/// when `parallel`.
///
/// # Safety
/// As [`pack_b`] for the whole panel.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_panel(words: Words, b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, bp: &mut [u32], parallel: bool) {
    let kw = words.words(kc);
    let pack = |(s, strip): (usize, &mut [u32])| {
        // SAFETY: the caller's contract (`words` proves the CPU features, `b` covers the
        // block); each strip is a `kw * NR` chunk of `bp`.
        unsafe { pack_b(words, b, pc, kc, jc + s * NR, NR.min(nc - s * NR), strip) }
    };
    let strips = &mut bp[..nc.div_ceil(NR) * NR * kw];
    if parallel {
        strips.par_chunks_mut(kw * NR).enumerate().for_each(pack);
    } else {
        strips.chunks_mut(kw * NR).enumerate().for_each(pack);
    }
}

/// Output rows `ic..ic + mc`, columns `jc..jc + nc`, block of k `pc..pc + kc`, from a packed
/// B panel: packs the rows of A into this thread's buffer and runs the micro-kernel.
///
/// # Safety
/// `a` must cover rows `ic..ic + mc` and columns `pc..pc + kc`; `panel` must hold the packed
/// panel of B for columns `jc..jc + nc` and stay unchanged during the call; rows
/// `ic..ic + mc` of `out` must be written by no one else.
#[allow(clippy::too_many_arguments)]
unsafe fn row_block(
    words: Words,
    out: Out,
    a: &Mat,
    panel: Panel,
    ic: usize,
    mc: usize,
    jc: usize,
    nc: usize,
    pc: usize,
    kc: usize,
    add: bool,
    start: Option<&[f32]>,
) {
    PACK_BUFFERS.with(|cell| {
        let ap = &mut cell.borrow_mut().0;
        grow(ap, mc.next_multiple_of(MR) * words.words(kc));
        // SAFETY: the caller's contract; `words` proves the CPU features; `ap` was just
        // sized for `mc` rows of `kc` steps.
        unsafe {
            pack_a(words, a, ic, mc, pc, kc, ap);
            packed_block(words, out, ap.as_ptr(), panel.0, ic, mc, jc, nc, kc, add, start);
        }
    });
}

/// Tall products (see [`gemm`]): per block of B, the threads pack its strips together, then
/// take blocks of MC rows of A as they become free.
///
/// # Safety
/// As [`gemm`].
unsafe fn gemm_shared(words: Words, out: Out, a: Mat, b: Mat, init: Init) {
    let (m, n, k, block) = (a.rows, b.cols, a.cols, words.kc());
    with_shared_panel(NC.min(n.next_multiple_of(NR)) * words.words(block.min(k)), |bp| {
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(block) {
                let kc = block.min(k - pc);
                let (add, start) = init.block_start(pc);
                // SAFETY: the caller's contract; `bp` was sized for one panel.
                unsafe { pack_panel(words, &b, pc, kc, jc, nc, bp, true) };
                let panel = Panel(bp.as_ptr());
                (0..m.div_ceil(MC)).into_par_iter().for_each(|block| {
                    let ic = block * MC;
                    // SAFETY: blocks write disjoint rows of `out`.
                    unsafe { row_block(words, out, &a, panel, ic, MC.min(m - ic), jc, nc, pc, kc, add, start) };
                });
            }
        }
    });
}

/// Whether [`gemm_then`] takes products of `words` with inner dimension `k` (one block of k).
pub fn fuses_epilogue(words: Words, k: usize) -> bool {
    k <= words.kc()
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` as `words` says (`dst` row stride n), then
/// `epilogue(block, rows)` on each block of [`EPILOGUE_ROWS`] rows, on the thread that
/// computed it and as soon as its values are final, while they are still in cache. One
/// packed panel holds all of B, so each block of rows is finished in one pass.
///
/// # Safety
/// As [`gemm`], with `dst` holding `m * n` values and `k` ≤ [`Words::kc`] ([`fuses_epilogue`]).
pub unsafe fn gemm_then(words: Words, dst: &mut [f32], a: Mat, b: Mat, init: Init, threads: usize, epilogue: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let parallel = threads > 1;
    debug_assert!(fuses_epilogue(words, k), "gemm_then: k = {k} > KC");
    let out = Out { ptr: dst.as_mut_ptr(), row_stride: n };
    let (add, start) = init.block_start(0);
    with_shared_panel(n.next_multiple_of(NR) * words.words(k), |bp| {
        // SAFETY: the caller's contract; `bp` was sized for the whole of B (k <= KC).
        unsafe { pack_panel(words, &b, 0, k, 0, n, bp, parallel) };
        let panel = Panel(bp.as_ptr());
        let run = |block: usize| {
            let (ic, mc) = (block * EPILOGUE_ROWS, EPILOGUE_ROWS.min(m - block * EPILOGUE_ROWS));
            // SAFETY: blocks write, then hand out, disjoint rows of `dst` (row stride n).
            unsafe {
                row_block(words, out, &a, panel, ic, mc, 0, n, 0, k, add, start);
                epilogue(block, out.rows_mut(ic, mc));
            }
        };
        if parallel {
            (0..m.div_ceil(EPILOGUE_ROWS)).into_par_iter().for_each(run);
        } else {
            (0..m.div_ceil(EPILOGUE_ROWS)).for_each(run);
        }
    });
}
