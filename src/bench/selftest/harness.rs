//! The comparison: the same op recorded on a CPU [`Graph`] and a [`GpuGraph`] from the same
//! inputs, back-propagated from the same seed, values and input gradients compared.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Check;
use crate::error::Result;
use crate::tensor::gpu::{GpuDevice, GpuGraph, GpuTensor};
use crate::tensor::{Graph, Tensor, Var};

/// The default tolerance (relative to a tensor's largest value).
pub(super) const TOL: f64 = 1e-4;

/// `max |got − want| / max |want|` (NaN anywhere in `got` gives infinity).
pub(super) fn error(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs())).max(1e-30);
    let mut worst = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() && g.to_bits() != w.to_bits() {
            return f64::INFINITY;
        }
        worst = worst.max((g as f64 - w as f64).abs());
    }
    worst / scale
}

/// Uniform values in [-scale, scale) from a generator seeded by `seed`.
pub(super) fn uniform(shape: &[usize], scale: f32, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
    Tensor::new(shape.to_vec(), data).unwrap_or_default()
}

/// A seed from a case's name, so each case draws its own inputs.
pub(super) fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// An op as the CPU tape records it.
pub(super) type CpuOp<'a> = &'a dyn Fn(&mut Graph, &[Var]) -> Result<Var>;
/// The same op on the GPU tape.
pub(super) type GpuOp<'a> = &'a dyn Fn(&mut GpuGraph, &[Var]) -> Result<Var>;

/// Records `cpu` and `gpu` on `inputs` (leaves with gradients), back-propagates a random seed
/// (1 for a scalar output), and appends the forward and backward comparisons.
pub(super) fn compare(device: &GpuDevice, case: &str, inputs: &[Tensor], cpu: CpuOp, gpu: GpuOp, tolerance: f64, out: &mut Vec<Check>) -> Result<()> {
    let mut g = Graph::new(true);
    let vars: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
    let y = cpu(&mut g, &vars)?;
    let want_y = g.value(y).clone();
    let scalar = want_y.numel() == 1;
    let seed = if scalar { Tensor::full(vec![1], 1.0) } else { uniform(want_y.shape(), 1.0, seed_of(case) ^ 1) };
    g.backward_with(y, seed.data().to_vec())?;
    let want_grads: Vec<Option<Vec<f32>>> = vars.iter().map(|&v| g.grad(v).map(<[f32]>::to_vec)).collect();

    let mut gg = GpuGraph::new(device, true);
    let mut gvars = Vec::with_capacity(inputs.len());
    for t in inputs {
        gvars.push(gg.leaf(GpuTensor::upload(device, t)?));
    }
    let gy = gpu(&mut gg, &gvars)?;
    let got_y = gg.value(gy).to_vec()?;
    if scalar {
        gg.backward(gy)?;
    } else {
        gg.backward_with(gy, GpuTensor::upload(device, &seed)?)?;
    }
    out.push(Check { case: case.to_string(), pass: "forward", error: error(&got_y, want_y.data()), tolerance });
    let mut worst = 0.0f64;
    for (v, want) in gvars.iter().zip(&want_grads) {
        let got = match gg.grad(*v) {
            Some(t) => Some(t.to_vec()?),
            None => None,
        };
        let e = match (got, want) {
            (Some(a), Some(b)) => error(&a, b),
            (None, None) => 0.0,
            (Some(a), None) => error(&a, &vec![0.0; a.len()]),
            (None, Some(b)) => error(&vec![0.0; b.len()], b),
        };
        worst = worst.max(e);
    }
    out.push(Check { case: case.to_string(), pass: "backward", error: worst, tolerance });
    Ok(())
}

/// The same closure body for both tapes: `both!(|g, v| g.linear(v[0], v[1], None))`.
macro_rules! both {
    (|$g:ident, $v:ident| $body:expr) => {
        (
            &|$g: &mut $crate::tensor::Graph, $v: &[$crate::tensor::Var]| -> $crate::error::Result<$crate::tensor::Var> { $body },
            &|$g: &mut $crate::tensor::gpu::GpuGraph, $v: &[$crate::tensor::Var]| -> $crate::error::Result<$crate::tensor::Var> { $body },
        )
    };
}
pub(super) use both;
