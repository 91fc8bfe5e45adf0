//! f32 GEMM for x86-64 CPUs with AVX2 and FMA, in the BLIS layout: B is packed in panels
//! of 16 columns, A in strips of 6 rows, and a 6 x 16 register-tile micro-kernel does
//! the arithmetic (12 accumulators, 2 loads and 6 broadcasts per step of k).
//!
//! On this project's AMD Zen 3 machines (FMA peak ~98 GFLOP/s per core) the `gemm` crate
//! reached ~60 GFLOP/s per core on W1's head GEMMs and this one 65–90, depending on how
//! busy the shared machine is: the micro-kernel alone runs at ~90% of peak, and prefetching
//! the C tile (megabytes of output that are not in cache) is what lifts the whole GEMM past
//! the crate. The conv GEMMs of the benchmark
//! workloads are all (m, k, n) with k in the hundreds, which this layout suits.
//!
//! Every output element is reduced over k in the same order (blocks of [`KC`], ascending)
//! however the work is split between threads, so results do not depend on the thread count.

use super::matmul::{Init, Mat};
use rayon::prelude::*;
use std::arch::x86_64::*;

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
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
}

/// A mutable output view: element (i, j) at `ptr + i * row_stride + j`.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    row_stride: usize,
}

// SAFETY: threads only ever write disjoint (row, column) blocks of one output.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

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
        gemm_block(out, a, b, 0..m, 0..n, init);
        return;
    }
    // The shared panel costs two fork-joins per block of k; deep products (W1's head
    // gradients, k in the thousands) measured faster with a fixed split.
    if m >= 2 * MC * threads && a.cols <= 2 * KC {
        gemm_shared(out, a, b, init);
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
unsafe fn gemm_block(out: Out, a: Mat, b: Mat, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, init: Init) {
    PACK_BUFFERS.with(|cell| {
        let mut buffers = cell.borrow_mut();
        let (ap, bp) = &mut *buffers;
        let kc = KC.min(a.cols);
        ap.resize(ap.len().max(MC.min(rows.len().next_multiple_of(MR)) * kc + A_SLACK), 0.0);
        bp.resize(bp.len().max(NC.min(cols.len().next_multiple_of(NR)) * kc), 0.0);
        gemm_block_with(out, a, b, rows, cols, init, ap, bp);
    });
}

/// How the block of k starting at `pc` meets C: whether the kernel adds to what C holds,
/// and the bias row it starts from instead of zero (first block only).
fn block_start(init: Init<'_>, pc: usize) -> (bool, Option<&[f32]>) {
    match init {
        Init::Rows(bias) if pc == 0 => (false, Some(bias)),
        Init::Zero | Init::Rows(_) => (pc > 0, None),
        Init::Accumulate => (true, None),
    }
}

thread_local! {
    /// Per-thread packing buffers (A block, B panel), kept between calls: allocating and
    /// zeroing them per call cost more than packing for the small per-item GEMMs.
    static PACK_BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_block_with(
    out: Out,
    a: Mat,
    b: Mat,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    init: Init,
    ap: &mut [f32],
    bp: &mut [f32],
) {
    let k = a.cols;
    // With few rows of A a packed B panel is not reused enough to pay for packing it: full
    // strips of a row-major B are then read in place.
    let direct_b = b.col_stride == 1 && rows.len() <= DIRECT_B_MAX_ROWS;
    for jc in cols.clone().step_by(NC) {
        let nc = NC.min(cols.end - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let (add, start) = block_start(init, pc);
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

/// Output rows `ic..ic + mc`, columns `jc..jc + nc` from a packed A block and a packed B
/// panel (strips of NR columns, `kc * NR` values apart).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn packed_block(out: Out, ap: *const f32, bp: *const f32, ic: usize, mc: usize, jc: usize, nc: usize, kc: usize, add: bool, start: Option<&[f32]>) {
    for jr in (0..nc).step_by(NR) {
        strip_tiles(out, ap, bp.add(jr * kc), NR, ic, mc, jc + jr, NR.min(nc - jr), kc, add, start);
    }
}

/// The MR-row tiles of rows `ic..ic + mc` against one B strip (columns `col..col + nr`,
/// row stride `b_rs`): the micro-kernel straight into C, or through a scratch tile at edges.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn strip_tiles(out: Out, ap: *const f32, b_strip: *const f32, b_rs: usize, ic: usize, mc: usize, col: usize, nr: usize, kc: usize, add: bool, start: Option<&[f32]>) {
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

/// A packed B panel shared by the threads of one product (read-only while they use it).
#[derive(Clone, Copy)]
struct Panel(*const f32);
// SAFETY: the panel is fully written before the parallel loop starts and only read in it.
unsafe impl Send for Panel {}
unsafe impl Sync for Panel {}

/// The shared B panel buffer, kept between calls; a product that finds it in use (two tall
/// products at once) allocates its own.
static SHARED_PANEL: std::sync::Mutex<Vec<f32>> = std::sync::Mutex::new(Vec::new());

/// Tall products (see [`gemm`]): per block of B, the threads pack its strips together, then
/// take blocks of MC rows of A as they become free. Every output value is still reduced in
/// the same order, block of k by block of k.
unsafe fn gemm_shared(out: Out, a: Mat, b: Mat, init: Init) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let panel_len = NC.min(n.next_multiple_of(NR)) * KC.min(k);
    let mut guard = SHARED_PANEL.try_lock().ok();
    let mut own = Vec::new();
    let bp: &mut Vec<f32> = match guard.as_deref_mut() {
        Some(v) => v,
        None => &mut own,
    };
    if bp.len() < panel_len {
        bp.resize(panel_len, 0.0);
    }
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let (add, start) = block_start(init, pc);
            bp[..nc.div_ceil(NR) * NR * kc].par_chunks_mut(kc * NR).enumerate().for_each(|(s, strip)| {
                // SAFETY: AVX2/FMA checked by the caller; the strip holds kc * NR values.
                unsafe { pack_b(&b, pc, kc, jc + s * NR, NR.min(nc - s * NR), strip) }
            });
            let panel = Panel(bp.as_ptr());
            (0..m.div_ceil(MC)).into_par_iter().for_each(|block| {
                let (ic, panel) = (block * MC, panel);
                let mc = MC.min(m - ic);
                PACK_BUFFERS.with(|cell| {
                    let ap = &mut cell.borrow_mut().0;
                    ap.resize(ap.len().max(MC * KC.min(k) + A_SLACK), 0.0);
                    // SAFETY: blocks write disjoint rows of `out`; the panel is read-only here.
                    unsafe {
                        pack_a(&a, ic, mc, pc, kc, ap);
                        packed_block(out, ap.as_ptr(), panel.0, ic, mc, jc, nc, kc, add, start);
                    }
                });
            });
        }
    }
}

/// Packs `b[pc .. pc + kc, jc .. jc + nc]` as consecutive strips of NR columns, each strip
/// (kc, NR) row-major; columns past `nc` are zero.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn pack_b(b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, bp: &mut [f32]) {
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

/// Packs `a[ic .. ic + mc, pc .. pc + kc]` as consecutive strips of MR rows, each strip
/// (kc, MR) row-major (column `i` of step `p` is row `i` of the strip); rows past `mc` are 0.
/// `ap` holds [`A_SLACK`] values past the last strip.
///
/// Packing A touches each of its values once per block of N, so for thin products (W1's
/// head input gradient: N = 128, K = 15000) a scalar copy took ~17% of the GEMM; both common
/// layouts are therefore copied with vector loads.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn pack_a(a: &Mat, ic: usize, mc: usize, pc: usize, kc: usize, ap: &mut [f32]) {
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

/// Values past the last packed A strip that [`pack_rows_6`] may overwrite.
const A_SLACK: usize = 2;

/// Interleaves six contiguous rows of `kc` values into `strip` (kc, 6): eight steps at a
/// time, as an 8 x 8 transpose of the six rows and two zero rows. Each step's 8-lane store
/// spills 2 values into the next step's slot, which the next store overwrites; the last one
/// spills into [`A_SLACK`] or the next strip (packed after this one).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn pack_rows_6(rows: [*const f32; MR], kc: usize, strip: *mut f32) {
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

/// `c (6, 16) = (add ? c : row0 or 0) + a_strip (kc, 6)ᵀ · b_strip (kc, 16)`, where a
/// non-null `row0` points to 16 values every row starts from; `b_strip` has row
/// stride `b_rs` (NR when packed), `c` has row stride `rs`.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x16(kc: usize, mut a: *const f32, mut b: *const f32, b_rs: usize, c: *mut f32, rs: usize, add: bool, row0: *const f32) {
    // The C tile is usually not in cache (the outputs are megabytes): start fetching its
    // 6 x 2 lines now, so the stores at the end do not stall. Worth ~20% on W1's head.
    for i in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs + NR - 1) as *const i8);
    }
    let start = if row0.is_null() { [_mm256_setzero_ps(); 2] } else { [_mm256_loadu_ps(row0), _mm256_loadu_ps(row0.add(8))] };
    let mut acc = [start; MR];
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm256_broadcast_ss(&*a.add(i));
            row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Mat, b: &Mat) -> Vec<f64> {
        let mut c = vec![0.0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols)
                    .map(|p| a.data[i * a.row_stride + p * a.col_stride] as f64 * b.data[p * b.row_stride + j * b.col_stride] as f64)
                    .sum();
            }
        }
        c
    }

    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.5) - 1.0).collect()
    }

    #[test]
    fn matches_f64_reference_over_edge_shapes_strides_and_threads() {
        if !available() {
            return;
        }
        for (m, k, n) in [(1, 1, 1), (5, 3, 15), (6, 256, 16), (7, 257, 17), (13, 520, 40), (100, 30, 3100), (3, 600, 7)] {
            let ad = values(m * k, 1);
            let bd = values(k * n, 2);
            let a_views = [Mat::row_major(&ad, m, k), Mat::row_major(&ad, k, m).t()];
            let b_views = [Mat::row_major(&bd, k, n), Mat::row_major(&bd, n, k).t()];
            for a in a_views {
                for b in b_views {
                    let want = naive(&a, &b);
                    let bias = values(n, 7);
                    for (threads, init) in [(1, Init::Zero), (2, Init::Zero), (3, Init::Accumulate), (2, Init::Rows(&bias))] {
                        // NaN where the output must be overwritten, 0.5 where it is added to.
                        let before = if matches!(init, Init::Accumulate) { 0.5 } else { f32::NAN };
                        let mut c = vec![before; m * n];
                        unsafe { gemm(&mut c, n, a, b, init, threads) };
                        for (idx, (got, w)) in c.iter().zip(&want).enumerate() {
                            let w = match init {
                                Init::Zero => *w,
                                Init::Accumulate => w + 0.5,
                                Init::Rows(r) => w + r[idx % n] as f64,
                            };
                            let tol = 1e-5 * (k as f64).sqrt() * (1.0 + w.abs());
                            assert!((*got as f64 - w).abs() <= tol, "({m},{k},{n}) t{threads} {init:?} [{idx}]: {got} vs {w}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        if !available() {
            return;
        }
        let (m, k, n) = (50, 700, 90);
        let (ad, bd) = (values(m * k, 3), values(k * n, 4));
        let run = |threads| {
            let mut c = vec![0.0; m * n];
            unsafe { gemm(&mut c, n, Mat::row_major(&ad, m, k), Mat::row_major(&bd, k, n), Init::Zero, threads) };
            c
        };
        let one = run(1);
        for t in [2, 3, 4] {
            assert!(run(t).iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits()), "threads {t}");
        }
    }

    #[test]
    fn tall_products_share_the_b_panel_and_match_the_reference_at_any_thread_count() {
        if !available() {
            return;
        }
        // m >= 2·MC·threads for 2 and 3 threads takes the shared-panel path; k spans two
        // blocks of KC, n ends in a partial strip, and B is read through a transposed view.
        let (m, k, n) = (700, 2 * KC - 5, 37);
        let (ad, bd, bias) = (values(m * k, 9), values(n * k, 10), values(n, 11));
        let (a, b) = (Mat::row_major(&ad, m, k), Mat::row_major(&bd, n, k).t());
        let want = naive(&a, &b);
        let run = |threads, init| {
            let mut c = vec![f32::NAN; m * n];
            unsafe { gemm(&mut c, n, a, b, init, threads) };
            c
        };
        let one = run(1, Init::Rows(&bias));
        for (idx, (got, w)) in one.iter().zip(&want).enumerate() {
            let w = w + bias[idx % n] as f64;
            assert!((*got as f64 - w).abs() <= 1e-5 * (k as f64).sqrt() * (1.0 + w.abs()), "[{idx}]: {got} vs {w}");
        }
        for threads in [2, 3] {
            let c = run(threads, Init::Rows(&bias));
            assert!(c.iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits()), "threads {threads}");
        }
    }

    #[test]
    fn writes_only_its_rows_and_columns() {
        if !available() {
            return;
        }
        // dst row stride 9 > n = 7: the gap columns must stay untouched.
        let (m, k, n, rs) = (8, 5, 7, 9);
        let (ad, bd) = (values(m * k, 5), values(k * n, 6));
        let mut c = vec![-7.0f32; (m - 1) * rs + n];
        unsafe { gemm(&mut c, rs, Mat::row_major(&ad, m, k), Mat::row_major(&bd, k, n), Init::Rows(&values(n, 8)), 2) };
        for i in 0..m - 1 {
            assert!(c[i * rs + n..(i + 1) * rs].iter().all(|&v| v == -7.0), "row {i} gap written");
        }
    }
}
