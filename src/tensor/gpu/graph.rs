//! [`GpuGraph`]: the define-by-run tape on a GPU — the sibling of [`Graph`](crate::tensor::Graph)
//! with the same ops and backward rules, whose values and gradients stay in device memory.
//! Recording an op records its kernels; nothing waits for the device until a value is read.

use crate::error::{Error, Result};
use crate::tensor::gpu::launch;
use crate::tensor::gpu::runtime::GpuDevice;
use crate::tensor::gpu::tensor::GpuTensor;
use crate::tensor::Var;

/// Backward rule of one recorded GPU op.
pub(crate) trait GpuBackward {
    /// Records the kernels that accumulate the input gradients given the output's gradient.
    fn backward(&self, out: &GpuTensor, grad_out: &GpuTensor, ctx: &mut GpuGradCtx) -> Result<()>;
}

/// A gradient slot: its buffer (when one exists) and whether anything was written to it.
#[derive(Clone, Default)]
struct GradSlot {
    buf: Option<GpuTensor>,
    /// False for a buffer whose contents are not a gradient yet (a parameter's own gradient
    /// buffer before this pass touched it): the first op to write it overwrites.
    written: bool,
}

/// What a backward rule sees: every value, and the input gradients.
pub(crate) struct GpuGradCtx<'a> {
    device: &'a GpuDevice,
    values: &'a [GpuTensor],
    grads: &'a mut [GradSlot],
    requires: &'a [bool],
    /// The variable seeded with a gradient of exactly 1 (a scalar loss), if any.
    unit_seed: Option<Var>,
    /// The output of the op whose rule runs.
    current: Var,
}

impl<'a> GpuGradCtx<'a> {
    pub fn device(&self) -> &'a GpuDevice {
        self.device
    }

    /// The recorded value of `v`.
    pub fn value(&self, v: Var) -> &'a GpuTensor {
        &self.values[v.0]
    }

    /// Whether `v` takes a gradient.
    pub fn needs(&self, v: Var) -> bool {
        self.requires[v.0]
    }

    /// Whether the output gradient the rule was given is the backward pass's seed 1 (so a
    /// rule may skip multiplying by it).
    pub fn grad_is_unit(&self) -> bool {
        self.unit_seed == Some(self.current)
    }

    /// The gradient buffer of `v` and whether it is fresh — `true`: its contents are
    /// unspecified and the rule must OVERWRITE every value; `false`: add to it. `None` when
    /// `v` takes no gradient.
    pub fn grad_or_fresh(&mut self, v: Var) -> Result<Option<(GpuTensor, bool)>> {
        if !self.requires[v.0] {
            return Ok(None);
        }
        let slot = &mut self.grads[v.0];
        let buf = match &slot.buf {
            Some(b) => b.clone(),
            None => {
                let b = GpuTensor::empty(self.device, self.values[v.0].shape(), "a gradient")?;
                slot.buf = Some(b.clone());
                b
            }
        };
        let fresh = !slot.written;
        slot.written = true;
        Ok(Some((buf, fresh)))
    }

    /// The gradient buffer of `v`, holding zeros if nothing was written to it yet (for a rule
    /// that adds to part of it); `None` when `v` takes no gradient.
    pub fn grad(&mut self, v: Var) -> Result<Option<GpuTensor>> {
        match self.grad_or_fresh(v)? {
            Some((buf, fresh)) => {
                if fresh {
                    self.device.clear(buf.raw(), buf.bytes());
                }
                Ok(Some(buf))
            }
            None => Ok(None),
        }
    }
}

/// A tape of GPU ops for one forward (and backward) pass.
pub struct GpuGraph {
    device: GpuDevice,
    values: Vec<GpuTensor>,
    requires: Vec<bool>,
    ops: Vec<Option<Box<dyn GpuBackward>>>,
    grads: Vec<GradSlot>,
    /// Gradient buffers given with [`GpuGraph::param`]: the parameter's own, written in place.
    targets: Vec<Option<GpuTensor>>,
    params: Vec<(Var, usize)>,
    training: bool,
}

impl GpuGraph {
    /// An empty tape on `device`; `training` selects batchnorm/dropout behaviour.
    pub fn new(device: &GpuDevice, training: bool) -> Self {
        GpuGraph {
            device: device.clone(),
            values: Vec::new(),
            requires: Vec::new(),
            ops: Vec::new(),
            grads: Vec::new(),
            targets: Vec::new(),
            params: Vec::new(),
            training,
        }
    }

    pub fn device(&self) -> &GpuDevice {
        &self.device
    }

    /// Whether ops run in training mode.
    pub fn training(&self) -> bool {
        self.training
    }

    /// Records a constant (no gradient).
    pub fn constant(&mut self, t: GpuTensor) -> Var {
        self.push(t, false, None)
    }

    /// Records a leaf that receives a gradient (tests, gradient checks).
    pub fn leaf(&mut self, t: GpuTensor) -> Var {
        self.push(t, true, None)
    }

    /// Records a trainable parameter under `key`. With `grad` (the parameter's gradient
    /// buffer, same shape) backward writes the parameter's gradient there — overwriting what
    /// it held, so after [`GpuGraph::backward`] it holds this pass's gradient (zeros if the
    /// parameter got none).
    pub fn param(&mut self, value: GpuTensor, grad: Option<GpuTensor>, key: usize) -> Result<Var> {
        if let Some(g) = &grad {
            if g.shape() != value.shape() {
                return Err(Error::shape("param", format!("gradient buffer {:?} for a value of shape {:?}", g.shape(), value.shape())));
            }
        }
        let v = self.push(value, true, None);
        self.targets[v.0] = grad;
        self.params.push((v, key));
        Ok(v)
    }

    /// The leaves recorded with [`GpuGraph::param`], with their keys.
    pub fn params(&self) -> &[(Var, usize)] {
        &self.params
    }

    /// The value of a recorded variable (on the device).
    pub fn value(&self, v: Var) -> &GpuTensor {
        &self.values[v.0]
    }

    /// The shape of a recorded variable.
    pub fn shape(&self, v: Var) -> &[usize] {
        self.values[v.0].shape()
    }

    /// Whether `v` carries a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires[v.0]
    }

    /// The gradient of `v` after a backward pass (None if it received none).
    pub fn grad(&self, v: Var) -> Option<&GpuTensor> {
        self.grads.get(v.0).filter(|s| s.written).and_then(|s| s.buf.as_ref())
    }

    /// Records an op output; `op` is kept only when some input needs a gradient.
    pub(crate) fn record(&mut self, value: GpuTensor, inputs: &[Var], op: impl GpuBackward + 'static) -> Var {
        let requires = inputs.iter().any(|v| self.requires[v.0]);
        let op: Option<Box<dyn GpuBackward>> = if requires { Some(Box::new(op)) } else { None };
        self.push(value, requires, op)
    }

    fn push(&mut self, value: GpuTensor, requires: bool, op: Option<Box<dyn GpuBackward>>) -> Var {
        self.values.push(value);
        self.requires.push(requires);
        self.ops.push(op);
        self.targets.push(None);
        Var(self.values.len() - 1)
    }

    /// Back-propagates from a scalar `loss` (seed gradient 1).
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        if self.values[loss.0].numel() != 1 {
            return Err(Error::shape("backward", format!("loss must be a scalar, got shape {:?}", self.shape(loss))));
        }
        let seed = GpuTensor::empty(&self.device, &[1], "the loss gradient")?;
        launch::elementwise::fill(&seed, 1.0)?;
        self.run_backward(loss, seed, true)
    }

    /// Back-propagates from `out` with the gradient `seed` (same shape as `out`, on the device).
    pub fn backward_with(&mut self, out: Var, seed: GpuTensor) -> Result<()> {
        if seed.numel() != self.values[out.0].numel() {
            return Err(Error::shape("backward", "seed gradient size differs from the output"));
        }
        self.run_backward(out, seed, false)
    }

    fn run_backward(&mut self, out: Var, seed: GpuTensor, unit: bool) -> Result<()> {
        self.grads = self.targets.iter().map(|t| GradSlot { buf: t.clone(), written: false }).collect();
        self.grads[out.0] = GradSlot { buf: Some(seed), written: true };
        let unit_seed = unit.then_some(out);
        for i in (0..=out.0).rev() {
            let Some(op) = self.ops[i].as_ref() else { continue };
            let Some(grad_out) = self.grads[i].buf.clone().filter(|_| self.grads[i].written) else { continue };
            let mut ctx =
                GpuGradCtx { device: &self.device, values: &self.values, grads: &mut self.grads, requires: &self.requires, unit_seed, current: Var(i) };
            op.backward(&self.values[i], &grad_out, &mut ctx)?;
        }
        // A parameter no op wrote to gets a zero gradient, as after `zero_grad`.
        for (slot, target) in self.grads.iter_mut().zip(&self.targets) {
            if let (Some(t), false) = (target, slot.written) {
                self.device.clear(t.raw(), t.bytes());
                slot.written = true;
            }
        }
        Ok(())
    }
}
