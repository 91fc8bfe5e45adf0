use super::*;

fn naive(a: &Mat, b: &Mat) -> Vec<f64> {
    let mut c = vec![0.0f64; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            c[i * b.cols + j] =
                (0..a.cols).map(|p| a.data[i * a.row_stride + p * a.col_stride] as f64 * b.data[p * b.row_stride + j * b.col_stride] as f64).sum();
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
                    // SAFETY: the tests run only where `available()` (AVX2 + FMA); views and `c` are sized for the product.
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
        // SAFETY: the tests run only where `available()` (AVX2 + FMA); views and `c` are sized for the product.
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
        // SAFETY: the tests run only where `available()` (AVX2 + FMA); views and `c` are sized for the product.
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
    // SAFETY: the tests run only where `available()` (AVX2 + FMA); views and `c` are sized for the product.
    unsafe { gemm(&mut c, rs, Mat::row_major(&ad, m, k), Mat::row_major(&bd, k, n), Init::Rows(&values(n, 8)), 2) };
    for i in 0..m - 1 {
        assert!(c[i * rs + n..(i + 1) * rs].iter().all(|&v| v == -7.0), "row {i} gap written");
    }
}

#[test]
fn fused_epilogues_see_each_finished_block_once() {
    // `matmul_then` takes this path only on AVX2-only CPUs, so it is tested here directly.
    if !available() {
        return;
    }
    use std::sync::Mutex;
    let (m, k, n) = (2 * EPILOGUE_ROWS + 17, 96, 41); // two whole blocks and a partial one
    let (ad, bd) = (values(m * k, 5), values(k * n, 6));
    let bias = values(n, 7);
    let (a, b) = (Mat::row_major(&ad, m, k), Mat::row_major(&bd, k, n));
    let want: Vec<f64> = naive(&a, &b).iter().enumerate().map(|(i, v)| v + bias[i % n] as f64).collect();
    for threads in [1, 2] {
        let seen = Mutex::new(vec![0usize; m.div_ceil(EPILOGUE_ROWS)]);
        let mut c = vec![f32::NAN; m * n];
        let epilogue = |block: usize, rows: &mut [f32]| {
            let r0 = block * EPILOGUE_ROWS;
            assert_eq!(rows.len(), EPILOGUE_ROWS.min(m - r0) * n, "block {block} size");
            for (i, (x, w)) in rows.iter().zip(&want[r0 * n..]).enumerate() {
                assert!((*x as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "block {block} [{i}]: {x} vs {w}");
            }
            rows.iter_mut().for_each(|x| *x = -*x);
            seen.lock().unwrap()[block] += 1;
        };
        assert!(fuses_epilogue(k));
        // SAFETY: AVX2 + FMA are available (checked above); `c` holds m·n values and k ≤ KC.
        unsafe { gemm_then(&mut c, a, b, Init::Rows(&bias), threads, &epilogue) };
        assert!(seen.into_inner().unwrap().iter().all(|&s| s == 1), "threads {threads}: a block ran twice or never");
        assert!(c.iter().zip(&want).all(|(x, w)| (*x as f64 + w).abs() <= 1e-4 * (1.0 + w.abs())), "threads {threads}: epilogue writes lost");
    }
}
