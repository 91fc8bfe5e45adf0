// Shared by every module: the parameter words of a dispatch and the 1-D grid numbering.
struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> params: Params;

// Parameter word i as u32.
fn pu(i: u32) -> u32 { return params.w[i >> 2u][i & 3u]; }
// Parameter word i as f32 (stored as its bits).
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }
// The flat index of an invocation in a 1-D grid of `size`-wide workgroups laid out as
// (x, y) workgroups (a grid may exceed the 65535 workgroups of one dimension).
fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, size: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * size + lid.x;
}
// The flat workgroup index of such a grid.
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
// Whether a value is neither NaN nor infinite (from its bits: fast-math may fold x != x).
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}
// tanh from exp, exact at the ends: |x| > 15 is ±1 to f32 precision.
fn tanh_f(x: f32) -> f32 {
    let c = clamp(x, -15.0, 15.0);
    let e = exp(2.0 * c);
    return (e - 1.0) / (e + 1.0);
}
fn sigmoid_f(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}
// erf as the CPU engine computes it (kernels/pointwise.rs: Eigen's rational approximation
// on [-4, 4], absolute error ~3e-7).
fn erf_f(x0: f32) -> f32 {
    let x = clamp(x0, -4.0, 4.0);
    let x2 = x * x;
    let p = ((((((-2.7261423e-10 * x2 + 2.7706814e-8) * x2 + -2.101024e-6) * x2 + -5.6925064e-5) * x2 + -7.3499063e-4) * x2 + -2.9546e-3) * x2 + -1.6096033e-2) * x;
    let q = (((-1.4566072e-5 * x2 + -2.1337406e-4) * x2 + -1.682827e-3) * x2 + -7.373329e-3) * x2 + -1.4264739e-2;
    return p / q;
}
fn gelu_f(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_f(x * 0.70710678118654752));
}
// d gelu / dx = Φ(x) + x·φ(x).
fn gelu_grad_f(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf_f(x * 0.70710678118654752));
    let pdf = 0.39894228040143268 * exp(-0.5 * x * x);
    return cdf + x * pdf;
}
