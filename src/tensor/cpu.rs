//! CPU features, detected once per process: the one place convlm asks which SIMD code it may
//! run. Kernels with an AVX2 + FMA build take an [`Avx2Fma`] token, which only
//! [`avx2_fma`] can make, so a safe function cannot be asked to run instructions the CPU
//! lacks.

use std::sync::OnceLock;

/// Proof that this CPU executes AVX2 and FMA instructions. It has a private field, so the
/// only way to get one is [`avx2_fma`], which returns it after checking the CPU; code holding
/// one may call `#[target_feature(enable = "avx2,fma")]` functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2Fma {
    _checked: (),
}

/// The AVX2 + FMA token when the CPU has both features (checked once, then cached).
pub fn avx2_fma() -> Option<Avx2Fma> {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    let present = *DETECTED.get_or_init(detect);
    present.then_some(Avx2Fma { _checked: () })
}

/// Whether the CPU has AVX-512F (checked once, then cached). Only [`crate::tensor::matmul`]
/// asks: the `gemm` crate's AVX-512 kernels are faster than convlm's own AVX2 GEMM there.
pub fn avx512f() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Runs `body` inside a function compiled with AVX2 + FMA enabled when `simd` is given, so
/// the loops of a closure inlined into it vectorize 8 lanes wide; otherwise runs it as is.
/// Rust never contracts `a * b + c` into an FMA, so both builds compute the same values.
#[inline(always)]
pub fn with_avx2<R>(simd: Option<Avx2Fma>, body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if let Some(token) = simd {
        return run_avx2(token, body);
    }
    let _ = simd;
    body()
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn run_avx2<R>(_token: Avx2Fma, body: impl FnOnce() -> R) -> R {
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn inner<R>(body: impl FnOnce() -> R) -> R {
        body()
    }
    // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA.
    unsafe { inner(body) }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_follows_the_cpu() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(super::avx2_fma().is_some(), std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"));
        #[cfg(not(target_arch = "x86_64"))]
        assert!(super::avx2_fma().is_none());
    }
}
