//! Strided f32 matrix multiply: convlm's own AVX-512 kernel (`zgemm`) or AVX2 + FMA kernel
//! (`sgemm`) where the CPU has them, the `gemm` crate elsewhere ([`Fp32Gemm`] picks); and,
//! as a [`Gemm::Bf16`] product, bf16 inputs with fp32 accumulation (`zgemm` on bf16 pairs,
//! CPUs with AVX512_BF16).
//!
//! Every matrix is described by a slice plus row and column strides (in elements), so that
//! transposes, shifted windows and per-group blocks are views, never copies.

use std::sync::atomic::{AtomicU8, Ordering};

use gemm::Parallelism;
use rayon::prelude::*;

pub use super::mat::{Init, Mat, EPILOGUE_ROWS};
use crate::tensor::cpu::Avx512Bf16;

/// How a product computes: the one switch between fp32 and bf16 products. The kernels of
/// matmuls and convolutions take one and call its methods; a graph holds the one its
/// precision chose (`Graph::set_precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gemm {
    /// fp32 inputs and accumulation.
    #[default]
    F32,
    /// Inputs rounded to bf16 (to nearest, ties to even), products accumulated in fp32, fp32
    /// outputs: torch.autocast's bf16 matmul, without rounding the output. Holds the proof
    /// that the CPU has AVX512_BF16.
    Bf16(Avx512Bf16),
}

impl Gemm {
    /// [`matmul`] computed as this product says.
    pub fn matmul(self, dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, accumulate: bool, par: Par) {
        let init = if accumulate { Init::Accumulate } else { Init::Zero };
        self.matmul_init(dst, dst_row_stride, a, b, init, par);
    }

    /// [`matmul_init`] computed as this product says.
    pub fn matmul_init(self, dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, par: Par) {
        match self {
            Gemm::F32 => matmul_init(dst, dst_row_stride, a, b, init, par),
            Gemm::Bf16(cpu) => bf16_product(cpu, dst, dst_row_stride, a, b, init, par),
        }
    }

    /// [`Gemm::matmul_then`] whose product is [`Gemm::matmul_init`]'s to the bit: fused where
    /// the plain product's kernel has an epilogue (the crate's sgemm; zgemm in bf16), the
    /// whole product first where it has none (fp32 on CPUs whose plain products are the
    /// `gemm` crate's, where `matmul_then` would switch to zgemm). For ops that replace a
    /// product and a pass over its output and must keep their bits.
    pub fn matmul_then_as_plain(self, dst: &mut [f32], a: Mat, b: Mat, init: Init, par: Par, epilogue: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        #[cfg(target_arch = "x86_64")]
        if matches!(self.fused_kernel(a.cols), Fused::Zgemm(super::zgemm::Words::F32(_))) {
            let n = b.cols;
            self.matmul_init(dst, n, a, b, init, par);
            run_epilogues(&mut dst[..a.rows * n], n, par, epilogue);
            return;
        }
        self.matmul_then(dst, a, b, init, par, epilogue)
    }

    /// [`matmul_then`] computed as this product says.
    pub fn matmul_then(self, dst: &mut [f32], a: Mat, b: Mat, init: Init, par: Par, epilogue: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        assert_eq!(a.cols, b.rows, "matmul inner dimensions");
        let (m, k, n) = (a.rows, a.cols, b.cols);
        assert_eq!(dst.len(), m * n, "matmul_then destination size");
        if m == 0 || n == 0 {
            return;
        }
        let threads = threads_for(par, m, k, n);
        match self.fused_kernel(k) {
            #[cfg(target_arch = "x86_64")]
            Fused::Zgemm(words) => {
                a.check();
                b.check();
                // SAFETY: `words` proves the CPU features; the views were checked and dst holds m · n values.
                unsafe { super::zgemm::gemm_then(words, dst, a, b, init, threads, epilogue) };
            }
            #[cfg(target_arch = "x86_64")]
            Fused::Sgemm => {
                a.check();
                b.check();
                // SAFETY: AVX2 and FMA are present (`fused_kernel`); the views were checked and dst holds m · n values.
                unsafe { super::sgemm::gemm_then(dst, a, b, init, threads, epilogue) };
            }
            Fused::No => {
                self.matmul_init(dst, n, a, b, init, par);
                run_epilogues(dst, n, par, epilogue);
            }
        }
    }

    /// The kernel that finishes the blocks of this product (inner dimension `k`) while they
    /// are in cache: zgemm for bf16 and, with [`Fp32Gemm::Avx512`], fp32; sgemm with
    /// [`Fp32Gemm::Sgemm`]; none for the crate, or where k spans several blocks.
    fn fused_kernel(self, k: usize) -> Fused {
        #[cfg(target_arch = "x86_64")]
        {
            let words = match (self, fp32_gemm()) {
                (Gemm::Bf16(cpu), _) => Some(super::zgemm::Words::Bf16(cpu)),
                (Gemm::F32, Fp32Gemm::Avx512) => crate::tensor::cpu::avx512().map(super::zgemm::Words::F32),
                (Gemm::F32, Fp32Gemm::Sgemm) if k > 0 && super::sgemm::available() && super::sgemm::fuses_epilogue(k) => return Fused::Sgemm,
                _ => None,
            };
            if let Some(words) = words.filter(|&w| k > 0 && super::zgemm::fuses_epilogue(w, k)) {
                return Fused::Zgemm(words);
            }
        }
        let _ = k;
        Fused::No
    }
}

/// Which kernel finishes a product's blocks while they are in cache ([`Gemm::fused_kernel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fused {
    #[cfg(target_arch = "x86_64")]
    Zgemm(super::zgemm::Words),
    #[cfg(target_arch = "x86_64")]
    Sgemm,
    /// The whole product first, then the epilogues across the pool.
    No,
}

/// Which kernels compute fp32 products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Fp32Gemm {
    /// convlm's own AVX2 + FMA GEMM (`sgemm`), which also finishes a fused head's blocks
    /// while they are in cache; the `gemm` crate where the CPU lacks AVX2.
    Sgemm = 1,
    /// The `gemm` crate (its AVX-512 kernels where the CPU has them), whose products a fused
    /// head's loss then reads in a pass of its own.
    Crate = 2,
    /// The crate's products, except those with a fused epilogue (the head's loss), which
    /// convlm's AVX-512 GEMM (`zgemm` on fp32 words) computes and finishes block by block
    /// while they are in cache; as [`Fp32Gemm::Crate`] where the CPU lacks AVX-512. On a
    /// Zen 5 the crate's plain products were 4-40% faster than zgemm's on W1's and W4's
    /// shapes (one thread), and the fused head took W1's step from 149 to 145 ms (medians of
    /// three alternating rounds, two threads).
    Avx512 = 3,
}

impl Fp32Gemm {
    /// The choice by CPU flags: the crate's products with zgemm's fused head where the CPU
    /// has AVX-512, sgemm where it has AVX2 only, the crate elsewhere. `tensor::tune`
    /// measures sgemm against the crate instead (the crate's AVX-512 kernels were twice
    /// sgemm's speed on a Zen 5, whose AVX-512 runs on full-width units, and even with it on
    /// a Zen 4, whose units are 256 bits wide).
    pub fn by_flags() -> Self {
        if super::super::cpu::avx512().is_some() {
            Fp32Gemm::Avx512
        } else if super::super::cpu::avx2_fma().is_some() {
            Fp32Gemm::Sgemm
        } else {
            Fp32Gemm::Crate
        }
    }
}

/// The fp32 kernel installed by [`use_fp32_gemm`]; 0 until then.
static FP32_GEMM: AtomicU8 = AtomicU8::new(0);

/// Makes this process's fp32 products use `kernel` (measured on this CPU: `tensor::tune`).
pub fn use_fp32_gemm(kernel: Fp32Gemm) {
    FP32_GEMM.store(kernel as u8, Ordering::Relaxed);
}

/// The kernel of fp32 products now: the installed one, else [`Fp32Gemm::by_flags`].
pub fn fp32_gemm() -> Fp32Gemm {
    match FP32_GEMM.load(Ordering::Relaxed) {
        1 => Fp32Gemm::Sgemm,
        2 => Fp32Gemm::Crate,
        3 => Fp32Gemm::Avx512,
        _ => Fp32Gemm::by_flags(),
    }
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` in fp32 as `kernel` computes a plain product
/// (sgemm, or the crate), on `threads` threads; the caller has checked the views and dst's
/// extent, and that m, k and n are not 0.
fn plain_product(kernel: Fp32Gemm, dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, threads: usize) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Fp32Gemm::Sgemm && super::sgemm::available() {
        // SAFETY: AVX2 and FMA are present; the views and dst were bounds-checked by the caller.
        unsafe { super::sgemm::gemm(dst, dst_row_stride, a, b, init, threads) };
        return;
    }
    let _ = kernel;
    crate_gemm(dst, dst_row_stride, a, b, init, threads);
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` in fp32 by `kernel` on `threads` threads
/// (the next kernel where the CPU cannot run it), with `matmul_init`'s checks: for measuring
/// the kernels against each other.
pub fn fp32_product_with(kernel: Fp32Gemm, dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, threads: usize) {
    assert_eq!(a.cols, b.rows, "matmul inner dimensions");
    let (m, n) = (a.rows, b.cols);
    if m == 0 || n == 0 || a.cols == 0 {
        return matmul_init(dst, dst_row_stride, a, b, init, Par::Seq);
    }
    assert!((m - 1) * dst_row_stride + n <= dst.len(), "matmul destination out of bounds");
    a.check();
    b.check();
    plain_product(kernel, dst, dst_row_stride, a, b, init, threads.max(1));
}

/// The bf16 product behind [`Gemm::Bf16`], with `matmul_init`'s checks.
fn bf16_product(cpu: Avx512Bf16, dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, par: Par) {
    checked_product(dst, dst_row_stride, a, b, init, par, |dst, threads| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX512_BF16; `checked_product` bounds-checked the views and
        // dst, a distinct &mut slice.
        unsafe {
            super::zgemm::gemm(super::zgemm::Words::Bf16(cpu), dst, dst_row_stride, a, b, init, threads)
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = cpu; // no such token exists off x86-64
            plain_product(fp32_gemm(), dst, dst_row_stride, a, b, init, threads);
        }
    });
}

/// The checks and edge cases every product shares — inner dimensions, the start row's
/// length, dst's extent, nothing to do for an empty output, only the start for k = 0 — then
/// `run(dst, threads)` on views checked to lie in bounds, with the threads `par` gives.
fn checked_product(dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, par: Par, run: impl FnOnce(&mut [f32], usize)) {
    assert_eq!(a.cols, b.rows, "matmul inner dimensions");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if let Init::Rows(r) = init {
        assert_eq!(r.len(), n, "matmul start row length");
    }
    assert!((m - 1) * dst_row_stride + n <= dst.len(), "matmul destination out of bounds");
    if k == 0 {
        init.fill(dst, m, n, dst_row_stride);
        return;
    }
    a.check();
    b.check();
    run(dst, threads_for(par, m, k, n));
}

/// `epilogue(block, rows)` on each block of [`EPILOGUE_ROWS`] rows of a finished product.
fn run_epilogues(dst: &mut [f32], n: usize, par: Par, epilogue: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    if n == 0 {
        return;
    }
    match par {
        Par::Pool => dst.par_chunks_mut(EPILOGUE_ROWS * n).enumerate().for_each(|(i, rows)| epilogue(i, rows)),
        Par::Seq => dst.chunks_mut(EPILOGUE_ROWS * n).enumerate().for_each(|(i, rows)| epilogue(i, rows)),
    }
}

/// Threading for one GEMM call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// Single-threaded (use inside an outer parallel loop or for small products).
    Seq,
    /// Use the current rayon pool.
    Pool,
}

/// `dst (m, n) = (accumulate ? dst : 0) + a (m, k) · b (k, n)`, with `dst` row stride
/// `dst_row_stride` and unit column stride.
pub fn matmul(dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, accumulate: bool, par: Par) {
    let init = if accumulate { Init::Accumulate } else { Init::Zero };
    matmul_init(dst, dst_row_stride, a, b, init, par);
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` with `start` given by `init`.
pub fn matmul_init(dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, par: Par) {
    // Which kernel: see `Fp32Gemm` (by flags, or measured on this CPU). Each gives results
    // that do not depend on the thread count.
    checked_product(dst, dst_row_stride, a, b, init, par, |dst, threads| plain_product(fp32_gemm(), dst, dst_row_stride, a, b, init, threads));
}

/// `dst (m, n) = start + a (m, k) · b (k, n)` (`dst` row-major, row stride n), then
/// `epilogue(block, rows)` once on each block of [`EPILOGUE_ROWS`] rows (the last may be
/// shorter) with its final values: rows `block * EPILOGUE_ROWS ..` as a (rows, n) slice.
///
/// Where convlm's own GEMMs compute it ([`Fp32Gemm::Avx512`]: zgemm; [`Fp32Gemm::Sgemm`])
/// each block's epilogue runs as soon as the block is computed, while its values are still
/// in cache: a loss over the logits then costs no extra pass over memory. Where the `gemm`
/// crate does, it computes the whole product first.
/// Blocks may run in any order and on any thread.
pub fn matmul_then(dst: &mut [f32], a: Mat, b: Mat, init: Init, par: Par, epilogue: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    Gemm::F32.matmul_then(dst, a, b, init, par, epilogue);
}

/// Threads for one product: the pool's, unless `par` says otherwise or it is too small.
fn threads_for(par: Par, m: usize, k: usize, n: usize) -> usize {
    match par {
        Par::Pool if m * n * k >= 64 * 64 * 64 => rayon::current_num_threads(),
        _ => 1,
    }
}

/// The `gemm` crate's product. It only accumulates or overwrites,
/// so start rows are written first. The caller has bounds-checked every view.
fn crate_gemm(dst: &mut [f32], dst_row_stride: usize, a: Mat, b: Mat, init: Init, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let accumulate = match init {
        Init::Zero => false,
        Init::Accumulate => true,
        Init::Rows(_) if threads > 1 && dst_row_stride == n => {
            // The start rows across the pool (one thread copying a (4096, 512) output's
            // bias rows had the others wait).
            dst[..m * n].par_chunks_mut(64 * n).for_each(|rows| init.fill(rows, rows.len() / n, n, n));
            true
        }
        Init::Rows(_) => {
            init.fill(dst, m, n, dst_row_stride);
            true
        }
    };
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: every view was bounds-checked by `matmul_init`; dst does not alias a or b (it
    // is a distinct &mut slice).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests;
