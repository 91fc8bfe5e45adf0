//! Cached generation on a GPU: [`GpuStepState`] keeps every causal conv's ring of past
//! inputs and every long convolution's filter and input history in device memory, and
//! [`GpuStepBackend`] runs one position of a family's forward — the stateless layers as an
//! eval tape's ops, the convolutions from their histories. Per token the ids go up and the
//! logits come back.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::nn::backend::Backend;
use crate::nn::device::backend::record_filter;
use crate::nn::device::DeviceParams;
use crate::nn::layers::{BatchNorm1d, CausalConv1d, Embedding, LayerNorm, Linear, MaskedConv2d};
use crate::nn::long_conv::LongConv;
use crate::nn::ParamId;
use crate::tensor::gpu::{step, GpuGraph, GpuTensor};
use crate::tensor::{Activation, Var};

/// A long convolution's generation state: its filter for max_len positions and the inputs
/// so far.
struct LongState {
    taps: GpuTensor,
    history: GpuTensor,
}

/// Per-layer histories of a batch of sequences being generated on a GPU.
pub struct GpuStepState {
    batch: usize,
    /// Per causal conv slot: its last `span` inputs, (B, span, C_in), input τ at row τ mod span.
    rings: Vec<Option<GpuTensor>>,
    long: Vec<Option<LongState>>,
    /// Positions consumed so far.
    pub position: usize,
}

impl GpuStepState {
    /// Fresh state for `batch` sequences of a model with `slots` generation slots.
    pub fn new(batch: usize, slots: usize) -> Self {
        GpuStepState { batch, rings: (0..slots).map(|_| None).collect(), long: (0..slots).map(|_| None).collect(), position: 0 }
    }

    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// Runs a model forward for one position of every sequence; values are (B, 1, C).
pub struct GpuStepBackend<'a> {
    pub graph: GpuGraph,
    params: &'a DeviceParams,
    state: &'a mut GpuStepState,
    bound: HashMap<ParamId, Var>,
}

impl<'a> GpuStepBackend<'a> {
    /// A backend that advances `state` by one position.
    pub fn new(params: &'a DeviceParams, state: &'a mut GpuStepState) -> Self {
        GpuStepBackend { graph: GpuGraph::new(params.device(), false), params, state, bound: HashMap::new() }
    }

    fn param(&mut self, id: ParamId) -> Var {
        if let Some(&v) = self.bound.get(&id) {
            return v;
        }
        let v = self.graph.constant(self.params.value(id).clone());
        self.bound.insert(id, v);
        v
    }

    fn check_step(&self, x: Var) -> Result<usize> {
        match self.graph.shape(x) {
            [b, 1, c] if *b == self.state.batch => Ok(*c),
            s => Err(Error::shape("step", format!("one position of a batch of {} is (B, 1, C), got {s:?}", self.state.batch))),
        }
    }
}

impl Backend for GpuStepBackend<'_> {
    type Value = Var;

    fn embedding(&mut self, layer: &Embedding, ids: &[u32]) -> Result<Var> {
        if ids.len() != self.state.batch {
            return Err(Error::shape("step", format!("{} ids for a batch of {}", ids.len(), self.state.batch)));
        }
        let w = self.param(layer.weight);
        self.graph.embedding(w, ids, &[self.state.batch, 1])
    }

    fn linear(&mut self, layer: &Linear, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight), layer.bias.map(|b| self.param(b)));
        self.graph.linear(*x, w, b)
    }

    fn causal_conv(&mut self, layer: &CausalConv1d, x: &Var) -> Result<Var> {
        let c_in = self.check_step(*x)?;
        let span = layer.span();
        let ring = match &self.state.rings[layer.slot] {
            Some(r) => r.clone(),
            None => {
                let r = GpuTensor::zeros(self.params.device(), &[self.state.batch, span, c_in], "a conv's generation history")?;
                self.state.rings[layer.slot] = Some(r.clone());
                r
            }
        };
        let pos = self.state.position;
        step::ring_write(self.graph.value(*x), &ring, pos % span)?;
        let bias = layer.bias.map(|b| self.params.value(b).clone());
        let y = step::ring_conv(&ring, self.params.value(layer.weight), bias.as_ref(), &layer.spec(), pos)?;
        Ok(self.graph.constant(y))
    }

    fn batchnorm(&mut self, layer: &BatchNorm1d, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight), self.param(layer.bias));
        let (mean, var) = self.params.running(layer.slot)?;
        self.graph.batchnorm(*x, w, b, layer.eps, (mean, var), layer.momentum)
    }

    fn layernorm(&mut self, layer: &LayerNorm, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight), self.param(layer.bias));
        self.graph.layernorm(*x, w, b, layer.eps)
    }

    fn masked_conv2d(&mut self, _layer: &MaskedConv2d, _x: &Var) -> Result<Var> {
        Err(Error::shape("step", "a masked 2-D convolution has no incremental step; grid generation recomputes the grid"))
    }

    fn activation(&mut self, x: &Var, act: Activation) -> Result<Var> {
        self.graph.activation(*x, act)
    }

    fn add(&mut self, a: &Var, b: &Var) -> Result<Var> {
        self.graph.add(*a, *b)
    }

    fn mul(&mut self, a: &Var, b: &Var) -> Result<Var> {
        self.graph.mul(*a, *b)
    }

    fn glu(&mut self, x: &Var) -> Result<Var> {
        self.graph.glu(*x)
    }

    fn slice_channels(&mut self, x: &Var, start: usize, end: usize) -> Result<Var> {
        self.graph.slice_channels(*x, start, end)
    }

    fn long_conv(&mut self, layer: &LongConv, u: &Var) -> Result<Var> {
        let c = self.check_step(*u)?;
        let (max_len, t) = (layer.spec.max_len, self.state.position);
        if t >= max_len {
            return Err(Error::shape("long_conv step", format!("the filter covers {max_len} positions; position {t} is past max_len")));
        }
        if self.state.long[layer.slot].is_none() {
            // The filter depends on the parameters only: recorded once, for max_len positions.
            let mut g = GpuGraph::new(self.params.device(), false);
            let params = self.params;
            let taps = record_filter(&mut g, params, layer, max_len, &mut |g, id| Ok(g.constant(params.value(id).clone())))?;
            let taps = g.value(taps).clone();
            let history = GpuTensor::zeros(params.device(), &[self.state.batch, max_len, c], "a long convolution's history")?;
            self.state.long[layer.slot] = Some(LongState { taps, history });
        }
        let Some(s) = &self.state.long[layer.slot] else { return Err(Error::shape("long_conv step", "no state")) };
        step::ring_write(self.graph.value(*u), &s.history, t)?;
        let y = step::long_conv_step(&s.history, &s.taps, self.params.value(layer.bias), t)?;
        Ok(self.graph.constant(y))
    }

    fn dropout(&mut self, x: &Var, _p: f32) -> Result<Var> {
        Ok(*x)
    }
}
