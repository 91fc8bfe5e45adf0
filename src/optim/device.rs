//! [`DeviceOptimizer`]: SGD, Adam and AdamW on a GPU, with the CPU optimizer's per-step
//! constants (the same PyTorch rounding) and its state layout, so a run moves between the
//! devices through the same checkpoint. [`StepStatus`] is the handful of words a training
//! step reads back: the loss, the gradient norm and whether anything became non-finite.

use std::path::Path;

use super::config::{torch_scalar, OptimizerConfig, OptimizerKind};
use super::optimizer::{adam_scalars, sgd_scalars, Optimizer};
use crate::error::{Error, Result};
use crate::nn::device::DeviceParams;
use crate::nn::ParamStore;
use crate::tensor::gpu::launch::optim::{self as ko, AdamWords, SgdWords, STATUS_WORDS};
use crate::tensor::gpu::{GpuDevice, GpuTensor};

/// The device words of one step: [loss, gradient norm, clip coefficient, skip, first
/// parameter not finite after the update (u32::MAX: none), …].
pub struct StepStatus {
    buf: GpuTensor,
    /// Scratch for the gradient norm's partial sums.
    scratch: GpuTensor,
}

/// What a step's status said.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatusReport {
    pub loss: f32,
    pub grad_norm: f32,
    /// The update was skipped: the loss or the gradient norm was not finite.
    pub skipped: bool,
    /// Index of the first parameter (store order) not finite after the update.
    pub bad_param: Option<usize>,
}

impl StepStatus {
    /// A status for steps over `params`.
    pub fn new(params: &DeviceParams) -> Result<Self> {
        let d = params.device();
        let blocks = ko::norm_blocks(params.values_and_grads().map(|(_, g)| g.numel())).max(1);
        Ok(StepStatus { buf: GpuTensor::zeros(d, &[STATUS_WORDS], "the step status")?, scratch: GpuTensor::empty(d, &[blocks], "gradient norm partial sums")? })
    }

    /// Starts a step: the loss (a device scalar) into slot 0, the rest reset.
    pub fn begin(&self, loss: &GpuTensor) -> Result<()> {
        let mut words = [0.0f32; STATUS_WORDS];
        words[2] = 1.0;
        words[4] = f32::from_bits(u32::MAX);
        self.buf.write(&words)?;
        self.buf.device().copy(loss.raw(), 0, self.buf.raw(), 0, 4);
        Ok(())
    }

    /// Records the gradient norm of `params`, the clip coefficient for `max_norm` and the
    /// skip flag.
    pub fn grad_norm(&self, params: &DeviceParams, max_norm: Option<f32>) -> Result<()> {
        ko::grad_norm_status(params.values_and_grads().map(|(_, g)| g), &self.scratch, &self.buf, max_norm)
    }

    /// Reads the status back (waits for the step to finish on the device).
    pub fn read(&self) -> Result<StatusReport> {
        let w = self.buf.to_vec()?;
        let bad = w[4].to_bits();
        Ok(StatusReport { loss: w[0], grad_norm: w[1], skipped: w[3] != 0.0, bad_param: (bad != u32::MAX).then_some(bad as usize) })
    }

    pub(crate) fn buffer(&self) -> &GpuTensor {
        &self.buf
    }
}

/// An optimizer whose moments live on the device.
pub struct DeviceOptimizer {
    cfg: OptimizerConfig,
    steps: u64,
    /// Adam's first moment or SGD's momentum buffer, per parameter (a placeholder when unused).
    first: Vec<GpuTensor>,
    /// Adam's second moment (a placeholder for SGD).
    second: Vec<GpuTensor>,
    /// Whether weight decay applies, per parameter.
    decay: Vec<bool>,
    /// The moving averages of the parameters (empty without them).
    averages: Vec<GpuTensor>,
}

impl DeviceOptimizer {
    /// The device copy of `host` (configuration, step count and state) for `params`, whose
    /// host side is `store`.
    pub fn upload(host: &Optimizer, store: &ParamStore, params: &DeviceParams) -> Result<Self> {
        let d = params.device();
        let cfg = host.config().clone();
        let state = host.state_tensors();
        let mut named = state.iter();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let with_first = cfg.kind != OptimizerKind::Sgd || cfg.momentum != 0.0;
        for p in store.params() {
            let placeholder = || GpuTensor::zeros(d, &[1], "an optimizer placeholder");
            if with_first {
                let (_, t) = named.next().ok_or_else(|| Error::device(format!("no optimizer state for {}", p.name)))?;
                first.push(GpuTensor::upload(d, t)?);
            } else {
                first.push(placeholder()?);
            }
            if cfg.kind != OptimizerKind::Sgd {
                let (_, t) = named.next().ok_or_else(|| Error::device(format!("no optimizer state for {}", p.name)))?;
                second.push(GpuTensor::upload(d, t)?);
            } else {
                second.push(placeholder()?);
            }
        }
        // The averages follow every parameter's moments (`Optimizer::state_tensors`).
        let averages = named.map(|(_, t)| GpuTensor::upload(d, t)).collect::<Result<Vec<_>>>()?;
        if averages.len() != if cfg.averages() { store.params().len() } else { 0 } {
            return Err(Error::device(format!("the optimizer state holds {} weight averages for {} parameters", averages.len(), store.params().len())));
        }
        let decay = store.params().iter().map(|p| p.decay).collect();
        Ok(DeviceOptimizer { cfg, steps: host.steps_taken(), first, second, decay, averages })
    }

    /// Copies the state and step count back into `host` (built for the same parameters).
    pub fn download(&self, host: &mut Optimizer) -> Result<()> {
        let names: Vec<String> = host.state_tensors().into_iter().map(|(n, _)| n).collect();
        let mut tensors = Vec::with_capacity(names.len());
        let mut bufs = Vec::new();
        for (f, s) in self.first.iter().zip(&self.second) {
            if self.cfg.kind != OptimizerKind::Sgd || self.cfg.momentum != 0.0 {
                bufs.push(f);
            }
            if self.cfg.kind != OptimizerKind::Sgd {
                bufs.push(s);
            }
        }
        bufs.extend(&self.averages);
        for (name, buf) in names.into_iter().zip(bufs) {
            tensors.push((name, buf.to_tensor()?));
        }
        host.load_state(tensors, self.steps, Path::new("<device optimizer>"))
    }

    /// Updates taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.steps
    }

    /// Records one update of every parameter of `params` at learning rate `lr`, reading the
    /// clip coefficient and skip flag from `status` (see [`StepStatus`]). If the status
    /// then says the update was skipped, call [`DeviceOptimizer::skipped`].
    pub fn step(&mut self, params: &DeviceParams, lr: f32, status: &StepStatus) -> Result<()> {
        self.steps += 1;
        let wd = torch_scalar(self.cfg.weight_decay);
        let st = status.buffer();
        for (i, (((value, grad), (m, v)), &decays)) in params.values_and_grads().zip(self.first.iter().zip(&self.second)).zip(&self.decay).enumerate() {
            let decays = decays && wd != 0.0;
            match self.cfg.kind {
                OptimizerKind::Sgd => {
                    let s = sgd_scalars(&self.cfg, self.steps, lr);
                    let momentum = (self.cfg.momentum != 0.0).then_some(s.momentum);
                    let w = SgdWords { l2: decays, momentum, neg_lr: s.neg_lr, first: s.first, weight_decay: s.weight_decay };
                    ko::sgd(value, grad, m, v, st, &w, i)?;
                }
                OptimizerKind::Adam | OptimizerKind::AdamW => {
                    let s = adam_scalars(&self.cfg, self.steps, lr);
                    let decay = match (decays, self.cfg.kind) {
                        (false, _) => 0,
                        (true, OptimizerKind::AdamW) => 2,
                        (true, _) => 1,
                    };
                    let w = AdamWords {
                        decay,
                        lerp_weight: s.lerp_weight,
                        beta2: s.beta2,
                        one_minus_beta2: s.one_minus_beta2,
                        bias_correction2_sqrt: s.bias_correction2_sqrt,
                        eps: s.eps,
                        neg_step_size: s.neg_step_size,
                        weight_decay: s.weight_decay,
                        decay_factor: s.decay_factor,
                    };
                    ko::adam(value, grad, m, v, st, &w, i)?;
                }
            }
        }
        if self.cfg.averages() {
            let weight = self.cfg.average_weight(self.steps - 1);
            for (((value, grad), average), spare) in params.values_and_grads().zip(&self.averages).zip(&self.second) {
                ko::average(average, value, grad, spare, st, weight)?;
            }
        }
        Ok(())
    }

    /// Exchanges `params`' values with the moving averages (buffer handles; nothing without
    /// averages): twice, everything is as before.
    pub fn swap_averages(&mut self, params: &mut DeviceParams) {
        if self.cfg.averages() {
            params.swap_values(&mut self.averages);
        }
    }

    /// Takes back the count of an update the status says was skipped (the CPU optimizer is
    /// not called at all on such a step).
    pub fn skipped(&mut self) {
        self.steps = self.steps.saturating_sub(1);
    }

    /// The device this optimizer's state lives on.
    pub fn device(&self) -> Option<&GpuDevice> {
        self.first.first().map(|t| t.device())
    }
}
