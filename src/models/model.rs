//! [`Model`]: a built network of any family with its parameters and buffers — what the rest
//! of the program trains, saves, evaluates and samples.

use std::sync::Arc;

use super::config::ModelConfig;
use super::family::Network;
use crate::error::{Error, Result};
#[cfg(feature = "gpu")]
use crate::nn::device::{DeviceParams, GpuBackend, GpuStepBackend, GpuStepState};
use crate::nn::{Buffers, GraphBackend, LayerInfo, ModelBuilder, ParamStore, Plan, StepBackend, StepState};
#[cfg(feature = "gpu")]
use crate::tensor::gpu::GpuGraph;
use crate::tensor::{Graph, Tensor, Var};

/// A language model of any family with its parameters and buffers.
#[derive(Clone, Debug)]
pub struct Model {
    config: ModelConfig,
    vocab_size: usize,
    net: Arc<dyn Network>,
    params: ParamStore,
    buffers: Buffers,
    slots: usize,
    layers: Vec<LayerInfo>,
}

/// Rejects a vocabulary too small for a language model.
fn check_vocab(vocab_size: usize) -> Result<()> {
    if vocab_size < 2 {
        return Err(Error::config("vocab_size", format!("{vocab_size} is too small")));
    }
    Ok(())
}

impl Model {
    /// A freshly initialised model (PyTorch default inits) drawn from `seed`.
    pub fn new(config: &ModelConfig, vocab_size: usize, seed: u64) -> Result<Self> {
        check_vocab(vocab_size)?;
        let mut b = ModelBuilder::new(seed);
        let net = config.info().build(config.settings_json(), vocab_size, &mut b)?;
        let built = b.finish()?;
        Ok(Model { config: config.clone(), vocab_size, net, params: built.params, buffers: built.buffers, slots: built.slots, layers: built.layers })
    }

    /// The size of the model `config` would build, without allocating it: its parameter count
    /// (checked arithmetic: an absurd config is an error here, not an allocation failure) and
    /// layer list.
    pub fn plan(config: &ModelConfig, vocab_size: usize) -> Result<Plan> {
        check_vocab(vocab_size)?;
        let mut b = ModelBuilder::planner();
        config.info().build(config.settings_json(), vocab_size, &mut b)?;
        Ok(b.plan())
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Vocabulary size (rows of the embedding, width of the logits).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Named parameters in PyTorch order.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Named parameters, mutable (optimizers, loading).
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }

    /// BatchNorm running statistics.
    pub fn buffers(&self) -> &Buffers {
        &self.buffers
    }

    /// BatchNorm running statistics, mutable (a data-parallel run copies rank 0's to the
    /// others before they evaluate).
    pub fn buffers_mut(&mut self) -> &mut Buffers {
        &mut self.buffers
    }

    /// Parameters and buffers together, mutable (a device copies both back at once).
    pub fn state_mut(&mut self) -> (&mut ParamStore, &mut Buffers) {
        (&mut self.params, &mut self.buffers)
    }

    /// The layers in registration order, with their types and costs (for summaries).
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Parameters then buffers, as PyTorch's `state_dict()` names them.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = self.params.named_values();
        out.extend(self.buffers.named());
        out
    }

    /// Loads a state_dict: every parameter and buffer must be present with its shape.
    pub fn load_state_dict(&mut self, tensors: Vec<(String, Tensor)>, source: &std::path::Path) -> Result<()> {
        let (mut params, mut bufs) = (Vec::new(), Vec::new());
        for (name, t) in tensors {
            if name.ends_with(".running_mean") || name.ends_with(".running_var") {
                bufs.push((name, t));
            } else if !name.ends_with(".num_batches_tracked") {
                params.push((name, t));
            }
        }
        self.params.load_named(params, source)?;
        for (prefix, mean, var) in &mut self.buffers.entries {
            for (suffix, dst) in [("running_mean", mean), ("running_var", var)] {
                let name = format!("{prefix}.{suffix}");
                let t =
                    bufs.iter().find(|(n, _)| *n == name).map(|(_, t)| t.clone()).ok_or_else(|| Error::bad_file(source, format!("missing tensor `{name}`")))?;
                if t.shape() != dst.shape() {
                    return Err(Error::bad_file(source, format!("tensor `{name}` has shape {:?}, expected {:?}", t.shape(), dst.shape())));
                }
                *dst = t;
            }
        }
        Ok(())
    }

    /// Tokens (positions) each prediction can see, for sequence families; rows of context
    /// for grid families.
    pub fn receptive_field(&self) -> usize {
        self.net.receptive_field()
    }

    /// The longest sequence the model accepts (`None`: any length).
    pub fn max_len(&self) -> Option<usize> {
        self.net.max_len()
    }

    /// Checks that token ids of `shape` fit the family's layout and length limit.
    fn check_input(&self, shape: &[usize]) -> Result<()> {
        let want_rank = if self.config.is_grid() { 3 } else { 2 };
        if shape.len() != want_rank {
            return Err(Error::shape("model", format!("{} expects token ids of rank {want_rank}, got shape {shape:?}", self.config.family())));
        }
        if let (Some(max), false) = (self.max_len(), self.config.is_grid()) {
            if shape[1] > max {
                return Err(Error::shape("model", format!("{} takes sequences of at most {max} tokens, got {}", self.config.family(), shape[1])));
            }
        }
        Ok(())
    }

    /// Runs `f` with a tape backend over `graph`, then folds training-mode BatchNorm batch
    /// statistics into the running ones (PyTorch semantics).
    fn on_graph(
        &mut self,
        graph: &mut Graph,
        shape: &[usize],
        dropout_seed: u64,
        f: impl FnOnce(&dyn Network, &mut GraphBackend<'_>) -> Result<Var>,
    ) -> Result<Var> {
        self.check_input(shape)?;
        let mut b = GraphBackend::new(graph, &self.params, &self.buffers, shape, dropout_seed);
        let out = f(self.net.as_ref(), &mut b)?;
        let stats = std::mem::take(&mut b.batch_stats);
        for (slot, momentum, s) in stats {
            let (_, mean, var) = &mut self.buffers.entries[slot];
            for (r, v) in mean.data_mut().iter_mut().zip(&s.mean) {
                *r = (1.0 - momentum) * *r + momentum * v;
            }
            for (r, v) in var.data_mut().iter_mut().zip(&s.var_unbiased) {
                *r = (1.0 - momentum) * *r + momentum * v;
            }
        }
        Ok(out)
    }

    /// Records the forward pass of token ids of `shape` ((B, T), or (B, H, W) for grids) on
    /// `graph` and returns the logits ((B, T, V), or (B, H, W, V)). In training mode
    /// BatchNorm running statistics are updated (PyTorch semantics) and dropout masks are
    /// drawn from seed 0.
    pub fn forward(&mut self, graph: &mut Graph, ids: &[u32], shape: &[usize]) -> Result<Var> {
        self.on_graph(graph, shape, 0, |net, b| net.logits(b, ids))
    }

    /// The mean cross-entropy of the model's predictions against `targets` (one per input
    /// position; -1 is ignored): the same value and gradients as [`Model::forward`] then
    /// [`Graph::cross_entropy`], but the head and the loss run fused, so the logits are
    /// never stored. On a training graph the dropout masks come from `dropout_seed` (a
    /// training run gives each step its own); evaluation graphs have no dropout.
    pub fn loss(&mut self, graph: &mut Graph, ids: &[u32], shape: &[usize], targets: &[i64], dropout_seed: u64) -> Result<Var> {
        self.on_graph(graph, shape, dropout_seed, |net, b| net.loss(b, ids, targets))
    }

    /// Records the forward pass of token ids of `shape` on a GPU tape over `params` (this
    /// model's parameters on the device) and returns the logits; BatchNorm's running
    /// statistics are updated on the device in training mode.
    #[cfg(feature = "gpu")]
    pub fn forward_on_device(&self, graph: &mut GpuGraph, params: &DeviceParams, ids: &[u32], shape: &[usize]) -> Result<Var> {
        self.check_input(shape)?;
        let mut b = GpuBackend::new(graph, params, shape, 0);
        self.net.gpu_logits(&mut b, ids)
    }

    /// [`Model::loss`] on a GPU tape over `params`: the head runs fused with the loss, the
    /// logits never leave the device, and on a training tape backward writes every
    /// parameter's gradient into `params`. The dropout masks come from `dropout_seed` but are
    /// drawn by the device's generator (not the CPU engine's masks).
    #[cfg(feature = "gpu")]
    pub fn loss_on_device(&self, graph: &mut GpuGraph, params: &DeviceParams, ids: &[u32], shape: &[usize], targets: &[i64], dropout_seed: u64) -> Result<Var> {
        self.check_input(shape)?;
        let mut b = GpuBackend::new(graph, params, shape, dropout_seed);
        self.net.gpu_loss(&mut b, ids, targets)
    }

    /// Fresh generation state on a GPU for `batch` sequences.
    #[cfg(feature = "gpu")]
    pub fn new_device_state(&self, batch: usize) -> GpuStepState {
        GpuStepState::new(batch, self.slots)
    }

    /// [`Model::step`] on a GPU: feeds one token per sequence through the state's histories
    /// on the device and returns the next-token logits (B, V), read back.
    #[cfg(feature = "gpu")]
    pub fn step_on_device(&self, params: &DeviceParams, state: &mut GpuStepState, ids: &[u32]) -> Result<Tensor> {
        if !self.can_step() {
            return Err(Error::shape("step", format!("{} has no incremental step; generation recomputes the grid", self.config.family())));
        }
        if let Some(max) = self.max_len() {
            if state.position >= max {
                return Err(Error::shape("step", format!("{} takes sequences of at most {max} tokens", self.config.family())));
            }
        }
        let batch = state.batch();
        let mut b = GpuStepBackend::new(params, state);
        let logits = self.net.gpu_step(&mut b, ids)?;
        let logits = b.graph.value(logits).to_vec()?;
        drop(b);
        state.position += 1;
        Tensor::new(vec![batch, self.vocab_size], logits)
    }

    /// Fresh generation state for `batch` sequences.
    pub fn new_state(&self, batch: usize) -> StepState {
        StepState::new(batch, self.slots)
    }

    /// Feeds one token per sequence and returns the next-token logits (B, V), computed
    /// incrementally from the state (eval-mode maths).
    pub fn step(&self, state: &mut StepState, ids: &[u32]) -> Result<Tensor> {
        if !self.can_step() {
            return Err(Error::shape("step", format!("{} has no incremental step; generation recomputes the grid", self.config.family())));
        }
        if let Some(max) = self.max_len() {
            if state.position >= max {
                return Err(Error::shape("step", format!("{} takes sequences of at most {max} tokens", self.config.family())));
            }
        }
        let mut b = StepBackend::new(&self.params, &self.buffers, state);
        let logits = self.net.step(&mut b, ids)?;
        state.position += 1;
        let batch = state.batch();
        logits.reshape(vec![batch, self.vocab_size])
    }

    /// Whether [`Model::step`] is available.
    pub fn can_step(&self) -> bool {
        !self.config.is_grid()
    }
}
