//! Tests of the long convolution: both paths against an f64 reference, finite differences,
//! causality, accumulation and shape errors.

use super::direct::{Lags, Taps};
use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

struct Case {
    shape: LongConvShape,
    u: Vec<f32>,
    k: Vec<f32>,
    d: Vec<f32>,
}

impl Case {
    fn new(batch: usize, len: usize, channels: usize, filter_len: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shape = LongConvShape::new(batch, len, channels, filter_len);
        let u = rand_vec(batch * len * channels, &mut rng);
        let k = rand_vec(channels * filter_len, &mut rng);
        let d = rand_vec(channels, &mut rng);
        Case { shape, u, k, d }
    }

    fn forward(&self, method: LongConvMethod) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.u.len()];
        long_conv_forward_with(method, &self.shape, &self.u, &self.k, &self.d, &mut out).unwrap();
        out
    }

    /// (grad_u, grad_k, grad_d) from zeroed buffers.
    fn backward(&self, method: LongConvMethod, gy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (mut gu, mut gk, mut gd) = (vec![0.0; self.u.len()], vec![0.0; self.k.len()], vec![0.0; self.d.len()]);
        long_conv_backward_with(method, &self.shape, &self.u, &self.k, &self.d, gy, Some(&mut gu), Some(&mut gk), Some(&mut gd)).unwrap();
        (gu, gk, gd)
    }
}

/// Naive f64 reference of the forward and of all three gradients.
fn reference(c: &Case, gy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let LongConvShape { batch, len, channels: cc, filter_len: l } = c.shape;
    let at = |b: usize, t: usize, ch: usize| (b * len + t) * cc + ch;
    let mut y = vec![0.0f64; c.u.len()];
    let mut gu = vec![0.0f64; c.u.len()];
    let mut gk = vec![0.0f64; c.k.len()];
    let mut gd = vec![0.0f64; cc];
    for b in 0..batch {
        for ch in 0..cc {
            let dc = c.d[ch] as f64;
            for t in 0..len {
                let (ut, gt) = (c.u[at(b, t, ch)] as f64, gy[at(b, t, ch)] as f64);
                let mut s = dc * ut;
                for src in 0..=t {
                    s += c.k[ch * l + t - src] as f64 * c.u[at(b, src, ch)] as f64;
                }
                y[at(b, t, ch)] = s;
                let mut g = dc * gt;
                for later in t..len {
                    g += c.k[ch * l + later - t] as f64 * gy[at(b, later, ch)] as f64;
                }
                gu[at(b, t, ch)] = g;
                gd[ch] += gt * ut;
                for j in 0..=t {
                    gk[ch * l + j] += gt * c.u[at(b, t - j, ch)] as f64;
                }
            }
        }
    }
    (y, gu, gk, gd)
}

/// Largest |got − want| relative to the largest |want| (1 when all of want is zero).
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max) / scale
}

/// Tolerance of f32 results against the f64 reference, as the largest error relative to
/// the output's largest magnitude. Observed: ≤ 5e-7 up to T = 257 and 1e-6 (direct) /
/// 3e-7 (FFT) at T = 1100. Relative to the largest value rather than each element's own,
/// because an f32 FFT's error (~ε·log N) is relative to the signal's norm.
const TOL: f64 = 1e-5;

const METHODS: [LongConvMethod; 2] = [LongConvMethod::Direct, LongConvMethod::Fft];

#[test]
fn fft_len_is_the_smallest_even_2a3b_at_least_2t() {
    assert_eq!(fft_len(0), 2);
    assert_eq!(fft_len(1), 2);
    assert_eq!(fft_len(2), 4);
    assert_eq!(fft_len(3), 6);
    assert_eq!(fft_len(5), 12);
    assert_eq!(fft_len(100), 216);
    assert_eq!(fft_len(1024), 2048);
    assert_eq!(fft_len(1025), 2304);
    let smooth = |mut n: usize| {
        for p in [2, 3] {
            while n.is_multiple_of(p) {
                n /= p;
            }
        }
        n == 1
    };
    for len in 1..600 {
        let n = fft_len(len);
        assert!(n.is_multiple_of(2) && n >= 2 * len && smooth(n), "len {len}: {n}");
        assert!((2 * len..n).all(|m| m % 2 == 1 || !smooth(m)), "len {len}: {n} is not the smallest");
    }
}

#[test]
fn fft_and_direct_match_the_f64_reference() {
    let shapes =
        [(1, 1, 1, 1), (2, 1, 3, 4), (2, 2, 5, 2), (3, 7, 3, 7), (2, 13, 17, 20), (2, 64, 40, 64), (1, 100, 24, 131), (2, 257, 16, 300), (1, 1100, 4, 1100)];
    for (seed, &(b, t, c, l)) in shapes.iter().enumerate() {
        let case = Case::new(b, t, c, l, seed as u64);
        let gy = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(100 + seed as u64));
        let (y, gu, gk, gd) = reference(&case, &gy);
        for method in METHODS {
            let what = format!("{method:?} B={b} T={t} C={c} L={l}");
            let (mgu, mgk, mgd) = case.backward(method, &gy);
            let errs = [rel_err(&case.forward(method), &y), rel_err(&mgu, &gu), rel_err(&mgk, &gk), rel_err(&mgd, &gd)];
            assert!(errs.iter().all(|&e| e < TOL), "{what}: relative errors (y, gu, gk, gd) {errs:?}");
            // Taps at and past T are not used: exactly no gradient.
            for ch in 0..c {
                assert!(mgk[ch * l + t..(ch + 1) * l].iter().all(|&v| v == 0.0), "{what}");
            }
        }
    }
}

#[test]
fn transpose_matches_a_plain_loop_with_and_without_avx2() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (rows, cols) in [(1, 1), (8, 8), (16, 24), (13, 19), (7, 9), (33, 8), (8, 5)] {
        let (ss, ds) = (cols + 3, rows + 5);
        let src = rand_vec(rows * ss, &mut rng);
        let mut want = vec![-1.0; cols * ds];
        for i in 0..rows {
            for j in 0..cols {
                want[j * ds + i] = src[i * ss + j];
            }
        }
        for simd in [None, avx2_fma()] {
            let mut got = vec![-1.0; cols * ds];
            transpose(&src, ss, &mut got, ds, rows, cols, simd);
            assert_eq!(got, want, "{rows}x{cols} avx {}", simd.is_some());
        }
    }
}

#[test]
fn portable_and_avx2_direct_kernels_agree() {
    // Both builds run on this machine only if it has AVX2 + FMA; the tests above then
    // check the AVX2 one, and this one the portable one against it.
    let Some(simd) = avx2_fma() else { return };
    let case = Case::new(2, 23, 27, 23, 5);
    let LongConvShape { len, channels: cc, .. } = case.shape;
    let kt = transposed_taps(&case.k, &case.shape);
    let gy = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(6));
    let lags = Lags { u: &case.u, gy: &gy, batch: 2, cc, len };
    let taps = Taps { src: &case.u[len * cc..], kt: &kt, d: &case.d, cc, len };
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()));
    let mut out = [vec![0.5f32; len * cc], vec![0.5f32; len * cc]];
    for (o, fma) in out.iter_mut().zip([None, Some(simd)]) {
        for (i, dst) in o.chunks_mut(ROWS * cc).enumerate() {
            taps.rows::<true>(fma, i * ROWS, dst, false);
        }
    }
    assert!(close(&out[0], &out[1]), "causal rows");
    for (o, fma) in out.iter_mut().zip([None, Some(simd)]) {
        for (i, dst) in o.chunks_mut(ROWS * cc).enumerate() {
            taps.rows::<false>(fma, i * ROWS, dst, true);
        }
    }
    assert!(close(&out[0], &out[1]), "anti-causal rows, accumulated");
    for (o, fma) in out.iter_mut().zip([None, Some(simd)]) {
        for (i, dst) in o.chunks_mut(ROWS * cc).enumerate() {
            lags.rows(fma, i * ROWS, dst);
        }
    }
    assert!(close(&out[0], &out[1]), "lags");
}

#[test]
fn auto_takes_direct_below_the_crossover_and_fft_from_it() {
    let from = super::fft_min_len();
    for (t, expect) in [(from - 1, LongConvMethod::Direct), (from, LongConvMethod::Fft)] {
        let case = Case::new(1, t, 3, t + 2, 7);
        assert_eq!(case.forward(LongConvMethod::Auto), case.forward(expect), "T={t}");
        let gy = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(case.backward(LongConvMethod::Auto, &gy), case.backward(expect, &gy), "T={t}");
    }
}

/// Σ w·y in f64 for the case's current parameters.
fn functional(case: &Case, method: LongConvMethod, w: &[f32]) -> f64 {
    case.forward(method).iter().zip(w).map(|(&y, &w)| y as f64 * w as f64).sum()
}

/// u, k or d of the case.
fn param(case: &mut Case, which: usize) -> &mut Vec<f32> {
    match which {
        0 => &mut case.u,
        1 => &mut case.k,
        _ => &mut case.d,
    }
}

#[test]
fn gradients_match_central_differences() {
    // y is linear in each of u, k and d, so a central difference is exact up to the
    // rounding of the f32 forward; a step of 0.1 keeps that rounding small.
    let h = 0.1f32;
    for method in METHODS {
        for (b, t, c, l) in [(2, 9, 3, 12), (1, 33, 2, 40)] {
            let mut case = Case::new(b, t, c, l, 11);
            let w = rand_vec(case.u.len(), &mut ChaCha8Rng::seed_from_u64(12));
            let (gu, gk, gd) = case.backward(method, &w);
            let grads = [gu, gk, gd];
            for (p, grad) in grads.iter().enumerate() {
                let scale = grad.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
                for (i, &analytic) in grad.iter().enumerate() {
                    let old = param(&mut case, p)[i];
                    param(&mut case, p)[i] = old + h;
                    let plus = functional(&case, method, &w);
                    param(&mut case, p)[i] = old - h;
                    let minus = functional(&case, method, &w);
                    param(&mut case, p)[i] = old;
                    let fd = (plus - minus) / (2.0 * h as f64);
                    let err = (fd - analytic as f64).abs();
                    assert!(err <= 1e-3 * scale + 1e-4, "{method:?} B={b} T={t} C={c} L={l} param {p} index {i}: analytic {analytic} vs fd {fd}");
                }
            }
        }
    }
}

#[test]
fn outputs_before_a_changed_input_do_not_change() {
    let (t, s) = (40, 17);
    for method in METHODS {
        let mut case = Case::new(3, t, 5, 48, 21);
        let before = case.forward(method);
        let cc = case.shape.channels;
        for ch in 0..cc {
            case.u[s * cc + ch] += 3.0; // batch item 0, time s
        }
        let after = case.forward(method);
        let scale = before.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = |range: std::ops::Range<usize>| range.map(|i| (after[i] - before[i]).abs()).fold(0.0f32, f32::max);
        // Direct summation never reads u[s] for t < s: bit-identical. The FFT mixes every
        // time step into every bin, and items 0 and 1 share a transform, so there the
        // earlier outputs and item 1 move by rounding only.
        let noise = if method == LongConvMethod::Direct { 0.0 } else { 1e-5 * scale };
        assert!(diff(0..s * cc) <= noise, "{method:?}: an output before the change moved by {}", diff(0..s * cc));
        assert!(diff(s * cc..(s + 1) * cc) > 0.1, "{method:?}: the output at the change did not move");
        assert!(diff(t * cc..2 * t * cc) <= noise, "{method:?}: batch item 1 moved by {}", diff(t * cc..2 * t * cc));
        assert_eq!(diff(2 * t * cc..3 * t * cc), 0.0, "{method:?}: batch item 2 moved");
    }
}

#[test]
fn backward_adds_into_the_buffers_and_skips_those_not_given() {
    for method in METHODS {
        let case = Case::new(2, 19, 18, 23, 31);
        let mut rng = ChaCha8Rng::seed_from_u64(32);
        let gy = rand_vec(case.u.len(), &mut rng);
        let (gu, gk, gd) = case.backward(method, &gy);
        let (gu0, gk0, gd0) = (rand_vec(gu.len(), &mut rng), rand_vec(gk.len(), &mut rng), rand_vec(gd.len(), &mut rng));
        let (mut gu1, mut gk1, mut gd1) = (gu0.clone(), gk0.clone(), gd0.clone());
        long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, Some(&mut gu1), Some(&mut gk1), Some(&mut gd1)).unwrap();
        for (got, (start, fresh)) in [(&gu1, (&gu0, &gu)), (&gk1, (&gk0, &gk)), (&gd1, (&gd0, &gd))] {
            for ((&g, &s), &f) in got.iter().zip(start).zip(fresh) {
                assert!((g - (s + f)).abs() <= 1e-5 * (1.0 + f.abs()), "{method:?}: {g} != {s} + {f}");
            }
        }
        // One gradient at a time: the same values, the others untouched.
        let mut only_gk = vec![0.0; gk.len()];
        long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, None, Some(&mut only_gk), None).unwrap();
        assert_eq!(only_gk, gk, "{method:?}");
        let mut only_gu = vec![0.0; gu.len()];
        long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, Some(&mut only_gu), None, None).unwrap();
        assert_eq!(only_gu, gu, "{method:?}");
        let mut only_gd = vec![0.0; gd.len()];
        long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, None, None, Some(&mut only_gd)).unwrap();
        assert_eq!(only_gd, gd, "{method:?}");
        long_conv_backward_with(method, &case.shape, &case.u, &case.k, &case.d, &gy, None, None, None).unwrap();
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let case = Case::new(2, 8, 3, 10, 41);
    let s = case.shape;
    let n = case.u.len();
    let is_shape = |r: Result<()>| matches!(r, Err(Error::Shape { .. }));
    for method in [LongConvMethod::Auto, LongConvMethod::Direct, LongConvMethod::Fft] {
        let fwd =
            |shape: &LongConvShape, u: &[f32], k: &[f32], d: &[f32], out_len: usize| long_conv_forward_with(method, shape, u, k, d, &mut vec![0.0; out_len]);
        assert!(fwd(&s, &case.u, &case.k, &case.d, n).is_ok());
        assert!(is_shape(fwd(&s, &case.u[1..], &case.k, &case.d, n)), "short u");
        assert!(is_shape(fwd(&s, &case.u, &case.k[1..], &case.d, n)), "short k");
        assert!(is_shape(fwd(&s, &case.u, &case.k, &case.d[1..], n)), "short d");
        assert!(is_shape(fwd(&s, &case.u, &case.k, &case.d, n + 1)), "long out");
        // L < T, with slices that match the shape given.
        let short = LongConvShape { filter_len: 7, ..s };
        assert!(is_shape(fwd(&short, &case.u, &case.k[..3 * 7], &case.d, n)), "filter shorter than the sequence");
        let huge = LongConvShape { batch: usize::MAX, ..s };
        assert!(is_shape(fwd(&huge, &case.u, &case.k, &case.d, n)), "overflowing shape");

        let gy = vec![0.0; n];
        let bwd = |gy: &[f32], gu: Option<&mut [f32]>, gk: Option<&mut [f32]>, gd: Option<&mut [f32]>| {
            long_conv_backward_with(method, &s, &case.u, &case.k, &case.d, gy, gu, gk, gd)
        };
        assert!(bwd(&gy, Some(&mut vec![0.0; n]), Some(&mut [0.0; 30]), Some(&mut [0.0; 3])).is_ok());
        assert!(is_shape(bwd(&gy[1..], None, None, None)), "short grad_out");
        assert!(is_shape(bwd(&gy, Some(&mut vec![0.0; n - 1]), None, None)), "short grad_u");
        assert!(is_shape(bwd(&gy, None, Some(&mut [0.0; 24]), None)), "grad_k of T taps instead of L");
        assert!(is_shape(bwd(&gy, None, None, Some(&mut [0.0; 4]))), "long grad_d");
        let r = long_conv_backward_with(method, &short, &case.u, &case.k[..21], &case.d, &gy, None, None, None);
        assert!(is_shape(r), "backward with a filter shorter than the sequence");
    }
}

#[test]
fn zero_sizes_are_no_ops() {
    for (b, t, c, l) in [(0, 5, 3, 5), (2, 0, 3, 0), (2, 5, 0, 5)] {
        let case = Case::new(b, t, c, l, 51);
        for method in METHODS {
            assert_eq!(case.forward(method).len(), b * t * c);
            let (gu, gk, gd) = case.backward(method, &vec![0.0; case.u.len()]);
            assert!(gu.iter().chain(&gk).chain(&gd).all(|&v| v == 0.0));
        }
    }
}
