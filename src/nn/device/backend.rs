//! [`GpuBackend`]: records a model's forward on a [`GpuGraph`], reading the parameters from
//! [`DeviceParams`] in place (no copy) and, on a training graph, writing their gradients
//! into the device gradient buffers during backward.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::nn::backend::Backend;
use crate::nn::device::DeviceParams;
use crate::nn::layers::{BatchNorm1d, CausalConv1d, Embedding, Head, LayerNorm, Linear, MaskedConv2d};
use crate::nn::long_conv::LongConv;
use crate::nn::ParamId;
use crate::tensor::gpu::GpuGraph;
use crate::tensor::{Activation, Var};

/// Records a forward pass on a [`GpuGraph`] for a batch of `(batch, len)` token sequences
/// (or `(batch, height, width)` grids).
pub struct GpuBackend<'a> {
    pub graph: &'a mut GpuGraph,
    params: &'a DeviceParams,
    bound: HashMap<ParamId, Var>,
    shape: Vec<usize>,
    /// Seed of this pass's dropout masks; each dropout call mixes in its own number.
    dropout_seed: u64,
    dropout_calls: u64,
}

/// SplitMix64's finaliser: unrelated seeds for neighbouring inputs.
fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<'a> GpuBackend<'a> {
    /// A backend over `graph` for inputs of `shape`, reading `params`; its dropout masks
    /// (training graphs only) come from `dropout_seed`.
    pub fn new(graph: &'a mut GpuGraph, params: &'a DeviceParams, shape: &[usize], dropout_seed: u64) -> Self {
        GpuBackend { graph, params, bound: HashMap::new(), shape: shape.to_vec(), dropout_seed, dropout_calls: 0 }
    }

    /// The tape variable of a parameter, recorded on first use (with its gradient buffer on a
    /// training graph).
    pub fn param(&mut self, id: ParamId) -> Result<Var> {
        if let Some(&v) = self.bound.get(&id) {
            return Ok(v);
        }
        let value = self.params.value(id).clone();
        let v = if self.graph.training() { self.graph.param(value, Some(self.params.grad(id).clone()), id.0)? } else { self.graph.constant(value) };
        self.bound.insert(id, v);
        Ok(v)
    }

    fn opt_param(&mut self, id: Option<ParamId>) -> Result<Option<Var>> {
        id.map(|id| self.param(id)).transpose()
    }

    /// The mean cross-entropy of `head`'s logits of `x` against `targets`, fused: the logits
    /// stay in one device buffer that becomes their gradient.
    pub fn head_loss(&mut self, head: Head<'_>, x: &Var, targets: &[i64]) -> Result<Var> {
        match head {
            Head::Linear(layer) => {
                let (w, b) = (self.param(layer.weight)?, self.opt_param(layer.bias)?);
                self.graph.linear_cross_entropy(*x, w, b, targets)
            }
            Head::Conv(layer) => {
                let (w, b) = (self.param(layer.weight)?, self.opt_param(layer.bias)?);
                self.graph.conv1d_cross_entropy(*x, w, b, &layer.spec(), targets)
            }
        }
    }
}

impl Backend for GpuBackend<'_> {
    type Value = Var;

    fn embedding(&mut self, layer: &Embedding, ids: &[u32]) -> Result<Var> {
        let w = self.param(layer.weight)?;
        let shape = self.shape.clone();
        self.graph.embedding(w, ids, &shape)
    }

    fn linear(&mut self, layer: &Linear, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight)?, self.opt_param(layer.bias)?);
        self.graph.linear(*x, w, b)
    }

    fn causal_conv(&mut self, layer: &CausalConv1d, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight)?, self.opt_param(layer.bias)?);
        self.graph.conv1d(*x, w, b, &layer.spec())
    }

    fn batchnorm(&mut self, layer: &BatchNorm1d, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight)?, self.param(layer.bias)?);
        let (mean, var) = self.params.running(layer.slot)?;
        self.graph.batchnorm(*x, w, b, layer.eps, (mean, var), layer.momentum)
    }

    fn layernorm(&mut self, layer: &LayerNorm, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight)?, self.param(layer.bias)?);
        self.graph.layernorm(*x, w, b, layer.eps)
    }

    fn masked_conv2d(&mut self, layer: &MaskedConv2d, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight)?, self.param(layer.bias)?);
        self.graph.masked_conv2d(*x, w, Some(b), &layer.spec)
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
        let len = *self.graph.shape(*u).get(1).ok_or_else(|| Error::shape("long_conv", "input must be (B, T, C)"))?;
        let (z, window) = self.params.filter_constants(layer, len)?;
        // The filter network of `LongConv::filter`, op for op.
        let freq = self.param(layer.freq)?;
        let mut h = self.graph.constant(z); // (L, E)
        for &(w, b) in &layer.mlp {
            let (w, b) = (self.param(w)?, self.param(b)?);
            h = self.graph.linear(h, w, Some(b))?; // (L, W)
            h = self.graph.scale_channels(h, freq)?;
            h = self.graph.sin(h)?;
        }
        let out = self.param(layer.out)?;
        let h = self.graph.linear(h, out, None)?; // (L, C)
        let window = self.graph.constant(window); // (L, C)
        let taps = self.graph.mul(h, window)?;
        let d = self.param(layer.bias)?; // (C)
        self.graph.long_conv(*u, taps, d) // (B, T, C)
    }

    fn dropout(&mut self, x: &Var, p: f32) -> Result<Var> {
        self.dropout_calls += 1;
        let seed = mix(self.dropout_seed ^ self.dropout_calls.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.graph.dropout(*x, p, seed)
    }
}
