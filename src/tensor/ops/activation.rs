//! Elementwise ops: add, mul, scale, tanh, relu, gelu, sigmoid, and GLU over the last axis.

use super::{copy_of, map_slices, put_zip, zip3_slices, zip_map};
use crate::error::{Error, Result};
use crate::tensor::graph::{BackwardOp, GradCtx, Graph, Var};
use crate::tensor::kernels::pointwise::{gelu, gelu_backward_slice, gelu_derivative, gelu_grad_in_place, gelu_grad_slice, gelu_slice};
use crate::tensor::Tensor;

/// Which pointwise activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
    /// Exact (erf) GELU, as `torch.nn.functional.gelu` (erf within 1.5e-7, see
    /// `kernels::pointwise`).
    Gelu,
    Sigmoid,
}

impl Activation {
    /// The activation of one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Tanh => fast_tanh(x),
            Activation::Relu => x.max(0.0),
            Activation::Gelu => gelu(x),
            Activation::Sigmoid => sigmoid(x),
        }
    }

    /// `out[i] = act(x[i])` over one slice: one monomorphized (vectorizable) loop per
    /// activation, not a match per value.
    pub(crate) fn apply_slice(self, out: &mut [f32], x: &[f32]) {
        match self {
            Activation::Tanh => tanh_slice(out, x),
            Activation::Relu => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.max(0.0)),
            Activation::Gelu => gelu_slice(out, x),
            Activation::Sigmoid => out.iter_mut().zip(x).for_each(|(o, &v)| *o = sigmoid(v)),
        }
    }

    /// `g[i] = g[i] · act'(x[i])` over one slice, given the inputs `x` and outputs `y`: the
    /// same bits as the activation's own backward rule writing a fresh gradient.
    pub(crate) fn grad_in_place(self, g: &mut [f32], x: &[f32], y: &[f32]) {
        match self {
            Activation::Tanh => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
            Activation::Relu => g.iter_mut().zip(x).for_each(|(g, &x)| *g = if x > 0.0 { *g } else { 0.0 }),
            Activation::Gelu => gelu_grad_in_place(g, x),
            Activation::Sigmoid => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= self.derivative(0.0, y)),
        }
    }

    /// d activation / dx given the input `x` and output `y`.
    fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Activation::Tanh => 1.0 - y * y,
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Gelu => gelu_derivative(x),
            Activation::Sigmoid => y * (1.0 - y),
        }
    }
}

/// `tanh` as a branch-free odd rational approximation (Eigen's `ptanh_float`, a few ULP
/// of error); unlike libm's `tanhf` (an `expm1f` call per value) it vectorizes.
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    // Branch-free: `clamp` keeps NaN, which then propagates through p / q.
    let c = x.clamp(-7.905_311, 7.905_311);
    let x2 = c * c;
    let p = ((((((A13 * x2 + A11) * x2 + A9) * x2 + A7) * x2 + A5) * x2 + A3) * x2 + A1) * c;
    let q = ((B6 * x2 + B4) * x2 + B2) * x2 + B0;
    if x.abs() < 4e-4 {
        x
    } else {
        p / q
    }
}

/// `out[i] = fast_tanh(a[i])`, in AVX2 (or AVX-512) vectors where the CPU has them: the
/// same operations as the portable (4-lane) build, so the same bits, at two (four) times the
/// width (W2's four tanh layers took ~0.8 ms of a ~7 ms step).
pub fn tanh_slice(out: &mut [f32], a: &[f32]) {
    tanh_built(crate::tensor::cpu::avx2_fma(), out, a)
}

crate::tensor::cpu::simd_fn! {
    fn tanh_built(simd: Option<Avx2Fma>, out: &mut [f32], a: &[f32]) {
        tanh_slice_portable(out, a)
    }
}

#[inline(always)]
fn tanh_slice_portable(out: &mut [f32], a: &[f32]) {
    out.iter_mut().zip(a).for_each(|(o, &x)| *o = fast_tanh(x));
}

/// The logistic function.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

struct ActBack {
    x: Var,
    act: Activation,
}
impl BackwardOp for ActBack {
    fn backward(&self, out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let x = ctx.value(self.x).data();
        let act = self.act;
        if let Some((gx, fresh)) = ctx.grad_or_fresh(self.x) {
            match act {
                Activation::Tanh => put_zip(gx, fresh, g, out.data(), |g, y| g * (1.0 - y * y)),
                Activation::Relu => put_zip(gx, fresh, g, x, |g, x| if x > 0.0 { g } else { 0.0 }),
                Activation::Gelu if fresh => zip3_slices(gx, g, x, gelu_grad_slice),
                Activation::Gelu => zip3_slices(gx, g, x, gelu_backward_slice),
                Activation::Sigmoid => put_zip(gx, fresh, g, out.data(), |g, y| g * act.derivative(0.0, y)),
            }
        }
        Ok(())
    }
}

struct AddBack {
    a: Var,
    b: Var,
}
impl BackwardOp for AddBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        for v in [self.a, self.b] {
            if ctx.needs_grad(v) && ctx.grad_is_unset(v) {
                ctx.add_grad(v, copy_of(g)); // a copy instead of zeros plus a sum
            } else if let Some(gv) = ctx.grad(v) {
                map_slices(gv, g, |a, b| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
            }
        }
        Ok(())
    }
}

struct MulBack {
    a: Var,
    b: Var,
}
impl BackwardOp for MulBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let (av, bv) = (ctx.value(self.a).data(), ctx.value(self.b).data());
        if let Some((ga, fresh)) = ctx.grad_or_fresh(self.a) {
            put_zip(ga, fresh, g, bv, |g, b| g * b);
        }
        if let Some((gb, fresh)) = ctx.grad_or_fresh(self.b) {
            put_zip(gb, fresh, g, av, |g, a| g * a);
        }
        Ok(())
    }
}

struct ScaleBack {
    x: Var,
    s: f32,
}
impl BackwardOp for ScaleBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        if let Some(gx) = ctx.grad(self.x) {
            gx.iter_mut().zip(g).for_each(|(a, b)| *a += self.s * b);
        }
        Ok(())
    }
}

struct GluBack {
    x: Var,
}
impl BackwardOp for GluBack {
    fn backward(&self, _out: &Tensor, g: &[f32], ctx: &mut GradCtx) -> Result<()> {
        let x = ctx.value(self.x);
        let two_c = *x.shape().last().unwrap_or(&0);
        let c = two_c / 2;
        let xd = x.data();
        if let Some(gx) = ctx.grad(self.x) {
            for ((grow, xrow), gout) in gx.chunks_mut(two_c).zip(xd.chunks(two_c)).zip(g.chunks(c)) {
                for j in 0..c {
                    let (a, s) = (xrow[j], sigmoid(xrow[c + j]));
                    grow[j] += gout[j] * s;
                    grow[c + j] += gout[j] * a * s * (1.0 - s);
                }
            }
        }
        Ok(())
    }
}

impl Graph {
    fn check_same(&self, op: &'static str, a: Var, b: Var) -> Result<()> {
        if self.shape(a) != self.shape(b) {
            return Err(Error::shape(op, format!("shapes {:?} and {:?} differ", self.shape(a), self.shape(b))));
        }
        Ok(())
    }

    /// Pointwise activation.
    pub fn activation(&mut self, x: Var, act: Activation) -> Var {
        let xv = self.value(x);
        let mut out = Tensor::stale(xv.shape().to_vec()); // every value written below
        map_slices(out.data_mut(), xv.data(), |o, x| act.apply_slice(o, x));
        self.record(out, &[x], ActBack { x, act })
    }

    /// `tanh(x)`.
    pub fn tanh(&mut self, x: Var) -> Var {
        self.activation(x, Activation::Tanh)
    }

    /// `max(x, 0)`.
    pub fn relu(&mut self, x: Var) -> Var {
        self.activation(x, Activation::Relu)
    }

    /// Exact GELU.
    pub fn gelu(&mut self, x: Var) -> Var {
        self.activation(x, Activation::Gelu)
    }

    /// `1 / (1 + exp(-x))`.
    pub fn sigmoid(&mut self, x: Var) -> Var {
        self.activation(x, Activation::Sigmoid)
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.check_same("add", a, b)?;
        let out = Tensor::new(self.shape(a).to_vec(), zip_map(self.value(a).data(), self.value(b).data(), |x, y| x + y))?;
        Ok(self.record(out, &[a, b], AddBack { a, b }))
    }

    /// `a * b` elementwise (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.check_same("mul", a, b)?;
        let out = Tensor::new(self.shape(a).to_vec(), zip_map(self.value(a).data(), self.value(b).data(), |x, y| x * y))?;
        Ok(self.record(out, &[a, b], MulBack { a, b }))
    }

    /// `s * x`.
    pub fn scale(&mut self, x: Var, s: f32) -> Var {
        let mut out = self.value(x).clone();
        out.data_mut().iter_mut().for_each(|o| *o *= s);
        self.record(out, &[x], ScaleBack { x, s })
    }

    /// Gated linear unit over the last axis: `x[..., :C] * sigmoid(x[..., C:])`.
    ///
    /// # Shapes
    /// x: (..., 2C) → (..., C)
    pub fn glu(&mut self, x: Var) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        let two_c = *shape.last().ok_or_else(|| Error::shape("glu", "input is a scalar"))?;
        if two_c % 2 != 0 {
            return Err(Error::shape("glu", format!("last axis {two_c} is odd")));
        }
        let c = two_c / 2;
        let mut out_shape = shape.clone();
        *out_shape.last_mut().unwrap_or(&mut 0) = c;
        let mut out = Tensor::zeros(out_shape);
        for (orow, xrow) in out.data_mut().chunks_mut(c.max(1)).zip(self.value(x).data().chunks(two_c.max(1))) {
            for j in 0..c {
                orow[j] = xrow[j] * sigmoid(xrow[c + j]);
            }
        }
        Ok(self.record(out, &[x], GluBack { x }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_is_close_to_libm_and_keeps_special_values() {
        let mut worst = 0.0f32;
        for i in -20_000..=20_000 {
            let x = i as f32 * 5e-4;
            worst = worst.max((fast_tanh(x) - x.tanh()).abs());
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
        assert!(fast_tanh(f32::NAN).is_nan());
        assert_eq!(fast_tanh(f32::INFINITY), 1.0);
        assert_eq!(fast_tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(fast_tanh(1e-5), 1e-5);
    }

    #[test]
    fn tanh_slice_equals_fast_tanh_bit_for_bit() {
        // Covers the vector body and the scalar tail, both branches of the small-|x| select,
        // the clamp, and NaN / infinities.
        let mut a: Vec<f32> = (0..1003).map(|i| (i as f32 - 501.0) * 0.0173).collect();
        a.extend([1e-5, -3e-4, 9.0, -20.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        let mut out = vec![0.0; a.len()];
        tanh_slice(&mut out, &a);
        for (&x, &y) in a.iter().zip(&out) {
            assert_eq!(y.to_bits(), fast_tanh(x).to_bits(), "tanh({x})");
        }
    }
}
