//! Training on a GPU ([`DeviceRun`]): the session's model and optimizer mirrored on the
//! device for the whole run. A step sends the batch's token ids (and the embedding
//! gradient's index arrays) up and reads five words back — the loss, the gradient norm, the
//! skip flag and the first parameter that became non-finite; the weights come back only
//! when the host asks for them (checkpoints, samples, the end of the run).
//!
//! A step follows [`train_step`](super::step::train_step) exactly: the same fused loss,
//! clipping, update rule and divergence verdicts; the update is skipped on the device when
//! the loss or the gradient norm is not finite, as the CPU step returns before updating.

use crate::data::{Batch, Dataset, Split};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::nn::device::DeviceParams;
use crate::optim::device::{DeviceOptimizer, StepStatus};
use crate::optim::Optimizer;
use crate::run::eval::EvalReport;
use crate::run::step::{batch_shape, StepOutcome, StepSettings, StepStats};
use crate::tensor::gpu::{GpuDevice, GpuGraph, Traffic};

/// A model and its optimizer on a GPU.
pub struct DeviceRun {
    device: GpuDevice,
    params: DeviceParams,
    optimizer: DeviceOptimizer,
    status: StepStatus,
    /// The host's model and optimizer are older than the device's (steps taken since the
    /// last sync).
    host_behind: bool,
}

impl DeviceRun {
    /// Copies `model` and `optimizer` to `device`.
    pub fn new(device: &GpuDevice, model: &Model, optimizer: &Optimizer) -> Result<Self> {
        let params = DeviceParams::upload(device, model.params(), model.buffers())?;
        let optimizer = DeviceOptimizer::upload(optimizer, model.params(), &params)?;
        let status = StepStatus::new(&params)?;
        Ok(DeviceRun { device: device.clone(), params, optimizer, status, host_behind: false })
    }

    pub fn device(&self) -> &GpuDevice {
        &self.device
    }

    /// The model's parameters on the device.
    pub fn params(&self) -> &DeviceParams {
        &self.params
    }

    /// Bytes moved and kernels launched so far on the device.
    pub fn traffic(&self) -> Traffic {
        self.device.traffic()
    }

    /// One optimizer step on `batch`. On divergence the host's model and optimizer are
    /// brought up to date first (the trainer then decides from them what to save).
    pub fn step(&mut self, model: &mut Model, optimizer: &mut Optimizer, batch: &Batch, settings: StepSettings) -> Result<StepOutcome> {
        let shape = batch_shape(batch);
        let mut g = GpuGraph::new(&self.device, true);
        let loss = model.loss_on_device(&mut g, &self.params, &batch.inputs, &shape, &batch.targets, settings.dropout_seed)?;
        g.backward(loss)?;
        self.status.begin(g.value(loss))?;
        drop(g);
        self.status.grad_norm(&self.params, settings.clip_grad)?;
        self.optimizer.step(&self.params, settings.lr, &self.status)?;
        let report = self.status.read()?;
        self.host_behind = true;
        let verdict = if report.skipped {
            self.optimizer.skipped();
            if !report.loss.is_finite() {
                Some("the loss".to_string())
            } else {
                Some(format!("the gradient of {}", self.first_non_finite_grad(model)?))
            }
        } else {
            report.bad_param.map(|i| format!("parameter {} after the update", model.params().params().get(i).map_or("?", |p| p.name.as_str())))
        };
        if let Some(what) = verdict {
            self.sync(model, Some(optimizer))?;
            return Ok(StepOutcome::Diverged { what });
        }
        Ok(StepOutcome::Done(StepStats { loss: report.loss as f64, grad_norm: report.grad_norm as f64, tokens: batch.num_targets(), allreduce_ms: 0.0 }))
    }

    /// The name of the first parameter whose gradient is not finite (read back only when a
    /// step found the norm so).
    fn first_non_finite_grad(&self, model: &Model) -> Result<String> {
        let mut grads = model.params().clone();
        self.params.download_grads(&mut grads)?;
        Ok(crate::optim::first_non_finite(&grads).unwrap_or_else(|| "a parameter".into()))
    }

    /// Brings the host's model (weights, BatchNorm statistics) and, when given, optimizer up
    /// to date with the device.
    pub fn sync(&mut self, model: &mut Model, optimizer: Option<&mut Optimizer>) -> Result<()> {
        if !self.host_behind {
            return Ok(());
        }
        let (store, buffers) = model.state_mut();
        self.params.download(store, buffers)?;
        if let Some(opt) = optimizer {
            self.optimizer.download(opt)?;
            self.host_behind = false;
        }
        Ok(())
    }

    /// Exchanges the parameters on the device with the optimizer's moving averages there
    /// (their buffers, not their values); the host is behind afterwards.
    pub fn swap_averages(&mut self) {
        self.optimizer.swap_averages(&mut self.params);
        self.host_behind = true;
    }

    /// Mean loss over `max_batches` batches spread over `split` (0 = all), on the device.
    pub fn evaluate(&self, model: &Model, dataset: &Dataset, split: Split, batch_size: usize, max_batches: usize) -> Result<EvalReport> {
        evaluate_on_device(model, &self.params, dataset, split, batch_size, max_batches, &crate::cancel::CancelToken::new())
    }
}

/// [`evaluate`](crate::run::evaluate) on a GPU holding `model`'s parameters: the same
/// batches, each loss (one scalar) read back; `cancel` stops it between batches.
pub fn evaluate_on_device(
    model: &Model,
    params: &DeviceParams,
    dataset: &Dataset,
    split: Split,
    batch_size: usize,
    max_batches: usize,
    cancel: &crate::cancel::CancelToken,
) -> Result<EvalReport> {
    crate::run::eval::evaluate_with(dataset, split, batch_size, max_batches, cancel, &mut |batch| {
        let mut g = GpuGraph::new(params.device(), false);
        let loss = model.loss_on_device(&mut g, params, &batch.inputs, &batch_shape(batch), &batch.targets, 0)?;
        let value = g.value(loss).to_vec()?;
        value.first().map(|&v| v as f64).ok_or_else(|| Error::device("the loss came back empty"))
    })
}
