//! Exact (erf) GELU and its derivative without a libm call per value: erf as Eigen's
//! `generic_fast_erf_float` rational approximation (odd, exact at 0, absolute error ~3e-7 in
//! f32) and the Gaussian by the loss's polynomial `exp`, branch-free so the slice loops
//! vectorize (built for AVX2 + FMA where the CPU has them, with the same operations, so the
//! same bits). `libm::erff` per value had been ~13% of a W4 training step.

use super::softmax::exp_nonpos;
use crate::tensor::cpu::{avx2_fma, simd_fn};

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / √(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `erf(x)`: x·P(x²)/Q(x²) on [-4, 4] (erf(±4) rounds to ±1 in f32), NaN kept.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const A1: f32 = -1.609_603_3e-2;
    const A3: f32 = -2.954_6e-3;
    const A5: f32 = -7.349_906_3e-4;
    const A7: f32 = -5.692_506_4e-5;
    const A9: f32 = -2.101_024e-6;
    const A11: f32 = 2.770_681_4e-8;
    const A13: f32 = -2.726_142_3e-10;
    const B0: f32 = -1.426_473_9e-2;
    const B2: f32 = -7.373_329e-3;
    const B4: f32 = -1.682_827e-3;
    const B6: f32 = -2.133_740_6e-4;
    const B8: f32 = -1.456_607_2e-5;
    // `clamp` keeps NaN, which then propagates through p / q.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ((((((A13 * x2 + A11) * x2 + A9) * x2 + A7) * x2 + A5) * x2 + A3) * x2 + A1) * x;
    let q = (((B8 * x2 + B6) * x2 + B4) * x2 + B2) * x2 + B0;
    p / q
}

/// Exact GELU: `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// `d gelu / dx = Φ(x) + x·φ(x)`.
#[inline(always)]
pub fn gelu_derivative(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2)) + x * exp_nonpos(-0.5 * x * x) * FRAC_1_SQRT_2PI
}

// Index loops over slices cut to one length: a `zip` of three iterators was left as an
// out-of-line `Zip::fold`, compiled without AVX2 and not vectorized.
#[inline(always)]
fn gelu_portable(out: &mut [f32], x: &[f32]) {
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    for i in 0..n {
        out[i] = gelu(x[i]);
    }
}

#[inline(always)]
fn gelu_backward_portable<const ADD: bool>(gx: &mut [f32], g: &[f32], x: &[f32]) {
    let n = gx.len().min(g.len()).min(x.len());
    let (gx, g, x) = (&mut gx[..n], &g[..n], &x[..n]);
    for i in 0..n {
        let d = g[i] * gelu_derivative(x[i]);
        gx[i] = if ADD { gx[i] + d } else { d };
    }
}

#[inline(always)]
fn gelu_grad_in_place_portable(g: &mut [f32], x: &[f32]) {
    let n = g.len().min(x.len());
    let (g, x) = (&mut g[..n], &x[..n]);
    for i in 0..n {
        g[i] *= gelu_derivative(x[i]);
    }
}

/// `out[i] = gelu(x[i])` (the AVX2 or AVX-512 build where the CPU has it, same bits).
pub fn gelu_slice(out: &mut [f32], x: &[f32]) {
    gelu_built(avx2_fma(), out, x)
}

/// `gx[i] += g[i] · gelu'(x[i])`.
pub fn gelu_backward_slice(gx: &mut [f32], g: &[f32], x: &[f32]) {
    gelu_backward_built(avx2_fma(), gx, g, x)
}

/// `gx[i] = g[i] · gelu'(x[i])` (overwrites).
pub fn gelu_grad_slice(gx: &mut [f32], g: &[f32], x: &[f32]) {
    gelu_grad_built(avx2_fma(), gx, g, x)
}

/// `g[i] = g[i] · gelu'(x[i])`: the same bits as [`gelu_grad_slice`], written over `g`.
pub fn gelu_grad_in_place(g: &mut [f32], x: &[f32]) {
    gelu_grad_in_place_built(avx2_fma(), g, x)
}

simd_fn! {
    fn gelu_grad_in_place_built(simd: Option<Avx2Fma>, g: &mut [f32], x: &[f32]) {
        gelu_grad_in_place_portable(g, x)
    }
}

simd_fn! {
    fn gelu_built(simd: Option<Avx2Fma>, out: &mut [f32], x: &[f32]) {
        gelu_portable(out, x)
    }
}

simd_fn! {
    fn gelu_backward_built(simd: Option<Avx2Fma>, gx: &mut [f32], g: &[f32], x: &[f32]) {
        gelu_backward_portable::<true>(gx, g, x)
    }
}

simd_fn! {
    fn gelu_grad_built(simd: Option<Avx2Fma>, gx: &mut [f32], g: &[f32], x: &[f32]) {
        gelu_backward_portable::<false>(gx, g, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_gelu_are_within_their_bounds_of_libm() {
        let (mut worst_erf, mut worst_gelu, mut worst_grad) = (0.0f64, 0.0f64, 0.0f64);
        for i in -24_000..=24_000 {
            let x = i as f32 * 5e-4; // -12 ..= 12
            worst_erf = worst_erf.max((erf(x) as f64 - libm::erf(x as f64)).abs());
            let exact = |x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            worst_gelu = worst_gelu.max((gelu(x) as f64 - exact(x as f64)).abs() / (1.0 + (x as f64).abs()));
            let h = 1e-4;
            let grad = (exact(x as f64 + h) - exact(x as f64 - h)) / (2.0 * h);
            worst_grad = worst_grad.max((gelu_derivative(x) as f64 - grad).abs());
        }
        eprintln!("worst: erf {worst_erf:e}, gelu {worst_gelu:e}, gelu' {worst_grad:e}");
        assert!(worst_erf < 5e-7, "erf: {worst_erf:e}");
        assert!(worst_gelu < 5e-7, "gelu: {worst_gelu:e}");
        assert!(worst_grad < 1e-6, "gelu': {worst_grad:e}");
        assert_eq!((erf(0.0), gelu(0.0), gelu_derivative(0.0)), (0.0, 0.0, 0.5));
        assert!((erf(f32::INFINITY) - 1.0).abs() < 2e-7 && erf(f32::NEG_INFINITY) == -erf(f32::INFINITY));
        assert!(gelu(f32::NAN).is_nan() && gelu_derivative(f32::NAN).is_nan());
    }

    #[test]
    fn slices_equal_the_scalar_functions_bit_for_bit() {
        let x: Vec<f32> = (0..1003).map(|i| (i as f32 - 501.0) * 0.0217).chain([f32::NAN, 1e-30, -40.0, 40.0]).collect();
        let g: Vec<f32> = x.iter().map(|v| 0.5 - v * 0.1).collect();
        let mut out = vec![0.0; x.len()];
        gelu_slice(&mut out, &x);
        let mut gx = vec![1.0; x.len()];
        gelu_backward_slice(&mut gx, &g, &x);
        let mut put = vec![f32::NAN; x.len()];
        gelu_grad_slice(&mut put, &g, &x);
        let mut in_place = g.clone();
        gelu_grad_in_place(&mut in_place, &x);
        for i in 0..x.len() {
            assert_eq!(out[i].to_bits(), gelu(x[i]).to_bits(), "gelu({})", x[i]);
            assert_eq!(gx[i].to_bits(), (1.0 + g[i] * gelu_derivative(x[i])).to_bits(), "gelu'({})", x[i]);
            assert_eq!(put[i].to_bits(), (g[i] * gelu_derivative(x[i])).to_bits(), "gelu'({})", x[i]);
            assert_eq!(in_place[i].to_bits(), put[i].to_bits(), "gelu'({}) in place", x[i]);
        }
    }
}

/// Nanoseconds per value of the elementwise kernels (one thread's CPU time), for comparing
/// builds: `CONVLM_CPU_DISABLE=avx512f cargo test --lib elementwise_speed -- --ignored
/// --nocapture` against the same without the variable.
#[cfg(test)]
#[test]
#[ignore]
fn elementwise_speed() {
    let cpu_seconds = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec to write.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    };
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 1001) as f32 - 500.0) * 0.01).collect();
    let mut out = vec![0.0f32; n];
    let gamma = vec![1.1f32; 128];
    let beta = vec![0.1f32; 128];
    let mut xhat = vec![0.0f32; n];
    let time = |f: &mut dyn FnMut()| {
        let mut best = f64::INFINITY;
        for _ in 0..15 {
            let t = cpu_seconds();
            f();
            best = best.min(cpu_seconds() - t);
        }
        best / n as f64 * 1e9
    };
    let gelu = time(&mut || gelu_slice(&mut out, &x));
    let gelu_bwd = time(&mut || gelu_backward_slice(&mut out, &x, &x));
    let softmax = time(&mut || {
        for row in out.chunks_mut(5000) {
            row.copy_from_slice(&x[..row.len()]);
            super::softmax::softmax_in_place(row, 0.5, avx2_fma());
        }
    });
    let ln = time(&mut || {
        for ((r, h), o) in x.chunks(128).zip(xhat.chunks_mut(128)).zip(out.chunks_mut(128)) {
            crate::tensor::layernorm_row(r, &gamma, &beta, 1e-5, h, o);
        }
    });
    let avx512 = crate::tensor::cpu::avx512f();
    println!("ns per value (AVX-512 {avx512}): gelu {gelu:.3}, gelu backward {gelu_bwd:.3}, softmax (copy + in place) {softmax:.3}, layernorm {ln:.3}");
}
