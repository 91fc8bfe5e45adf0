//! The precision a graph's matrix products compute in (`--precision`, `train.precision`).

use serde::{Deserialize, Serialize};

use super::cpu;
use super::kernels::matmul::Gemm;
use crate::error::{Error, Result};

/// What a graph's matmuls and convolutions compute in, as `torch.autocast("cpu",
/// dtype=torch.bfloat16)` chooses: with `Bf16` the products of linear layers and
/// convolutions (the fused output conv or linear head included) take bf16 inputs and
/// accumulate in fp32; everything else — activations, softmax, the loss, the norms, the
/// long convolution's FFT, the optimizer and the parameters themselves — stays fp32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 everywhere.
    #[default]
    Fp32,
    /// bf16 products with fp32 accumulation (CPUs with AVX512_BF16).
    Bf16,
    /// `Bf16` on a CPU that has AVX512_BF16, `Fp32` elsewhere (a GPU included): what a preset
    /// asks for to run as fast as each machine allows. A new run records the precision it
    /// chose in its config.json ([`Precision::resolve`]), so that a resume computes as it began.
    Auto,
}

impl Precision {
    /// `"fp32"` or `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Auto => "auto",
        }
    }

    /// The precision a run on the CPU (`on_cpu`) or a GPU computes in: `Auto` chosen for this
    /// machine, the others as they are.
    pub fn resolve(self, on_cpu: bool) -> Precision {
        match self {
            Precision::Auto if on_cpu && cpu::avx512_bf16().is_some() => Precision::Bf16,
            Precision::Auto => Precision::Fp32,
            chosen => chosen,
        }
    }

    /// The products this precision runs on this CPU; for bf16 on a CPU without
    /// AVX512_BF16, an error naming the missing feature and the flag.
    pub fn products(self) -> Result<Gemm> {
        match self {
            Precision::Fp32 => Ok(Gemm::F32),
            Precision::Auto => self.resolve(true).products(),
            Precision::Bf16 => cpu::avx512_bf16().map(Gemm::Bf16).ok_or_else(|| {
                Error::config(
                    "precision",
                    format!(
                        "bf16 needs a CPU with the AVX512_BF16 instructions (vdpbf16ps: Intel Cooper Lake, Sapphire Rapids and later, AMD Zen 4 and later), and this one ({}) does not have them; use --precision fp32 (train.precision = \"fp32\")",
                        cpu::model_name()
                    ),
                )
            }),
        }
    }

    /// Checks that this CPU can run the precision (see [`Precision::products`]).
    pub fn check_cpu(self) -> Result<()> {
        self.products().map(|_| ())
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "auto" => Ok(Precision::Auto),
            _ => Err(Error::config("precision", format!("must be fp32, bf16 or auto, got `{s}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_serialize_as_the_flag_spells_them() {
        for p in [Precision::Fp32, Precision::Bf16, Precision::Auto] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("fp16"), "{err}");
    }

    #[test]
    fn auto_is_bf16_exactly_on_a_cpu_with_the_instructions_and_fp32_on_a_gpu() {
        let has = cpu::avx512_bf16().is_some();
        assert_eq!(Precision::Auto.resolve(true), if has { Precision::Bf16 } else { Precision::Fp32 });
        assert_eq!(Precision::Auto.resolve(false), Precision::Fp32);
        assert_eq!(Precision::Auto.products().unwrap(), Precision::Auto.resolve(true).products().unwrap());
        for p in [Precision::Fp32, Precision::Bf16] {
            assert_eq!((p.resolve(true), p.resolve(false)), (p, p));
        }
    }

    #[test]
    fn bf16_products_exist_exactly_where_the_cpu_has_the_instructions() {
        assert_eq!(Precision::Fp32.products().unwrap(), Gemm::F32);
        match Precision::Bf16.products() {
            Ok(g) => assert!(matches!(g, Gemm::Bf16(_)) && cpu::avx512_bf16().is_some()),
            Err(e) => {
                let msg = e.to_string();
                assert!(cpu::avx512_bf16().is_none());
                assert!(msg.contains("AVX512_BF16") && msg.contains("--precision fp32"), "{msg}");
            }
        }
    }
}
