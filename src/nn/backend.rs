//! One model definition, two ways to run it: [`Backend`] is the small set of operations a
//! model's forward uses. [`GraphBackend`] records whole sequences on the autograd tape
//! (training, evaluation); [`StepBackend`](super::step::StepBackend) runs one position at a
//! time with per-layer ring buffers (fast generation). Each model writes its forward once,
//! generic over the backend.

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::nn::layers::{BatchNorm1d, CausalConv1d, Embedding, Head, LayerNorm, Linear, MaskedConv2d};
use crate::nn::long_conv::LongConv;
use crate::nn::{Buffers, ParamId, ParamStore};
use crate::tensor::{Activation, BatchStats, Dense, Graph, Var};

/// The operations model forwards are written in. Values are channels-last.
pub trait Backend {
    /// A value: `(B, T, C)` on the tape, `(B, 1, C)` when stepping.
    type Value: Clone;

    /// Token embeddings of `ids` (this backend's batch and positions, row-major).
    fn embedding(&mut self, layer: &Embedding, ids: &[u32]) -> Result<Self::Value>;
    /// A position-wise linear layer.
    fn linear(&mut self, layer: &Linear, x: &Self::Value) -> Result<Self::Value>;
    /// A causal convolution over time.
    fn causal_conv(&mut self, layer: &CausalConv1d, x: &Self::Value) -> Result<Self::Value>;
    /// Batch normalisation (batch statistics when training, running statistics otherwise).
    fn batchnorm(&mut self, layer: &BatchNorm1d, x: &Self::Value) -> Result<Self::Value>;
    /// Layer normalisation over the channels of every position.
    fn layernorm(&mut self, layer: &LayerNorm, x: &Self::Value) -> Result<Self::Value>;
    /// A PixelCNN masked 2-D convolution over a (B, H, W, C) grid; it has no incremental
    /// form, so a one-position backend refuses it.
    fn masked_conv2d(&mut self, layer: &MaskedConv2d, x: &Self::Value) -> Result<Self::Value>;
    /// A pointwise activation (an error only where the backend can fail to allocate).
    fn activation(&mut self, x: &Self::Value, act: Activation) -> Result<Self::Value>;
    /// `a + b`.
    fn add(&mut self, a: &Self::Value, b: &Self::Value) -> Result<Self::Value>;
    /// `a * b`.
    fn mul(&mut self, a: &Self::Value, b: &Self::Value) -> Result<Self::Value>;
    /// GLU over the channel axis.
    fn glu(&mut self, x: &Self::Value) -> Result<Self::Value>;
    /// Channels `start..end` of every position.
    fn slice_channels(&mut self, x: &Self::Value, start: usize, end: usize) -> Result<Self::Value>;
    /// `fc2(act(fc1(x)))`, a position-wise MLP. By default two linear layers around an
    /// activation; a backend with a fused op runs the activation inside the products.
    fn mlp(&mut self, fc1: &Linear, act: Activation, fc2: &Linear, x: &Self::Value) -> Result<Self::Value> {
        let z = self.linear(fc1, x)?;
        let z = self.activation(&z, act)?;
        self.linear(fc2, &z)
    }
    /// `a[..., a_start..a_start+width] * b[..., b_start..b_start+width]`: the product of two
    /// channel windows (Hyena's gates; `a` and `b` may be one value). By default two slices
    /// and a `mul`; a backend with a fused op reads the windows in place.
    fn mul_channels(&mut self, a: &Self::Value, a_start: usize, b: &Self::Value, b_start: usize, width: usize) -> Result<Self::Value> {
        let a = self.slice_channels(a, a_start, a_start.saturating_add(width))?;
        let b = self.slice_channels(b, b_start, b_start.saturating_add(width))?;
        self.mul(&a, &b)
    }
    /// Hyena's long causal convolution over the whole context, with the layer's implicit
    /// filter generated for the sequence length: (B, T, C) → (B, T, C).
    fn long_conv(&mut self, layer: &LongConv, u: &Self::Value) -> Result<Self::Value>;
    /// Dropout with probability `p` while training on the tape (inverted: kept values are
    /// scaled by 1/(1-p)); the identity in evaluation and when stepping.
    fn dropout(&mut self, x: &Self::Value, p: f32) -> Result<Self::Value>;

    /// The logits of a network's output layer.
    fn head(&mut self, head: Head<'_>, x: &Self::Value) -> Result<Self::Value> {
        match head {
            Head::Linear(layer) => self.linear(layer, x),
            Head::Conv(layer) => self.causal_conv(layer, x),
        }
    }
}

/// Records a forward pass on a [`Graph`] for a batch of `(batch, len)` token sequences.
pub struct GraphBackend<'a> {
    pub graph: &'a mut Graph,
    store: &'a ParamStore,
    buffers: &'a Buffers,
    bound: HashMap<ParamId, Var>,
    shape: Vec<usize>,
    /// Batch statistics of every batchnorm run in training mode: (buffer slot, the layer's
    /// running-average momentum, statistics).
    pub batch_stats: Vec<(usize, f32, BatchStats)>,
    /// Draws the dropout masks of this forward pass, in the order the layers run.
    dropout_rng: ChaCha8Rng,
}

impl<'a> GraphBackend<'a> {
    /// A backend over `graph` for inputs of `shape` ((B, T), or (B, H, W) for grids); its
    /// dropout masks (training graphs only) come from `dropout_seed`.
    pub fn new(graph: &'a mut Graph, store: &'a ParamStore, buffers: &'a Buffers, shape: &[usize], dropout_seed: u64) -> Self {
        let dropout_rng = ChaCha8Rng::seed_from_u64(dropout_seed);
        GraphBackend { graph, store, buffers, bound: HashMap::new(), shape: shape.to_vec(), batch_stats: Vec::new(), dropout_rng }
    }

    /// The tape variable of a parameter, recorded on first use.
    pub fn param(&mut self, id: ParamId) -> Var {
        if let Some(&v) = self.bound.get(&id) {
            return v;
        }
        let v = self.store.record(self.graph, id);
        self.bound.insert(id, v);
        v
    }

    fn opt_param(&mut self, id: Option<ParamId>) -> Option<Var> {
        id.map(|id| self.param(id))
    }

    /// The mean cross-entropy of `head`'s logits of `x` against `targets`, fused: the logits
    /// become the loss and its gradient block by block and are never stored
    /// ([`Graph::conv1d_cross_entropy`], [`Graph::linear_cross_entropy`]).
    pub fn head_loss(&mut self, head: Head<'_>, x: &Var, targets: &[i64]) -> Result<Var> {
        match head {
            Head::Linear(layer) => {
                let w = self.param(layer.weight);
                let b = self.opt_param(layer.bias);
                self.graph.linear_cross_entropy(*x, w, b, targets)
            }
            Head::Conv(layer) => {
                let w = self.param(layer.weight);
                let b = self.opt_param(layer.bias);
                self.graph.conv1d_cross_entropy(*x, w, b, &layer.spec(), targets)
            }
        }
    }
}

impl Backend for GraphBackend<'_> {
    type Value = Var;

    fn embedding(&mut self, layer: &Embedding, ids: &[u32]) -> Result<Var> {
        let w = self.param(layer.weight);
        let shape = self.shape.clone();
        self.graph.embedding(w, ids, &shape)
    }

    fn linear(&mut self, layer: &Linear, x: &Var) -> Result<Var> {
        let w = self.param(layer.weight);
        let b = self.opt_param(layer.bias);
        self.graph.linear(*x, w, b)
    }

    fn causal_conv(&mut self, layer: &CausalConv1d, x: &Var) -> Result<Var> {
        let w = self.param(layer.weight);
        let b = self.opt_param(layer.bias);
        self.graph.conv1d(*x, w, b, &layer.spec())
    }

    fn batchnorm(&mut self, layer: &BatchNorm1d, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight), self.param(layer.bias));
        let (_, mean, var) = &self.buffers.entries[layer.slot];
        let (y, stats) = self.graph.batchnorm(*x, w, b, layer.eps, (mean.data(), var.data()))?;
        if let Some(stats) = stats {
            self.batch_stats.push((layer.slot, layer.momentum, stats));
        }
        Ok(y)
    }

    fn layernorm(&mut self, layer: &LayerNorm, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight), self.param(layer.bias));
        self.graph.layernorm(*x, w, b, layer.eps)
    }

    fn masked_conv2d(&mut self, layer: &MaskedConv2d, x: &Var) -> Result<Var> {
        let (w, b) = (self.param(layer.weight), self.param(layer.bias));
        self.graph.masked_conv2d(*x, w, Some(b), &layer.spec)
    }

    fn activation(&mut self, x: &Var, act: Activation) -> Result<Var> {
        Ok(self.graph.activation(*x, act))
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
        let axis = self.graph.shape(*x).len().saturating_sub(1);
        self.graph.slice(*x, axis, start, end)
    }

    fn mlp(&mut self, fc1: &Linear, act: Activation, fc2: &Linear, x: &Var) -> Result<Var> {
        let mut dense = |layer: &Linear| Dense { weight: self.param(layer.weight), bias: self.opt_param(layer.bias) };
        let (fc1, fc2) = (dense(fc1), dense(fc2));
        self.graph.mlp(*x, fc1, act, fc2)
    }

    fn mul_channels(&mut self, a: &Var, a_start: usize, b: &Var, b_start: usize, width: usize) -> Result<Var> {
        self.graph.mul_channels(*a, a_start, *b, b_start, width)
    }

    fn long_conv(&mut self, layer: &LongConv, u: &Var) -> Result<Var> {
        let len = *self.graph.shape(*u).get(1).ok_or_else(|| Error::shape("long_conv", "input must be (B, T, C)"))?;
        let vars = layer.vars(|id| self.param(id));
        let taps = layer.filter(self.graph, &vars, len)?; // (T, C)
        let k = self.graph.transpose_last2(taps)?; // (C, T)
        let d = self.param(layer.bias); // (C)
        self.graph.long_conv(*u, k, d) // (B, T, C)
    }

    fn dropout(&mut self, x: &Var, p: f32) -> Result<Var> {
        self.graph.dropout(*x, p, &mut self.dropout_rng)
    }
}
