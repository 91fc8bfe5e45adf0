//! AVX2 + FMA helpers shared by the long convolution's kernels: bounds-checked vector loads
//! and stores (the only raw-pointer accesses) and 8 × 8 transposes. Safe `#[target_feature]`
//! functions: callers outside AVX2 code hold an `Avx2Fma` token before calling them.

use std::arch::x86_64::*;

/// The first 8 values of `s` (bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn load(s: &[f32]) -> __m256 {
    let s = &s[..8];
    // SAFETY: `s` holds 8 values (checked just above); unaligned loads are allowed.
    unsafe { _mm256_loadu_ps(s.as_ptr()) }
}

/// Stores `x` into the first 8 values of `s` (bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn store(s: &mut [f32], x: __m256) {
    let s = &mut s[..8];
    // SAFETY: `s` holds 8 values (checked just above); unaligned stores are allowed.
    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), x) }
}

/// [`super::transpose`] of the first `rows` × `cols` values, both multiples of 8.
#[target_feature(enable = "avx2,fma")]
pub(super) fn transpose_tiles(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, rows: usize, cols: usize) {
    for i0 in (0..rows).step_by(8) {
        for j0 in (0..cols).step_by(8) {
            transpose8(&src[i0 * ss + j0..], ss, &mut dst[j0 * ds + i0..], ds);
        }
    }
}

/// `dst[j * ds + i] = src[i * ss + j]` for `i, j < 8`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(src: &[f32], ss: usize, dst: &mut [f32], ds: usize) {
    let mut r = [_mm256_setzero_ps(); 8];
    for (i, r) in r.iter_mut().enumerate() {
        *r = load(&src[i * ss..]);
    }
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves.
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    let q = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    let o = [
        _mm256_permute2f128_ps::<0x20>(q[0], q[4]),
        _mm256_permute2f128_ps::<0x20>(q[1], q[5]),
        _mm256_permute2f128_ps::<0x20>(q[2], q[6]),
        _mm256_permute2f128_ps::<0x20>(q[3], q[7]),
        _mm256_permute2f128_ps::<0x31>(q[0], q[4]),
        _mm256_permute2f128_ps::<0x31>(q[1], q[5]),
        _mm256_permute2f128_ps::<0x31>(q[2], q[6]),
        _mm256_permute2f128_ps::<0x31>(q[3], q[7]),
    ];
    for (j, o) in o.iter().enumerate() {
        store(&mut dst[j * ds..], *o);
    }
}
