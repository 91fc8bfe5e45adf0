//! CPU features, detected once per process: the one place convlm asks which SIMD code it may
//! run. Kernels with an AVX2 + FMA build take an [`Avx2Fma`] token, which only
//! [`avx2_fma`] can make (`simd_fn!` builds a function's loops for AVX2 and AVX-512), and the bf16 products an [`Avx512Bf16`] token, which only
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

/// Proof that this CPU executes the AVX-512 instructions of the fp32 AVX-512 GEMM: AVX512F
/// and AVX512VL (and so AVX2 and FMA). Only [`avx512`] makes one (or an [`Avx512Bf16`],
/// whose features include these); code holding one may call functions compiled with
/// `#[target_feature(enable = "avx512f,avx512vl")]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx512 {
    _checked: (),
}

/// The AVX-512 token when the CPU has AVX512F and AVX512VL (checked once, then cached).
pub fn avx512() -> Option<Avx512> {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    let present = *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") && !disabled("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    });
    present.then_some(Avx512 { _checked: () })
}

/// Proof that this CPU executes the AVX-512 instructions of the bf16 products: AVX512F,
/// AVX512BW, AVX512VL and AVX512_BF16 (`vdpbf16ps`, `vcvtne2ps2bf16`). Only
/// [`avx512_bf16`] makes one; code holding one may call functions compiled with
/// `#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx512Bf16 {
    _checked: (),
}

impl Avx512Bf16 {
    /// The fp32 AVX-512 token: AVX512_BF16's checked features include AVX512F and AVX512VL.
    pub fn avx512(self) -> Avx512 {
        Avx512 { _checked: () }
    }
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

/// Whether the CPU has AVX-512F (checked once, then cached): for builds that pick their
/// vector width ([`simd_fn!`]) and the peak measurement.
pub fn avx512f() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f") && !disabled("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Defines `fn $name(simd: Option<Avx2Fma>, args...)` from a body compiled three times:
/// as it is, with AVX2 + FMA enabled (taken when `simd` is given), and with AVX-512F enabled
/// as well (taken when `simd` is given and the CPU has it), so the loops of the body (and of
/// the `#[inline(always)]` functions it calls) vectorize 4, 8 or 16 lanes wide. Rust never
/// contracts `a * b + c` into an FMA nor reorders a sum, so every build computes the same
/// values. AVX-512 doubles the lanes per instruction: twice the arithmetic where it runs on
/// full-width units (Zen 5, Intel server cores), half the instructions to issue where it
/// runs on 256-bit ones (Zen 4).
///
/// The body is a plain function called from each build, never a closure: a closure handed
/// to a `#[target_feature]` function was compiled apart, without the features, whenever
/// it landed in another codegen unit (it did for LayerNorm's and the depthwise conv's
/// loops, which then ran 4 lanes wide).
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($simd:ident: Option<Avx2Fma> $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($simd: Option<$crate::tensor::cpu::Avx2Fma> $(, $arg: $ty)*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $simd.is_some() {
                if $crate::tensor::cpu::avx512f() {
                    // SAFETY: the token proves AVX2 and FMA, and AVX-512F was detected.
                    return unsafe { avx512($($arg),*) };
                }
                // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA.
                return unsafe { avx2($($arg),*) };
            }
            let _ = $simd;
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

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
