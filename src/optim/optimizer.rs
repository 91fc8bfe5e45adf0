//! The optimizer: per-parameter state, one update per call, and exact save/resume.

use super::config::{torch_scalar, OptimizerConfig, OptimizerKind};
use super::kernels::{adam_update, average_update, sgd_update, AdamDecay, AdamScalars, SgdScalars};
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// The f32 constants of SGD update number `step` (counted from 1) at learning rate `lr`,
/// rounded as PyTorch rounds them.
pub(crate) fn sgd_scalars(cfg: &OptimizerConfig, step: u64, lr: f32) -> SgdScalars {
    let (lr, wd) = (torch_scalar(lr), torch_scalar(cfg.weight_decay));
    SgdScalars { weight_decay: wd as f32, momentum: torch_scalar(cfg.momentum) as f32, neg_lr: (-lr) as f32, first: step == 1 }
}

/// The f32 constants of Adam(W) update number `step` (counted from 1) at learning rate `lr`.
pub(crate) fn adam_scalars(cfg: &OptimizerConfig, step: u64, lr: f32) -> AdamScalars {
    let (lr, wd) = (torch_scalar(lr), torch_scalar(cfg.weight_decay));
    let beta1 = torch_scalar(cfg.betas.0);
    let beta2 = torch_scalar(cfg.betas.1);
    let t = step as f64;
    let bias_correction1 = 1.0 - beta1.powf(t);
    let bias_correction2 = 1.0 - beta2.powf(t);
    let step_size = lr / bias_correction1;
    AdamScalars {
        weight_decay: wd as f32,
        decay_factor: (1.0 - lr * wd) as f32,
        lerp_weight: (1.0 - beta1) as f32,
        beta2: beta2 as f32,
        one_minus_beta2: (1.0 - beta2) as f32,
        bias_correction2_sqrt: bias_correction2.sqrt() as f32,
        eps: torch_scalar(cfg.eps) as f32,
        neg_step_size: (-step_size) as f32,
    }
}

/// State kept for one parameter (f32, same layout as the parameter).
#[derive(Clone, Debug)]
struct Slot {
    name: String,
    shape: Vec<usize>,
    /// Adam(W) first moment, or the SGD momentum buffer; empty when unused.
    first: Vec<f32>,
    /// Adam(W) second moment; empty when unused.
    second: Vec<f32>,
    /// The moving average of the parameter ([`OptimizerConfig::ema_decay`]); empty when unused.
    average: Vec<f32>,
}

/// Which of a slot's buffers a state tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Buffer {
    First,
    Second,
    Average,
}

impl Slot {
    fn buffer(&self, b: Buffer) -> &Vec<f32> {
        match b {
            Buffer::First => &self.first,
            Buffer::Second => &self.second,
            Buffer::Average => &self.average,
        }
    }

    fn buffer_mut(&mut self, b: Buffer) -> &mut Vec<f32> {
        match b {
            Buffer::First => &mut self.first,
            Buffer::Second => &mut self.second,
            Buffer::Average => &mut self.average,
        }
    }
}

/// SGD, Adam or AdamW over a [`ParamStore`], with PyTorch's update rules and rounding.
///
/// Built for one store; [`Optimizer::step`] must be given that store (same parameters in
/// the same order). Every parameter is updated on every step (as PyTorch does for
/// parameters whose `.grad` is a tensor, zero or not).
#[derive(Clone, Debug)]
pub struct Optimizer {
    cfg: OptimizerConfig,
    steps: u64,
    slots: Vec<Slot>,
}

impl Optimizer {
    /// A fresh optimizer (zero state, 0 steps) for `params`; validates `cfg` first.
    pub fn new(cfg: &OptimizerConfig, params: &ParamStore) -> Result<Self> {
        cfg.validate()?;
        let (first, second) = match cfg.kind {
            OptimizerKind::Sgd => (cfg.momentum != 0.0, false),
            OptimizerKind::Adam | OptimizerKind::AdamW => (true, true),
        };
        let slots = params
            .params()
            .iter()
            .map(|p| {
                let n = p.value.numel();
                Slot {
                    name: p.name.clone(),
                    shape: p.value.shape().to_vec(),
                    first: if first { vec![0.0; n] } else { Vec::new() },
                    second: if second { vec![0.0; n] } else { Vec::new() },
                    // The average starts at the initial weights (AveragedModel's deep copy).
                    average: if cfg.averages() { p.value.data().to_vec() } else { Vec::new() },
                }
            })
            .collect();
        Ok(Optimizer { cfg: cfg.clone(), steps: 0, slots })
    }

    /// The configuration this optimizer was built with.
    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }

    /// Number of updates applied so far (PyTorch's `state["step"]`).
    pub fn steps_taken(&self) -> u64 {
        self.steps
    }

    /// Applies one update to every parameter from its `grad`, with learning rate `lr`
    /// (normally the schedule's value for this step). Returns the name of the first
    /// parameter (in store order) that holds a NaN or an infinity after the update, checked
    /// inside the update's own pass (an update can overflow from finite gradients: a huge
    /// learning rate, L2 decay of huge weights); `None` when every value is finite.
    ///
    /// # Panics
    /// If `params` is not the store this optimizer was built for (a programming error).
    pub fn step(&mut self, params: &mut ParamStore, lr: f32) -> Option<String> {
        let mut first_bad = None;
        assert_eq!(params.params().len(), self.slots.len(), "optimizer used with a different parameter store");
        self.steps += 1;
        let wd = torch_scalar(self.cfg.weight_decay);
        match self.cfg.kind {
            OptimizerKind::Sgd => {
                let s = sgd_scalars(&self.cfg, self.steps, lr);
                for (p, slot) in params.params_mut().iter_mut().zip(&mut self.slots) {
                    assert_eq!(p.value.numel(), p.grad.numel(), "gradient of `{}` has the wrong size", p.name);
                    assert_eq!(p.value.shape(), &slot.shape[..], "optimizer used with a different parameter store");
                    let decay = p.decay && wd != 0.0;
                    if !sgd_update(p.value.data_mut(), p.grad.data(), &mut slot.first, &s, decay) && first_bad.is_none() {
                        first_bad = Some(p.name.clone());
                    }
                }
            }
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                let s = adam_scalars(&self.cfg, self.steps, lr);
                let kind = if self.cfg.kind == OptimizerKind::AdamW { AdamDecay::Decoupled } else { AdamDecay::L2 };
                for (p, slot) in params.params_mut().iter_mut().zip(&mut self.slots) {
                    assert_eq!(p.value.numel(), p.grad.numel(), "gradient of `{}` has the wrong size", p.name);
                    assert_eq!(p.value.shape(), &slot.shape[..], "optimizer used with a different parameter store");
                    let decay = if p.decay && wd != 0.0 { kind } else { AdamDecay::None };
                    if !adam_update(p.value.data_mut(), p.grad.data(), &mut slot.first, &mut slot.second, &s, decay) && first_bad.is_none() {
                        first_bad = Some(p.name.clone());
                    }
                }
            }
        }
        if self.cfg.averages() {
            let weight = self.cfg.average_weight(self.steps - 1);
            for (p, slot) in params.params().iter().zip(&mut self.slots) {
                average_update(&mut slot.average, p.value.data(), weight);
            }
        }
        first_bad
    }

    /// Whether this optimizer keeps a moving average of the weights
    /// ([`OptimizerConfig::ema_decay`]).
    pub fn averages(&self) -> bool {
        self.cfg.averages()
    }

    /// Exchanges the weights of `params` with their moving averages (a no-op without
    /// averages): called twice, everything is as before. A run evaluates the average this
    /// way and swaps back to step on.
    ///
    /// # Panics
    /// If `params` is not the store this optimizer was built for (a programming error).
    pub fn swap_averages(&mut self, params: &mut ParamStore) {
        if !self.averages() {
            return;
        }
        assert_eq!(params.params().len(), self.slots.len(), "optimizer used with a different parameter store");
        for (p, slot) in params.params_mut().iter_mut().zip(&mut self.slots) {
            p.value.data_mut().swap_with_slice(&mut slot.average);
        }
    }

    /// Writes the moving averages over the weights of `params` (nothing without them): what
    /// a run exports as its model.
    ///
    /// # Panics
    /// If `params` is not the store this optimizer was built for (a programming error).
    pub fn copy_averages_into(&self, params: &mut ParamStore) {
        if !self.averages() {
            return;
        }
        assert_eq!(params.params().len(), self.slots.len(), "optimizer used with a different parameter store");
        for (p, slot) in params.params_mut().iter_mut().zip(&self.slots) {
            p.value.data_mut().copy_from_slice(&slot.average);
        }
    }

    /// A copy of `params` with [`Optimizer::copy_averages_into`] applied.
    pub fn averaged(&self, params: &ParamStore) -> ParamStore {
        let mut out = params.clone();
        self.copy_averages_into(&mut out);
        out
    }

    /// Names of the state tensors, in [`Optimizer::state_tensors`]' order, with their slot
    /// and buffer: each slot's moments, then (with averages) every slot's average.
    fn state_names(&self) -> Vec<(String, usize, Buffer)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            match self.cfg.kind {
                OptimizerKind::Sgd if slot.first.is_empty() => {}
                OptimizerKind::Sgd => out.push((format!("momentum_buffer.{}", slot.name), i, Buffer::First)),
                OptimizerKind::Adam | OptimizerKind::AdamW => {
                    out.push((format!("exp_avg.{}", slot.name), i, Buffer::First));
                    out.push((format!("exp_avg_sq.{}", slot.name), i, Buffer::Second));
                }
            }
        }
        if self.averages() {
            out.extend(self.slots.iter().enumerate().map(|(i, slot)| (format!("ema.{}", slot.name), i, Buffer::Average)));
        }
        out
    }

    /// The optimizer state as named tensors: in parameter order `exp_avg.<param>` and
    /// `exp_avg_sq.<param>` for Adam(W), `momentum_buffer.<param>` for SGD with momentum,
    /// nothing for plain SGD; then, with [`OptimizerConfig::ema_decay`], `ema.<param>` for
    /// every parameter. Save these with the step count for an exact resume.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.state_names()
            .into_iter()
            .map(|(name, i, b)| {
                let slot = &self.slots[i];
                // The buffers always hold exactly `shape`'s element count.
                let t = Tensor::new(slot.shape.clone(), slot.buffer(b).clone()).unwrap_or_else(|_| Tensor::zeros(slot.shape.clone()));
                (name, t)
            })
            .collect()
    }

    /// Restores the state saved by [`Optimizer::state_tensors`] and the step count, so that
    /// training continues bit-for-bit as if uninterrupted. Every expected tensor must be
    /// present once with the parameter's shape and no other may appear; errors name
    /// `source` and the tensor. On error the optimizer is left unchanged.
    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>, steps: u64, source: &Path) -> Result<()> {
        let mut expected: HashMap<String, (usize, Buffer)> = HashMap::new();
        let mut order = Vec::new();
        for (name, i, b) in self.state_names() {
            order.push(name.clone());
            expected.insert(name, (i, b));
        }
        let mut staged: HashMap<String, Vec<f32>> = HashMap::new();
        for (name, t) in tensors {
            let Some(&(i, _)) = expected.get(&name) else {
                let what = if self.averages() { "" } else { " without a weight average" };
                return Err(Error::bad_file(
                    source,
                    format!("unexpected optimizer tensor `{name}` (not part of {:?} state{what} for this model)", self.cfg.kind),
                ));
            };
            let shape = &self.slots[i].shape;
            if t.shape() != &shape[..] {
                return Err(Error::bad_file(source, format!("optimizer tensor `{name}` has shape {:?}, expected {:?}", t.shape(), shape)));
            }
            if staged.insert(name.clone(), t.into_data()).is_some() {
                return Err(Error::bad_file(source, format!("optimizer tensor `{name}` appears twice")));
            }
        }
        if let Some(missing) = order.iter().find(|n| !staged.contains_key(*n)) {
            return Err(Error::bad_file(source, format!("missing optimizer tensor `{missing}`")));
        }
        for (name, data) in staged {
            if let Some(&(i, b)) = expected.get(&name) {
                *self.slots[i].buffer_mut(b) = data;
            }
        }
        self.steps = steps;
        Ok(())
    }
}
