//! Gradient norm, clipping and divergence detection.

use crate::nn::ParamStore;
use rayon::prelude::*;

/// Elements summed per work item; the partial sums are added in a fixed order so the norm
/// does not depend on the thread count.
const CHUNK: usize = 1 << 15;

/// Sum of squares of `xs` in f64 over eight interleaved accumulators (so the loop
/// vectorizes), combined in a fixed order.
fn part(xs: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut lanes = xs.chunks_exact(8);
    for c in &mut lanes {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += (x as f64) * (x as f64);
        }
    }
    let tail: f64 = lanes.remainder().iter().map(|&x| (x as f64) * (x as f64)).sum();
    acc.iter().sum::<f64>() + tail
}

/// Sum of squares of `xs` in f64, deterministic for a given length.
fn sum_sq(xs: &[f32]) -> f64 {
    if xs.len() <= CHUNK {
        return part(xs);
    }
    let partials: Vec<f64> = xs.par_chunks(CHUNK).map(part).collect();
    partials.iter().sum()
}

/// Total L2 norm of all gradients (as one concatenated vector), accumulated in f64.
/// NaN or infinite when any gradient element is.
pub fn grad_norm(params: &ParamStore) -> f64 {
    params.params().iter().map(|p| sum_sq(p.grad.data())).sum::<f64>().sqrt()
}

/// `torch.nn.utils.clip_grad_norm_`: computes the total gradient norm and, when
/// `max_norm / (norm + 1e-6) < 1`, multiplies every gradient by that (f32) factor. Returns
/// the norm before clipping. When the norm is NaN or infinite the gradients are left
/// untouched (PyTorch would fill them with NaN); check the result or
/// [`first_non_finite`] to detect divergence.
pub fn clip_grad_norm(params: &mut ParamStore, max_norm: f32) -> f32 {
    let norm = grad_norm(params);
    if !norm.is_finite() {
        return norm as f32;
    }
    let coef = (max_norm as f64 / (norm + 1e-6)) as f32;
    if coef < 1.0 {
        for p in params.params_mut() {
            let g = p.grad.data_mut();
            if g.len() <= CHUNK {
                g.iter_mut().for_each(|x| *x *= coef);
            } else {
                g.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|x| *x *= coef));
            }
        }
    }
    norm as f32
}

/// The name of the first parameter (in store order) whose gradient holds a NaN or an
/// infinity, if any.
pub fn first_non_finite(params: &ParamStore) -> Option<String> {
    params.params().iter().find(|p| !p.grad.all_finite()).map(|p| p.name.clone())
}
