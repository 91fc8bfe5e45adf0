//! The product front end: the crate fallback, views, the fused epilogue's blocks and which
//! kernel finishes them.

use super::*;

fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn crate_fallback_matches_naive_for_every_start() {
    let (m, k, n) = (9, 7, 5);
    let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 - 2.0).collect();
    let want = naive(&a, &b, m, k, n);
    for (threads, init) in [(1, Init::Zero), (2, Init::Accumulate), (2, Init::Rows(&bias))] {
        let mut c = vec![1.0f32; m * n];
        crate_gemm(&mut c, n, Mat::row_major(&a, m, k), Mat::row_major(&b, k, n), init, threads);
        for (idx, (x, y)) in c.iter().zip(&want).enumerate() {
            let start = match init {
                Init::Zero => 0.0,
                Init::Accumulate => 1.0,
                Init::Rows(r) => r[idx % n],
            };
            assert!((x - (y + start)).abs() < 1e-5, "{init:?} [{idx}]: {x} vs {}", y + start);
        }
    }
}

#[test]
fn matches_naive_plain_transposed_and_accumulated() {
    let (m, k, n) = (7, 5, 3);
    let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
    let want = naive(&a, &b, m, k, n);
    let mut c = vec![0.0; m * n];
    matmul(&mut c, n, Mat::row_major(&a, m, k), Mat::row_major(&b, k, n), false, Par::Pool);
    for (x, y) in c.iter().zip(&want) {
        assert!((x - y).abs() < 1e-5);
    }
    // b given as its transpose (n, k) viewed through .t()
    let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    matmul(&mut c, n, Mat::row_major(&a, m, k), Mat::row_major(&bt, n, k).t(), true, Par::Seq);
    for (x, y) in c.iter().zip(&want) {
        assert!((x - 2.0 * y).abs() < 1e-5);
    }
}

/// Each product takes the fused kernel of its precision and of the fp32 choice: fp32
/// products went to the unfused path whatever the choice, until this was tested.
#[test]
fn products_are_finished_in_cache_by_the_kernel_their_precision_and_choice_name() {
    use crate::tensor::cpu;
    let expected = match fp32_gemm() {
        #[cfg(target_arch = "x86_64")]
        Fp32Gemm::Avx512 if cpu::avx512().is_some() => cpu::avx512().map_or(Fused::No, |c| Fused::Zgemm(super::super::zgemm::Words::F32(c))),
        #[cfg(target_arch = "x86_64")]
        Fp32Gemm::Sgemm if cpu::avx2_fma().is_some() => Fused::Sgemm,
        _ => Fused::No,
    };
    assert_eq!(Gemm::F32.fused_kernel(384), expected, "{:?}", fp32_gemm());
    assert_eq!(Gemm::F32.fused_kernel(385), Fused::No, "k past one block of fp32");
    assert_eq!(Gemm::F32.fused_kernel(0), Fused::No);
    #[cfg(target_arch = "x86_64")]
    if let Some(bf16) = cpu::avx512_bf16() {
        assert_eq!(Gemm::Bf16(bf16).fused_kernel(512), Fused::Zgemm(super::super::zgemm::Words::Bf16(bf16)));
        assert_eq!(Gemm::Bf16(bf16).fused_kernel(513), Fused::No);
    }
}

#[test]
fn matmul_then_hands_every_block_its_final_rows_once_and_keeps_the_epilogues_writes() {
    use std::sync::Mutex;
    // k = 40 is finished in cache (zgemm's fused pass with AVX-512, sgemm's with AVX2
    // only) and k = 500 after the whole product. m = 250 ends in a partial block; both
    // thread settings.
    for (m, k, n) in [(250, 40, 37), (250, 500, 37), (5, 3, 2)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
        let (am, bm) = (Mat::row_major(&a, m, k), Mat::row_major(&b, k, n));
        let mut want = vec![0.0f32; m * n];
        matmul_init(&mut want, n, am, bm, Init::Rows(&bias), Par::Seq);
        for par in [Par::Seq, Par::Pool] {
            let seen = Mutex::new(vec![0usize; m.div_ceil(EPILOGUE_ROWS)]);
            let mut c = vec![f32::NAN; m * n];
            matmul_then(&mut c, am, bm, Init::Rows(&bias), par, &|block, rows| {
                let r0 = block * EPILOGUE_ROWS;
                assert_eq!(rows.len(), EPILOGUE_ROWS.min(m - r0) * n, "block {block} size");
                for (i, (x, w)) in rows.iter().zip(&want[r0 * n..]).enumerate() {
                    assert!((x - w).abs() <= 1e-4 * (1.0 + w.abs()), "({m},{k},{n}) block {block} [{i}]: {x} vs {w}");
                }
                rows.iter_mut().for_each(|x| *x = -*x);
                seen.lock().unwrap()[block] += 1;
            });
            assert!(seen.into_inner().unwrap().iter().all(|&s| s == 1), "({m},{k},{n}) {par:?}: a block ran twice or never");
            assert!(c.iter().zip(&want).all(|(x, w)| (x + w).abs() <= 1e-4 * (1.0 + w.abs())), "epilogue writes lost");
        }
    }
}
