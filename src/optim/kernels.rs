//! Element-wise update loops, written to round exactly as PyTorch's CPU kernels do.
//!
//! PyTorch's vectorized CPU kernels use fused multiply-adds in `add(other, alpha)` and
//! `lerp`, and separate roundings in `addcmul`/`addcdiv`; the loops below mirror that, per
//! element, with `f32::mul_add`. On x86-64 CPUs with FMA they are compiled for AVX2+FMA
//! (so `mul_add` is one instruction and the loop vectorizes); elsewhere `mul_add` is the
//! correctly rounded library `fmaf`, which gives the same bits. Large tensors are split
//! into chunks updated in parallel on the rayon pool.

use rayon::prelude::*;

use crate::tensor::all_finite;
use crate::tensor::cpu::{avx2_fma, Avx2Fma};

/// Elements per parallel work item; tensors no larger than this are updated inline.
const CHUNK: usize = 1 << 15;

/// Per-step f32 constants of one SGD update (already rounded as PyTorch rounds them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgdScalars {
    /// L2 coefficient added to the gradient (`grad + wd * p`); used when decay applies.
    pub weight_decay: f32,
    /// Momentum factor.
    pub momentum: f32,
    /// `-lr`.
    pub neg_lr: f32,
    /// True on the first step, when the momentum buffer is initialized to the gradient.
    pub first: bool,
}

/// Per-step f32 constants of one Adam/AdamW update.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamScalars {
    /// L2 coefficient (Adam) added to the gradient; used when `l2` decay applies.
    pub weight_decay: f32,
    /// `1 - lr * wd` (AdamW) multiplying the parameter; used when decoupled decay applies.
    pub decay_factor: f32,
    /// `1 - beta1`, the `lerp` weight of the first moment.
    pub lerp_weight: f32,
    /// `beta2`.
    pub beta2: f32,
    /// `1 - beta2`.
    pub one_minus_beta2: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
    /// `eps`.
    pub eps: f32,
    /// `-lr / (1 - beta1^t)`.
    pub neg_step_size: f32,
}

/// Which weight decay a tensor gets in an Adam-family update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdamDecay {
    /// No decay (parameter excluded, or weight decay 0).
    None,
    /// Adam: `grad += wd * p`.
    L2,
    /// AdamW: `p *= 1 - lr * wd`.
    Decoupled,
}

/// One SGD update of a tensor: `p`, its gradient `g` and momentum buffer `buf` (empty when
/// momentum is 0). `decay` says whether L2 weight decay applies to this tensor. Returns
/// whether every updated value is finite (checked on each chunk while it is in cache).
pub(crate) fn sgd_update(p: &mut [f32], g: &[f32], buf: &mut [f32], s: &SgdScalars, decay: bool) -> bool {
    let simd = avx2_fma();
    let momentum = !buf.is_empty();
    let run = |p: &mut [f32], g: &[f32], b: &mut [f32]| {
        sgd_dispatch(p, g, b, s, decay, momentum, simd);
        all_finite(p)
    };
    if p.len() <= CHUNK {
        return run(p, g, buf);
    }
    if momentum {
        p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(buf.par_chunks_mut(CHUNK)).map(|((p, g), b)| run(p, g, b)).reduce(|| true, |a, b| a && b)
    } else {
        p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).map(|(p, g)| run(p, g, &mut [])).reduce(|| true, |a, b| a && b)
    }
}

/// One Adam/AdamW update of a tensor with its moments `m` and `v`. Returns whether every
/// updated parameter value is finite.
pub(crate) fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamScalars, decay: AdamDecay) -> bool {
    let simd = avx2_fma();
    let run = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        adam_dispatch(p, g, m, v, s, decay, simd);
        all_finite(p)
    };
    if p.len() <= CHUNK {
        return run(p, g, m, v);
    }
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .map(|(((p, g), m), v)| run(p, g, m, v))
        .reduce(|| true, |a, b| a && b)
}

/// One step of an exponential moving average of a tensor: `avg.lerp_(p, weight)`, as
/// `torch.optim.swa_utils.get_ema_multi_avg_fn` updates an averaged model (`weight` is
/// `1 - decay`), rounded as ATen's lerp.
pub(crate) fn average_update(avg: &mut [f32], p: &[f32], weight: f32) {
    let simd = avx2_fma();
    let run = |a: &mut [f32], p: &[f32]| average_dispatch(a, p, weight, simd);
    if avg.len() <= CHUNK {
        return run(avg, p);
    }
    avg.par_chunks_mut(CHUNK).zip(p.par_chunks(CHUNK)).for_each(|(a, p)| run(a, p));
}

macro_rules! dispatch {
    ($simd:expr, $generic:ident, $fast:ident, <$($c:tt),*>, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        if $simd.is_some() {
            // SAFETY: an `Avx2Fma` token exists only on a CPU with AVX2 and FMA.
            unsafe { $fast::<$($c),*>($($arg),*) };
            return;
        }
        let _ = $simd;
        $generic::<$($c),*>($($arg),*)
    }};
}

fn sgd_dispatch(p: &mut [f32], g: &[f32], b: &mut [f32], s: &SgdScalars, decay: bool, momentum: bool, fma: Option<Avx2Fma>) {
    match (decay, momentum) {
        (false, false) => dispatch!(fma, sgd_loop, sgd_fma, <false, false>, (p, g, b, s)),
        (false, true) => dispatch!(fma, sgd_loop, sgd_fma, <false, true>, (p, g, b, s)),
        (true, false) => dispatch!(fma, sgd_loop, sgd_fma, <true, false>, (p, g, b, s)),
        (true, true) => dispatch!(fma, sgd_loop, sgd_fma, <true, true>, (p, g, b, s)),
    }
}

fn adam_dispatch(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamScalars, decay: AdamDecay, fma: Option<Avx2Fma>) {
    match decay {
        AdamDecay::None => dispatch!(fma, adam_loop, adam_fma, <false, false>, (p, g, m, v, s)),
        AdamDecay::L2 => dispatch!(fma, adam_loop, adam_fma, <true, false>, (p, g, m, v, s)),
        AdamDecay::Decoupled => dispatch!(fma, adam_loop, adam_fma, <false, true>, (p, g, m, v, s)),
    }
}

fn average_dispatch(a: &mut [f32], p: &[f32], w: f32, fma: Option<Avx2Fma>) {
    // ATen's lerp takes one of two roundings by the weight; the choice is made once here.
    if w.abs() < 0.5 {
        dispatch!(fma, average_loop, average_fma, <true>, (a, p, w))
    } else {
        dispatch!(fma, average_loop, average_fma, <false>, (a, p, w))
    }
}

/// The portable loop compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn average_fma<const SMALL: bool>(a: &mut [f32], p: &[f32], w: f32) {
    average_loop::<SMALL>(a, p, w)
}

/// The portable loop compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sgd_fma<const L2: bool, const MOM: bool>(p: &mut [f32], g: &[f32], b: &mut [f32], s: &SgdScalars) {
    sgd_loop::<L2, MOM>(p, g, b, s)
}

/// The portable loop compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_fma<const L2: bool, const DEC: bool>(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamScalars) {
    adam_loop::<L2, DEC>(p, g, m, v, s)
}

/// `avg.lerp_(p, w)` per element, as ATen rounds it: `avg + w*(p-avg)` when |w| < 0.5
/// (`SMALL`), else `p - (1-w)*(p-avg)`, each one fused multiply-add.
#[inline(always)]
fn average_loop<const SMALL: bool>(a: &mut [f32], p: &[f32], w: f32) {
    let n = a.len().min(p.len());
    let (a, p) = (&mut a[..n], &p[..n]);
    let w_minus_1 = w - 1.0;
    for i in 0..n {
        let diff = p[i] - a[i];
        a[i] = if SMALL { w.mul_add(diff, a[i]) } else { w_minus_1.mul_add(diff, p[i]) };
    }
}

/// `torch.optim.SGD` (`_single_tensor_sgd`, dampening 0, not Nesterov):
/// `d = g.add(p, alpha=wd)`; `buf = d` on the first step, else `buf = buf * momentum + d`;
/// `p.add_(buf, alpha=-lr)`.
#[inline(always)]
fn sgd_loop<const L2: bool, const MOM: bool>(p: &mut [f32], g: &[f32], b: &mut [f32], s: &SgdScalars) {
    let n = p.len().min(g.len());
    let (p, g) = (&mut p[..n], &g[..n]);
    if MOM {
        let b = &mut b[..n];
        for i in 0..n {
            let d = if L2 { p[i].mul_add(s.weight_decay, g[i]) } else { g[i] };
            b[i] = if s.first { d } else { b[i] * s.momentum + d };
            p[i] = b[i].mul_add(s.neg_lr, p[i]);
        }
    } else {
        for i in 0..n {
            let d = if L2 { p[i].mul_add(s.weight_decay, g[i]) } else { g[i] };
            p[i] = d.mul_add(s.neg_lr, p[i]);
        }
    }
}

/// `torch.optim.Adam`/`AdamW` (`_single_tensor_adam`), per element:
/// `g = g.add(p, alpha=wd)` (Adam) or `p *= 1 - lr*wd` (AdamW); `m.lerp_(g, 1-beta1)`;
/// `v = v*beta2 + (1-beta2)*g*g`; `denom = sqrt(v)/sqrt(bc2) + eps`;
/// `p += (-step_size * m) / denom`.
#[inline(always)]
fn adam_loop<const L2: bool, const DEC: bool>(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamScalars) {
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
    let w = s.lerp_weight;
    // ATen's lerp: `start + w*(end-start)` when |w| < 0.5, else `end - (1-w)*(end-start)`,
    // each as one fused multiply-add.
    let small = w.abs() < 0.5;
    let w_minus_1 = w - 1.0;
    for i in 0..n {
        let gi = if L2 { p[i].mul_add(s.weight_decay, g[i]) } else { g[i] };
        if DEC {
            p[i] *= s.decay_factor;
        }
        let diff = gi - m[i];
        m[i] = if small { w.mul_add(diff, m[i]) } else { w_minus_1.mul_add(diff, gi) };
        v[i] = v[i] * s.beta2 + s.one_minus_beta2 * gi * gi;
        let denom = v[i].sqrt() / s.bias_correction2_sqrt + s.eps;
        p[i] += s.neg_step_size * m[i] / denom;
    }
}
