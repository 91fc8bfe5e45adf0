//! The define-by-run tape: every op appends a node holding its output value and, when any
//! input needs a gradient, a backward closure object. `backward()` walks the tape in reverse.

use crate::error::{Error, Result};
use crate::tensor::kernels::matmul::Gemm;
use crate::tensor::memory::{give, stale, zeroed};
use crate::tensor::{profile, Precision, Tensor};

/// The profile's name for parameters, constants and leaves.
const LEAF: &str = "leaf (parameter, constant)";

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
    /// Variables whose gradient was declared final ([`Graph::backward_with_hook`]; empty
    /// otherwise): a rule writing into one would break that promise.
    finished: &'a [bool],
}

impl<'a> GradCtx<'a> {
    /// The recorded value of `v` (borrow independent of the context).
    pub fn value(&self, v: Var) -> &'a Tensor {
        &self.values[v.0]
    }

    /// The gradient buffer of `v`, zero-initialised on first use; `None` when `v` needs no
    /// gradient. Backward rules must accumulate (`+=`) into it.
    pub fn grad(&mut self, v: Var) -> Option<&mut [f32]> {
        self.check_open(v);
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
        self.check_open(v);
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
        vars.iter().flatten().for_each(|&v| self.check_open(v));
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

    /// Debug builds check that no rule writes a gradient already handed to a hook: every
    /// input an op writes must be among the inputs it was recorded with.
    fn check_open(&self, v: Var) {
        debug_assert!(!self.finished.get(v.0).copied().unwrap_or(false), "gradient of variable {} written after it was declared final", v.0);
    }
}

/// What [`Graph::backward_with_hook`] calls with a parameter's key and final gradient.
pub type ParamHook<'a> = dyn FnMut(usize, Option<&[f32]>) -> Result<()> + 'a;

/// A tape of recorded ops for one forward (and backward) pass.
pub struct Graph {
    values: Vec<Tensor>,
    requires: Vec<bool>,
    ops: Vec<Option<Box<dyn BackwardOp>>>,
    grads: Vec<Option<Vec<f32>>>,
    params: Vec<(Var, usize)>,
    /// Per variable, the lowest-numbered op that takes it as an input (`usize::MAX` when
    /// none does): walking the tape backwards, its gradient is final once that op is done.
    first_use: Vec<usize>,
    training: bool,
    /// The products of matmuls and convolutions ([`Graph::set_precision`]).
    gemm: Gemm,
    /// Per op, its backward rule's type name, and when the last value was recorded: for
    /// `CONVLM_PROFILE` (`tensor::profile`).
    names: Vec<&'static str>,
    last_push: Option<std::time::Instant>,
}

impl Graph {
    /// An empty tape; `training` selects batchnorm/dropout behaviour.
    pub fn new(training: bool) -> Self {
        Graph {
            values: Vec::new(),
            requires: Vec::new(),
            ops: Vec::new(),
            grads: Vec::new(),
            params: Vec::new(),
            first_use: Vec::new(),
            training,
            gemm: Gemm::F32,
            names: Vec::new(),
            last_push: None,
        }
    }

    /// Makes the matmuls and convolutions recorded from now on (and their backward
    /// products) compute in `precision` (see [`Precision`]); fp32 until then. Errors when
    /// the CPU cannot (bf16 without AVX512_BF16), naming the missing feature.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.gemm = precision.products()?;
        Ok(())
    }

    /// The precision of the products recorded now.
    pub fn precision(&self) -> Precision {
        match self.gemm {
            Gemm::F32 => Precision::Fp32,
            Gemm::Bf16(_) => Precision::Bf16,
        }
    }

    /// The products the ops recorded now run (the kernels' side of [`Graph::precision`]).
    pub(crate) fn gemm(&self) -> Gemm {
        self.gemm
    }

    /// Whether ops run in training mode.
    pub fn training(&self) -> bool {
        self.training
    }

    /// Records a constant (no gradient).
    pub fn constant(&mut self, t: Tensor) -> Var {
        self.push(t, false, None, LEAF)
    }

    /// Records a leaf that receives a gradient (used by tests and finite-difference checks).
    pub fn leaf(&mut self, t: Tensor) -> Var {
        self.push(t, true, None, LEAF)
    }

    /// Records a trainable leaf (a model parameter) under the caller's `key` (its index in
    /// the caller's parameter store); [`Graph::params`] lists them, so that after
    /// [`Graph::backward`] the layer that owns the parameters can collect their gradients.
    pub fn param(&mut self, value: Tensor, key: usize) -> Var {
        let v = self.push(value, true, None, LEAF);
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

    /// The gradient of `v` after [`Graph::backward`]: of a leaf, parameter or constant (None
    /// if it received none). An op's output gradient is given back to the memory layer as
    /// soon as the op's rule has used it, so asking for one gives None.
    pub fn grad(&self, v: Var) -> Option<&[f32]> {
        self.grads.get(v.0).and_then(|g| g.as_deref())
    }

    /// Whether `v` carries a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires[v.0]
    }

    /// Records an op output; `op` is kept only when some input needs a gradient.
    pub(crate) fn record<Op: BackwardOp + 'static>(&mut self, value: Tensor, inputs: &[Var], op: Op) -> Var {
        let requires = inputs.iter().any(|v| self.requires[v.0]);
        let op: Option<Box<dyn BackwardOp>> = if requires { Some(Box::new(op)) } else { None };
        let index = self.values.len();
        for v in inputs {
            // Ops are numbered in recording order, so the first use is the first recorded.
            if self.first_use[v.0] == usize::MAX {
                self.first_use[v.0] = index;
            }
        }
        self.push(value, requires, op, std::any::type_name::<Op>())
    }

    fn push(&mut self, value: Tensor, requires: bool, op: Option<Box<dyn BackwardOp>>, name: &'static str) -> Var {
        if profile::enabled() {
            // The time since the last value was recorded went into computing this one.
            let now = std::time::Instant::now();
            profile::charge(name, now - self.last_push.unwrap_or(now), std::time::Duration::ZERO);
            self.last_push = Some(now);
        }
        self.names.push(name);
        self.values.push(value);
        self.requires.push(requires);
        self.ops.push(op);
        self.first_use.push(usize::MAX);
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
            self.backward_op(i, &[])?;
        }
        Ok(())
    }

    /// Runs the backward rule of op `i` (nothing when it has none or got no gradient).
    fn backward_op(&mut self, i: usize, finished: &[bool]) -> Result<()> {
        let Some(op) = self.ops[i].as_ref() else { return Ok(()) };
        let Some(grad_out) = self.grads[i].take() else { return Ok(()) };
        let mut ctx = GradCtx { values: &self.values, grads: &mut self.grads, requires: &self.requires, finished };
        let started = profile::enabled().then(std::time::Instant::now);
        let result = op.backward(&self.values[i], &grad_out, &mut ctx);
        if let Some(t0) = started {
            profile::charge(self.names[i], std::time::Duration::ZERO, t0.elapsed());
        }
        // Consumed: its buffer serves the next gradient of its size (a training step's
        // peak memory no longer holds every intermediate gradient at once).
        give(grad_out);
        result
    }

    /// [`Graph::backward`] that hands each parameter's gradient to `on_param` as soon as it
    /// is final — once the last op (in backward order) that takes the parameter as an input
    /// has run — so that work on it (sending it to other processes) overlaps the rest of the
    /// backward pass. `on_param(key, grad)` is called exactly once per [`Graph::param`]
    /// entry, with `None` when the parameter got no gradient; an error stops the pass.
    pub fn backward_with_hook(&mut self, loss: Var, on_param: &mut ParamHook<'_>) -> Result<()> {
        if self.values[loss.0].numel() != 1 {
            return Err(Error::shape("backward", format!("loss must be a scalar, got shape {:?}", self.shape(loss))));
        }
        self.grads = vec![None; self.values.len()];
        self.grads[loss.0] = Some(vec![1.0]);
        // Parameters by the op after which their gradient is final, latest first; one first
        // used after the loss (or never) gets none and is handed over at once.
        let mut order: Vec<(usize, Var, usize)> = self.params.iter().map(|&(v, key)| (self.first_use[v.0], v, key)).collect();
        order.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut finished = vec![false; if cfg!(debug_assertions) { self.values.len() } else { 0 }];
        let mut next = 0;
        let mut hand_over = |graph: &Graph, next: &mut usize, finished: &mut [bool], done_through: usize| -> Result<()> {
            while let Some(&(used_at, v, key)) = order.get(*next).filter(|p| p.0 >= done_through) {
                let grad = if used_at > loss.0 { None } else { graph.grads[v.0].as_deref() };
                if let Some(f) = finished.get_mut(v.0) {
                    *f = true;
                }
                on_param(key, grad)?;
                *next += 1;
            }
            Ok(())
        };
        hand_over(self, &mut next, &mut finished, loss.0 + 1)?;
        for i in (0..=loss.0).rev() {
            self.backward_op(i, &finished)?;
            hand_over(self, &mut next, &mut finished, i)?;
        }
        Ok(())
    }
}

impl Drop for Graph {
    /// Gives every gradient buffer back to the memory layer (`tensor::memory`) for the next
    /// graph's ops, instead of freeing them and zero-filling new ones (the values, tensors,
    /// give theirs back as they drop).
    fn drop(&mut self) {
        for g in std::mem::take(&mut self.grads).into_iter().flatten() {
            give(g);
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
    fn backward_keeps_leaf_gradients_and_gives_back_consumed_ones() {
        let mut g = Graph::new(true);
        let x = g.leaf(Tensor::new(vec![2048], (0..2048).map(|i| i as f32 * 1e-3).collect()).unwrap());
        let y = g.mul(x, x).unwrap(); // 4096 bytes and more: a pooled buffer
        let loss = g.sum(y);
        g.backward(loss).unwrap();
        assert_eq!(g.grad(y), None, "an op's output gradient goes back once its rule has run");
        assert_eq!(g.grad(loss), None);
        let gx = g.grad(x).expect("a leaf keeps its gradient");
        assert!(gx.iter().enumerate().all(|(i, &v)| v == 2.0 * (i as f32 * 1e-3)), "d sum(x²) / dx = 2x");
    }

    #[test]
    fn a_backward_error_reaches_the_caller() {
        let mut g = Graph::new(true);
        let x = g.leaf(Tensor::full(vec![1], 2.0));
        let y = g.record(Tensor::full(vec![1], 4.0), &[x], Refuses);
        let err = g.backward(y).expect_err("the op's error must not be lost");
        assert_eq!(err.to_string(), "refuses: kernel error during backward");
    }

    /// `x·w1·w2`, summed, with w3 recorded but unused and w1 used twice: the hook hands
    /// over w2 before w1 (w2's last use in backward order comes first), w3 with no gradient,
    /// and the same gradients `backward` computes.
    #[test]
    fn the_hook_hands_over_each_final_gradient_once_in_backward_order() {
        let build = |g: &mut Graph| {
            let x = g.constant(Tensor::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap());
            let w1 = g.param(Tensor::new(vec![3], vec![0.5, -1.0, 2.0]).unwrap(), 10);
            let a = g.mul(x, w1).unwrap();
            let a = g.mul(a, w1).unwrap();
            let w2 = g.param(Tensor::new(vec![3], vec![3.0, 1.0, -2.0]).unwrap(), 20);
            let _w3 = g.param(Tensor::new(vec![3], vec![7.0, 7.0, 7.0]).unwrap(), 30);
            let b = g.mul(a, w2).unwrap();
            g.sum(b)
        };
        let mut plain = Graph::new(true);
        let loss = build(&mut plain);
        plain.backward(loss).unwrap();
        let mut hooked = Graph::new(true);
        let loss = build(&mut hooked);
        let mut seen: Vec<(usize, Option<Vec<f32>>)> = Vec::new();
        hooked
            .backward_with_hook(loss, &mut |key, grad| {
                seen.push((key, grad.map(<[f32]>::to_vec)));
                Ok(())
            })
            .unwrap();
        let keys: Vec<usize> = seen.iter().map(|s| s.0).collect();
        assert_eq!(keys, [30, 20, 10]);
        assert_eq!(seen[0].1, None);
        for (key, grad) in &seen[1..] {
            let v = plain.params().iter().find(|p| p.1 == *key).unwrap().0;
            assert_eq!(grad.as_deref(), plain.grad(v), "key {key}");
        }
    }
}
