//! The define-by-run tape: every op appends a node holding its output value and, when any
//! input needs a gradient, a backward closure object. `backward()` walks the tape in reverse.

use crate::error::{Error, Result};
use crate::tensor::buffers::{recycle, stale, zeroed};
use crate::tensor::Tensor;

/// A handle to a value recorded on a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub(crate) usize);

/// Backward rule of one recorded op.
pub(crate) trait BackwardOp {
    /// Accumulates the input gradients of this op given the gradient of its output. An error
    /// (a kernel refusing its inputs) stops [`Graph::backward`] and reaches its caller.
    fn backward(&self, out: &Tensor, grad_out: &[f32], ctx: &mut GradCtx) -> Result<()>;
}

/// What a backward rule sees: every recorded value, and lazily allocated input gradients.
pub(crate) struct GradCtx<'a> {
    values: &'a [Tensor],
    grads: &'a mut [Option<Vec<f32>>],
    requires: &'a [bool],
}

impl<'a> GradCtx<'a> {
    /// The recorded value of `v` (borrow independent of the context).
    pub fn value(&self, v: Var) -> &'a Tensor {
        &self.values[v.0]
    }

    /// The gradient buffer of `v`, zero-initialised on first use; `None` when `v` needs no
    /// gradient. Backward rules must accumulate (`+=`) into it.
    pub fn grad(&mut self, v: Var) -> Option<&mut [f32]> {
        if !self.requires[v.0] {
            return None;
        }
        let n = self.values[v.0].numel();
        Some(self.grads[v.0].get_or_insert_with(|| zeroed(n)).as_mut_slice())
    }

    /// Whether `v` takes a gradient.
    pub fn needs_grad(&self, v: Var) -> bool {
        self.requires[v.0]
    }

    /// The gradient buffer of `v` for a rule that computes its whole contribution at once:
    /// `Some((buf, true))` when `v` had no gradient yet — `buf` then holds unspecified values
    /// and the rule must OVERWRITE every one of them — `Some((buf, false))` when it has one,
    /// to be added to; `None` when `v` needs no gradient.
    pub fn grad_or_fresh(&mut self, v: Var) -> Option<(&mut [f32], bool)> {
        if !self.requires[v.0] {
            return None;
        }
        let fresh = self.grads[v.0].is_none();
        let n = self.values[v.0].numel();
        Some((self.grads[v.0].get_or_insert_with(|| stale(n)).as_mut_slice(), fresh))
    }

    /// Whether `v` has no gradient buffer yet: the next [`GradCtx::grad`] or
    /// [`GradCtx::grads_disjoint`] creates it zeroed, so a kernel may write it instead of
    /// adding to it.
    pub fn grad_is_unset(&self, v: Var) -> bool {
        self.grads[v.0].is_none()
    }

    /// Adds `buf` (one op's whole contribution, same size as `v`) into the gradient of `v`;
    /// when `v` has no gradient yet, `buf` becomes it with no zeroing or copy. Does nothing
    /// when `v` needs no gradient.
    pub fn add_grad(&mut self, v: Var, buf: Vec<f32>) {
        if !self.requires[v.0] {
            return;
        }
        debug_assert_eq!(buf.len(), self.values[v.0].numel());
        match &mut self.grads[v.0] {
            Some(g) => g.iter_mut().zip(&buf).for_each(|(a, b)| *a += b),
            slot => *slot = Some(buf),
        }
    }

    /// Gradient buffers of several distinct variables at once (each as [`GradCtx::grad`]:
    /// zero-initialised on first use, `None` where no gradient is needed or the entry is
    /// `None`), so a backward rule can hand all of them to one kernel without copies.
    /// Returns `None` when two entries name the same variable.
    pub fn grads_disjoint<const N: usize>(&mut self, vars: [Option<Var>; N]) -> Option<[Option<&mut [f32]>; N]> {
        let ids: Vec<usize> = vars.iter().flatten().map(|v| v.0).collect();
        if (1..ids.len()).any(|i| ids[..i].contains(&ids[i])) {
            return None;
        }
        for v in vars.iter().flatten() {
            if self.requires[v.0] && self.grads[v.0].is_none() {
                self.grads[v.0] = Some(zeroed(self.values[v.0].numel()));
            }
        }
        let mut out: [Option<&mut [f32]>; N] = std::array::from_fn(|_| None);
        for (i, slot) in self.grads.iter_mut().enumerate() {
            if !self.requires[i] {
                continue;
            }
            if let Some(k) = vars.iter().position(|v| v.map(|v| v.0) == Some(i)) {
                out[k] = slot.as_deref_mut();
            }
        }
        Some(out)
    }
}

/// A tape of recorded ops for one forward (and backward) pass.
pub struct Graph {
    values: Vec<Tensor>,
    requires: Vec<bool>,
    ops: Vec<Option<Box<dyn BackwardOp>>>,
    grads: Vec<Option<Vec<f32>>>,
    params: Vec<(Var, usize)>,
    training: bool,
}

impl Graph {
    /// An empty tape; `training` selects batchnorm/dropout behaviour.
    pub fn new(training: bool) -> Self {
        Graph { values: Vec::new(), requires: Vec::new(), ops: Vec::new(), grads: Vec::new(), params: Vec::new(), training }
    }

    /// Whether ops run in training mode.
    pub fn training(&self) -> bool {
        self.training
    }

    /// Records a constant (no gradient).
    pub fn constant(&mut self, t: Tensor) -> Var {
        self.push(t, false, None)
    }

    /// Records a leaf that receives a gradient (used by tests and finite-difference checks).
    pub fn leaf(&mut self, t: Tensor) -> Var {
        self.push(t, true, None)
    }

    /// Records a trainable leaf (a model parameter) under the caller's `key` (its index in
    /// the caller's parameter store); [`Graph::params`] lists them, so that after
    /// [`Graph::backward`] the layer that owns the parameters can collect their gradients.
    pub fn param(&mut self, value: Tensor, key: usize) -> Var {
        let v = self.push(value, true, None);
        self.params.push((v, key));
        v
    }

    /// The leaves recorded with [`Graph::param`], with their keys, in recording order.
    pub fn params(&self) -> &[(Var, usize)] {
        &self.params
    }

    /// The value of a recorded variable.
    pub fn value(&self, v: Var) -> &Tensor {
        &self.values[v.0]
    }

    /// The shape of a recorded variable.
    pub fn shape(&self, v: Var) -> &[usize] {
        self.values[v.0].shape()
    }

    /// The gradient of `v` after [`Graph::backward`] (None if it received none).
    pub fn grad(&self, v: Var) -> Option<&[f32]> {
        self.grads.get(v.0).and_then(|g| g.as_deref())
    }

    /// Whether `v` carries a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires[v.0]
    }

    /// Records an op output; `op` is kept only when some input needs a gradient.
    pub(crate) fn record(&mut self, value: Tensor, inputs: &[Var], op: impl BackwardOp + 'static) -> Var {
        let requires = inputs.iter().any(|v| self.requires[v.0]);
        let op: Option<Box<dyn BackwardOp>> = if requires { Some(Box::new(op)) } else { None };
        self.push(value, requires, op)
    }

    fn push(&mut self, value: Tensor, requires: bool, op: Option<Box<dyn BackwardOp>>) -> Var {
        self.values.push(value);
        self.requires.push(requires);
        self.ops.push(op);
        Var(self.values.len() - 1)
    }

    /// Back-propagates from a scalar `loss` (seed gradient 1).
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        if self.values[loss.0].numel() != 1 {
            return Err(Error::shape("backward", format!("loss must be a scalar, got shape {:?}", self.shape(loss))));
        }
        self.backward_with(loss, vec![1.0])
    }

    /// Back-propagates from `out` with an explicit output gradient `seed` (same size as `out`).
    pub fn backward_with(&mut self, out: Var, seed: Vec<f32>) -> Result<()> {
        if seed.len() != self.values[out.0].numel() {
            return Err(Error::shape("backward", "seed gradient size differs from the output"));
        }
        self.grads = vec![None; self.values.len()];
        self.grads[out.0] = Some(seed);
        for i in (0..=out.0).rev() {
            let Some(op) = self.ops[i].as_ref() else { continue };
            let Some(grad_out) = self.grads[i].take() else { continue };
            let mut ctx = GradCtx { values: &self.values, grads: &mut self.grads, requires: &self.requires };
            let result = op.backward(&self.values[i], &grad_out, &mut ctx);
            self.grads[i] = Some(grad_out);
            result?;
        }
        Ok(())
    }
}

impl Drop for Graph {
    /// Hands the large value and gradient buffers to the next graph's ops
    /// (`tensor::buffers`), instead of freeing them and zero-filling new ones.
    fn drop(&mut self) {
        for t in std::mem::take(&mut self.values) {
            recycle(t.into_data());
        }
        for g in std::mem::take(&mut self.grads).into_iter().flatten() {
            recycle(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backward rule whose kernel refuses its inputs.
    struct Refuses;
    impl BackwardOp for Refuses {
        fn backward(&self, _out: &Tensor, _grad_out: &[f32], _ctx: &mut GradCtx) -> Result<()> {
            Err(Error::shape("refuses", "kernel error during backward"))
        }
    }

    #[test]
    fn a_backward_error_reaches_the_caller() {
        let mut g = Graph::new(true);
        let x = g.leaf(Tensor::full(vec![1], 2.0));
        let y = g.record(Tensor::full(vec![1], 4.0), &[x], Refuses);
        let err = g.backward(y).expect_err("the op's error must not be lost");
        assert_eq!(err.to_string(), "refuses: kernel error during backward");
    }
}
