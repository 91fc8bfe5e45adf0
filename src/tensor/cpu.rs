//! CPU features, detected once per process: the one place convlm asks which SIMD code it may
//! run. Kernels with an AVX2 + FMA build take an [`Avx2Fma`] token, which only
//! [`avx2_fma`] can make, and the bf16 products an [`Avx512Bf16`] token, which only
//! [`avx512_bf16`] can make, so a safe function cannot be asked to run instructions the CPU
//! lacks.
//!
//! `CONVLM_CPU_DISABLE` (a comma-separated list of `avx2`, `avx512f`, `avx512bf16`) makes
//! detection report those features absent: a CPU without them is tried on one that has
//! them (the error a bf16 run gives, the AVX2 GEMM on an AVX-512 CPU).

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
    let present = *DETECTED.get_or_init(|| detect() && !disabled("avx2"));
    present.then_some(Avx2Fma { _checked: () })
}

/// Proof that this CPU executes the AVX-512 instructions of the bf16 products: AVX512F,
/// AVX512BW, AVX512VL and AVX512_BF16 (`vdpbf16ps`, `vcvtne2ps2bf16`). Only
/// [`avx512_bf16`] makes one; code holding one may call functions compiled with
/// `#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx512Bf16 {
    _checked: (),
}

/// The bf16 token when the CPU has AVX512_BF16 and the AVX-512 subsets its kernels use
/// (checked once, then cached).
pub fn avx512_bf16() -> Option<Avx512Bf16> {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    let present = *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && !disabled("avx512f")
            && !disabled("avx512bf16");
        #[cfg(not(target_arch = "x86_64"))]
        false
    });
    present.then_some(Avx512Bf16 { _checked: () })
}

/// The CPU's model name (`/proc/cpuinfo`'s `model name`, with its family and model
/// numbers on x86), e.g. `AMD EPYC (family 26, model 2)`; `unknown CPU` where the system
/// does not say. Benchmarks print it, and the measured choices are cached under it.
pub fn model_name() -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| {
            info.lines().find(|l| l.split(':').next().is_some_and(|k| k.trim() == key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
        };
        let name = field("model name").unwrap_or_else(|| "unknown CPU".to_string());
        match (field("cpu family"), field("model")) {
            (Some(family), Some(model)) => format!("{name} (family {family}, model {model})"),
            _ => name,
        }
    })
    .clone()
}

/// Whether `CONVLM_CPU_DISABLE` names `feature`.
fn disabled(feature: &str) -> bool {
    std::env::var("CONVLM_CPU_DISABLE").is_ok_and(|list| list.split(',').any(|f| f.trim().eq_ignore_ascii_case(feature)))
}

/// Whether the CPU has AVX-512F (checked once, then cached). Only [`crate::tensor::matmul`]
/// asks: the `gemm` crate's AVX-512 kernels are faster than convlm's own AVX2 GEMM there.
pub fn avx512f() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f") && !disabled("avx512f");
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
        let off = |f: &str| std::env::var("CONVLM_CPU_DISABLE").is_ok_and(|l| l.split(',').any(|x| x.trim() == f));
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(super::avx2_fma().is_some(), std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && !off("avx2"));
            let bf16 = std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512bw");
            assert_eq!(super::avx512_bf16().is_some(), bf16 && !off("avx512bf16") && !off("avx512f"));
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert!(super::avx2_fma().is_none() && super::avx512_bf16().is_none());
    }

    #[test]
    fn the_model_name_is_one_line() {
        let name = super::model_name();
        assert!(!name.is_empty() && !name.contains('\n'), "{name:?}");
    }
}
