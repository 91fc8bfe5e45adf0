//! The AVX-512 GEMM against f64 references, inside bounds derived from the arithmetic.
//!
//! fp32 words: k products summed by FMAs (one rounding each, unit roundoff 2^-24), starting
//! from a given value, err by at most γ_k·S with γ_k = k·2^-24 / (1 − k·2^-24) and
//! S = Σ_p |a_p·b_p| (+ |start|): the bound below with u = 0 (no input rounding).
//!
//! bf16 words:
//! bf16 keeps 8 significant bits, so rounding to nearest moves a value by at most
//! u = 2^-8 of itself: â·b̂ = a·b·(1 + δ₁)(1 + δ₂) with |δ| ≤ u. A product of two bf16 values
//! has at most 16 significant bits and is exact in fp32; k of them summed in fp32 (unit
//! roundoff 2^-24), starting from a given value, err by at most γ_k·Σ|â·b̂| with
//! γ_k = k·2^-24 / (1 − k·2^-24). Hence, with S = Σ_p |a_p·b_p| (+ |start|):
//!
//! - against the exact product of the rounded inputs: |c − ĉ| ≤ γ_k·(1 + u)²·S;
//! - against the exact product of the fp32 inputs: |c − ĉ| ≤ (2u + u² + γ_k·(1 + u)²)·S.
//!
//! The first checks the rounding itself (truncating instead of rounding to nearest, or a
//! misplaced pair, fails it); the second is the bound a bf16 product promises a caller.

use super::*;
use crate::tensor::cpu::{avx512, avx512_bf16};
use crate::tensor::kernels::bf16::{bf16_bits, round_bf16};

/// A kind of word with its input rounding and unit roundoff.
type Kind = (Words, fn(f32) -> f32, f64);

/// The kinds of word this CPU runs.
fn kinds() -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Vec::new();
    if let Some(cpu) = avx512() {
        kinds.push((Words::F32(cpu), |x| x, 0.0));
    }
    if let Some(cpu) = avx512_bf16() {
        kinds.push((Words::Bf16(cpu), round_bf16, U_BF16));
    }
    if kinds.is_empty() {
        eprintln!("skipped: the CPU has no AVX-512");
    }
    kinds
}

/// Unit roundoff of bf16 (8 significant bits).
const U_BF16: f64 = 1.0 / 256.0;

/// γ_k for fp32 accumulation of `k` terms (and a start value).
fn gamma(k: usize) -> f64 {
    let ku = (k + 1) as f64 * (2.0f64).powi(-24);
    ku / (1.0 - ku)
}

fn at(m: &Mat, i: usize, j: usize) -> f32 {
    m.data[i * m.row_stride + j * m.col_stride]
}

/// (Σ a·b, Σ |a·b|) per output element in f64, after `round` on every input.
fn reference(a: &Mat, b: &Mat, round: impl Fn(f32) -> f32) -> Vec<(f64, f64)> {
    let mut c = vec![(0.0, 0.0); a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            for p in 0..a.cols {
                let v = round(at(a, i, p)) as f64 * round(at(b, p, j)) as f64;
                c[i * b.cols + j].0 += v;
                c[i * b.cols + j].1 += v.abs();
            }
        }
    }
    c
}

fn values(n: usize, salt: usize) -> Vec<f32> {
    // Spread over several binades, signs mixed, so rounding matters in every element.
    (0..n).map(|i| ((((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.5) - 1.0) * (1.0 + ((i * 31 + salt) % 7) as f32 * 0.37)).collect()
}

/// Runs [`gemm`] on a copy of `before`.
fn run(words: Words, a: Mat, b: Mat, init: Init, threads: usize, before: f32) -> Vec<f32> {
    let mut c = vec![before; a.rows * b.cols];
    a.check();
    b.check();
    // SAFETY: views checked above; `c` holds the (m, n) output with row stride n.
    unsafe { gemm(words, &mut c, b.cols, a, b, init, threads) };
    c
}

#[test]
fn scalar_rounding_equals_the_instruction_on_ties_specials_and_denormals() {
    let Some(_cpu) = avx512_bf16() else {
        eprintln!("skipped: the CPU has no AVX512_BF16");
        return;
    };
    let mut xs: Vec<f32> = vec![0.0, -0.0, 1.0, -1.5, f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, 1e-40, -3e-39];
    // Exact ties with an even and an odd kept bit, just below and above them.
    for base in [0x3F80_0000u32, 0x3F81_0000, 0x4049_0000, 0xC123_0000] {
        for low in [0x7FFFu32, 0x8000, 0x8001, 0xFFFF, 0x0001] {
            xs.push(f32::from_bits(base | low));
        }
    }
    xs.extend(values(64, 9));
    xs.resize(xs.len().next_multiple_of(32), 0.5);
    for chunk in xs.chunks(32) {
        let mut got = [0u16; 32];
        // SAFETY: the token proves AVX512_BF16; 32 values are read and 32 bf16 written.
        unsafe {
            let v = std::arch::x86_64::_mm512_cvtne2ps_pbh(
                std::arch::x86_64::_mm512_loadu_ps(chunk.as_ptr().add(16)),
                std::arch::x86_64::_mm512_loadu_ps(chunk.as_ptr()),
            );
            std::ptr::copy_nonoverlapping((&v as *const std::arch::x86_64::__m512bh).cast::<u16>(), got.as_mut_ptr(), 32);
        }
        for (x, g) in chunk.iter().zip(got) {
            let want = bf16_bits(*x);
            let same = g == want || (x.is_nan() && g & 0x7FC0 == 0x7FC0 && want & 0x7FC0 == 0x7FC0);
            assert!(same, "{x:e} ({:#010x}): instruction {g:#06x}, scalar {want:#06x}", x.to_bits());
        }
    }
    // Ties go to the even neighbour; above them up, below them down.
    assert_eq!(bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80);
    assert_eq!(bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82);
    assert_eq!(bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
    assert_eq!(round_bf16(1.0 + 1.0 / 512.0), 1.0);
}

#[test]
fn matches_f64_references_within_the_derived_bounds_over_shapes_strides_and_threads() {
    for (words, round, u) in kinds() {
        // Edges of every blocking: odd k, k past either KC, rows past MR and MC, columns past NR,
        // steps past a multiple of 8 (the fp32 transposes).
        for (m, k, n) in [(1, 1, 1), (5, 3, 15), (12, 2, 32), (13, 257, 33), (25, 384, 64), (7, 769, 40), (200, 30, 70), (3, 600, 7), (30, 385, 9)] {
            let (ad, bd) = (values(m * k, 1), values(k * n, 2));
            let (ad2, bd2) = (values(2 * m * k, 3), values(2 * k * n, 4));
            let a_views = [Mat::row_major(&ad, m, k), Mat::row_major(&ad, k, m).t(), Mat::strided(&ad2, m, k, 2 * k, 2)];
            let b_views = [Mat::row_major(&bd, k, n), Mat::row_major(&bd, n, k).t(), Mat::strided(&bd2, k, n, 2, 2 * k)];
            for a in a_views {
                for b in b_views {
                    let rounded = reference(&a, &b, round);
                    let exact = reference(&a, &b, |x| x);
                    let bias = values(n, 7);
                    for (threads, init) in [(1, Init::Zero), (2, Init::Zero), (3, Init::Accumulate), (2, Init::Rows(&bias))] {
                        // NaN where the output must be overwritten, 0.5 where it is added to.
                        let before = if matches!(init, Init::Accumulate) { 0.5 } else { f32::NAN };
                        let c = run(words, a, b, init, threads, before);
                        for (idx, got) in c.iter().enumerate() {
                            let start = match init {
                                Init::Zero => 0.0,
                                Init::Accumulate => 0.5,
                                Init::Rows(r) => r[idx % n] as f64,
                            };
                            let got = *got as f64;
                            let ((rv, rs), (ev, es)) = (rounded[idx], exact[idx]);
                            let tight = gamma(k) * (1.0 + u).powi(2) * (rs + start.abs());
                            assert!(
                                (got - (rv + start)).abs() <= tight,
                                "{words:?} ({m},{k},{n}) t{threads} {init:?} [{idx}]: {got} vs rounded inputs {}",
                                rv + start
                            );
                            let loose = (2.0 * u + u * u) * es + tight;
                            assert!(
                                (got - (ev + start)).abs() <= loose,
                                "{words:?} ({m},{k},{n}) t{threads} {init:?} [{idx}]: {got} vs fp32 inputs {}",
                                ev + start
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    for (words, ..) in kinds() {
        // Wide (split by columns), tall and shallow (the shared panel), tall and deep (rows).
        for (m, k, n) in [(50, 700, 90), (1000, 96, 70), (900, 900, 20)] {
            let (ad, bd) = (values(m * k, 3), values(k * n, 4));
            let (a, b) = (Mat::row_major(&ad, m, k), Mat::row_major(&bd, k, n));
            let one = run(words, a, b, Init::Zero, 1, f32::NAN);
            for threads in [2, 3, 4] {
                let many = run(words, a, b, Init::Zero, threads, f32::NAN);
                assert!(one.iter().zip(&many).all(|(x, y)| x.to_bits() == y.to_bits()), "{words:?} ({m},{k},{n}) {threads} threads");
            }
        }
    }
}

#[test]
fn the_epilogue_sees_every_block_once_with_its_final_values() {
    use std::sync::Mutex;
    for (words, ..) in kinds() {
        let (m, k, n) = (EPILOGUE_ROWS * 2 + 37, 200, 45);
        let (ad, bd, bias) = (values(m * k, 5), values(k * n, 6), values(n, 8));
        let (a, b) = (Mat::row_major(&ad, m, k), Mat::row_major(&bd, k, n));
        let want = run(words, a, b, Init::Rows(&bias), 1, f32::NAN);
        for threads in [1, 2] {
            let seen = Mutex::new(vec![0usize; m.div_ceil(EPILOGUE_ROWS)]);
            let mut c = vec![f32::NAN; m * n];
            let epilogue = |block: usize, rows: &mut [f32]| {
                let r0 = block * EPILOGUE_ROWS;
                assert_eq!(rows.len(), EPILOGUE_ROWS.min(m - r0) * n);
                assert!(rows.iter().zip(&want[r0 * n..]).all(|(x, w)| x.to_bits() == w.to_bits()), "block {block}");
                rows.iter_mut().for_each(|x| *x = -*x);
                seen.lock().unwrap()[block] += 1;
            };
            // SAFETY: views in bounds, `c` holds m * n values, k <= KC.
            unsafe { gemm_then(words, &mut c, a, b, Init::Rows(&bias), threads, &epilogue) };
            assert!(seen.into_inner().unwrap().iter().all(|&s| s == 1), "{words:?} {threads} threads");
            assert!(c.iter().zip(&want).all(|(x, w)| *x == -*w), "{words:?}: epilogue writes lost");
        }
    }
}

/// GFLOP/s of the fp32 products (this GEMM's and the `gemm` crate's) and the bf16 product
/// at the workloads' shapes, alternating, for tuning:
/// `cargo test --release --lib zgemm::tests::speed -- --ignored --nocapture`
/// (`SPEED_THREADS` threads, default 2; `SPEED_ONLY` picks shapes by layout or "m,k,n").
#[test]
#[ignore]
fn speed() {
    use crate::tensor::kernels::matmul::{fp32_product_with, Fp32Gemm};
    let Some(cpu) = avx512() else { return };
    let threads: usize = std::env::var("SPEED_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // (m, k, n, A layout): W1's head forward, input and weight gradients; a hidden conv's
    // forward (overlapping windows, row stride 128) and weight gradient; W4's MLP.
    let only = std::env::var("SPEED_ONLY").unwrap_or_default();
    for (m, k, n, layout) in [
        (4096, 384, 5000, "rows"),
        (4096, 5000, 384, "rows"),
        (5000, 4096, 384, "t"),
        (4096, 384, 128, "windows"),
        (128, 4096, 384, "t"),
        (4096, 128, 512, "rows bt"),
        (4096, 512, 128, "rows bt"),
        (4096, 512, 128, "rows"),
        (512, 4096, 128, "t"),
        (1024, 64, 64, "rows bt"),
    ] {
        if !only.is_empty() && !layout.contains(&only) && !format!("{m},{k},{n}").contains(&only) {
            continue;
        }
        let ad = values(m * k + k, 1);
        let bd = values(k * n, 2);
        let a = match layout {
            "t" => Mat::row_major(&ad[..m * k], k, m).t(),
            "windows" => Mat::strided(&ad, m, k, 128, 1),
            _ => Mat::row_major(&ad[..m * k], m, k),
        };
        let b = if layout.ends_with("bt") { Mat::row_major(&bd, n, k).t() } else { Mat::row_major(&bd, k, n) };
        let mut c = vec![0.0f32; m * n];
        let flop = 2.0 * (m * k * n) as f64;
        // With one thread, the thread's CPU time: steadier than wall time on a busy machine.
        let clock = || {
            if threads > 1 {
                return std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
            }
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is a valid timespec to write.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
        };
        if m == 4096 && k == 384 && n == 5000 && threads == 1 {
            let (_, flop, fp32) = crate::tensor::peak::fp32_loop();
            let t = clock();
            std::hint::black_box(fp32(20_000_000));
            let p32 = 20e6 * flop / (clock() - t) / 1e9;
            println!("one thread's fp32 peak (CPU time): {p32:.0} GFLOP/s");
        }
        type Timed<'a> = (&'static str, Box<dyn Fn(&mut [f32]) + Send + Sync + 'a>);
        let mut kinds: Vec<Timed> = vec![
            // SAFETY: views in bounds; c holds m * n values.
            ("zgemm fp32", Box::new(|c| unsafe { gemm(Words::F32(cpu), c, n, a, b, Init::Zero, threads) })),
            ("crate fp32", Box::new(|c| fp32_product_with(Fp32Gemm::Crate, c, n, a, b, Init::Zero, threads))),
        ];
        if let Some(bf) = avx512_bf16() {
            // SAFETY: views in bounds; c holds m * n values.
            kinds.push(("zgemm bf16", Box::new(move |c| unsafe { gemm(Words::Bf16(bf), c, n, a, b, Init::Zero, threads) })));
        }
        let mut times = vec![Vec::new(); kinds.len()];
        pool.install(|| {
            for _ in 0..(9 + (1 << 28) / (m * k * n)) {
                for (t, (_, run)) in times.iter_mut().zip(&kinds) {
                    let t0 = clock();
                    run(&mut c);
                    t.push(clock() - t0);
                }
            }
        });
        let line: Vec<String> = kinds
            .iter()
            .zip(&mut times)
            .map(|((name, _), t)| {
                t.sort_by(f64::total_cmp);
                format!("{name} {:.0} (best {:.0})", flop / t[t.len() / 2] / 1e9, flop / t[0] / 1e9)
            })
            .collect();
        println!("({m},{k},{n}) {layout}: GFLOP/s {}", line.join(", "));
    }
}
