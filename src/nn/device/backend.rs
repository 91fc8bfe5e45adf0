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

/// Parameter `id` on `graph`, recorded on first use: with its gradient buffer on a training
/// tape, as a constant otherwise.
fn bind(graph: &mut GpuGraph, params: &DeviceParams, bound: &mut HashMap<ParamId, Var>, id: ParamId) -> Result<Var> {
    if let Some(&v) = bound.get(&id) {
        return Ok(v);
    }
    let value = params.value(id).clone();
    let v = if graph.training() { graph.param(value, Some(params.grad(id).clone()), id.0)? } else { graph.constant(value) };
    bound.insert(id, v);
    Ok(v)
}

/// Records Hyena's filter network for `len` positions, op for op as `LongConv::filter` does
/// on the CPU tape: h = (sin(freq · linear(z)) …) · out ⊙ window, (len, C). `param` records a
/// parameter on `graph` (a trainable leaf, or a constant for generation).
pub(crate) fn record_filter(
    graph: &mut GpuGraph,
    params: &DeviceParams,
    layer: &LongConv,
    len: usize,
    param: &mut dyn FnMut(&mut GpuGraph, ParamId) -> Result<Var>,
) -> Result<Var> {
    let (z, window) = params.filter_constants(layer, len)?;
    let freq = param(graph, layer.freq)?;
    let mut h = graph.constant(z); // (L, E)
    for &(w, b) in &layer.mlp {
        let (w, b) = (param(graph, w)?, param(graph, b)?);
        h = graph.linear(h, w, Some(b))?; // (L, W)
        h = graph.scale_channels(h, freq)?;
        h = graph.sin(h)?;
    }
    let out = param(graph, layer.out)?;
    let h = graph.linear(h, out, None)?; // (L, C)
    let window = graph.constant(window); // (L, C)
    graph.mul(h, window)
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
        bind(self.graph, self.params, &mut self.bound, id)
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

    /// Slices only the windows that are not a whole value (the second gate's `v`).
    fn mul_channels(&mut self, a: &Var, a_start: usize, b: &Var, b_start: usize, width: usize) -> Result<Var> {
        let mut window = |x: Var, start: usize| match start == 0 && self.graph.shape(x).last() == Some(&width) {
            true => Ok(x),
            false => self.graph.slice_channels(x, start, start.saturating_add(width)),
        };
        let (a, b) = (window(*a, a_start)?, window(*b, b_start)?);
        self.graph.mul(a, b)
    }

    fn long_conv(&mut self, layer: &LongConv, u: &Var) -> Result<Var> {
        let len = *self.graph.shape(*u).get(1).ok_or_else(|| Error::shape("long_conv", "input must be (B, T, C)"))?;
        let (graph, params, bound) = (&mut *self.graph, self.params, &mut self.bound);
        let taps = record_filter(graph, params, layer, len, &mut |g, id| bind(g, params, bound, id))?; // (L, C)
        let d = self.param(layer.bias)?; // (C)
        self.graph.long_conv(*u, taps, d) // (B, T, C)
    }

    fn dropout(&mut self, x: &Var, p: f32) -> Result<Var> {
        self.dropout_calls += 1;
        let seed = mix(self.dropout_seed ^ self.dropout_calls.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.graph.dropout(*x, p, seed)
    }
}
