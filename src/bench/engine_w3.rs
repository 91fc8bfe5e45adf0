//! W3 "strided+grouped", an **engine-level** workload: its strided, grouped and transposed
//! convolutions are used by no model family, so it is built here directly from `Graph` ops
//! (`../shared/bench/WORKLOADS.md`) to time them forward and backward. Its step is the
//! same sequence as [`crate::run::step::train_step`]'s: zero_grad, forward to the loss,
//! backward, Adam update, with the workers kept awake.

use rand::Rng;

use crate::error::Result;
use crate::nn::{ParamId, ParamStore};
use crate::optim::Optimizer;
use crate::tensor::{threads, Conv1dSpec, ConvTranspose1dSpec, Graph, Padding, Precision, Tensor, Var};

/// Vocabulary, embedding width, batch and length of W3.
pub const W3_DIMS: (usize, usize, usize, usize) = (64, 64, 16, 128);

/// A conv layer's parameters and spec.
struct Conv {
    w: ParamId,
    b: ParamId,
    spec: Spec,
}

enum Spec {
    Conv(Conv1dSpec),
    Transpose(ConvTranspose1dSpec),
}

impl Conv {
    /// Registers `{name}.weight`/`{name}.bias` with PyTorch's default U(±1/sqrt(fan_in))
    /// (fan_in = weight.size(1) · kernel for Conv1d and ConvTranspose1d alike).
    fn new(store: &mut ParamStore, name: &str, spec: Spec, rng: &mut impl Rng) -> Self {
        let (w_shape, out_ch) = match &spec {
            Spec::Conv(s) => (s.weight_shape(), s.out_channels),
            Spec::Transpose(s) => (s.weight_shape(), s.out_channels),
        };
        let bound = 1.0 / ((w_shape[1] * w_shape[2]) as f32).sqrt();
        let w = store.add(format!("{name}.weight"), Tensor::uniform(w_shape.to_vec(), bound, rng));
        let b = store.add(format!("{name}.bias"), Tensor::uniform(vec![out_ch], bound, rng));
        Conv { w, b, spec }
    }

    fn forward(&self, g: &mut Graph, store: &ParamStore, x: Var) -> Result<Var> {
        let (w, b) = (store.record(g, self.w), store.record(g, self.b));
        match &self.spec {
            Spec::Conv(s) => g.conv1d(x, w, Some(b), s),
            Spec::Transpose(s) => g.conv_transpose1d(x, w, Some(b), s),
        }
    }

    /// The layer as the output layer fused with the loss against `targets`.
    fn loss(&self, g: &mut Graph, store: &ParamStore, x: Var, targets: &[i64]) -> Result<Var> {
        match &self.spec {
            Spec::Conv(s) => {
                let (w, b) = (store.record(g, self.w), store.record(g, self.b));
                g.conv1d_cross_entropy(x, w, Some(b), s, targets)
            }
            Spec::Transpose(_) => {
                let logits = self.forward(g, store, x)?;
                g.cross_entropy(logits, targets)
            }
        }
    }
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, padding: Padding, dilation: usize, groups: usize) -> Spec {
    Spec::Conv(Conv1dSpec { in_channels: c_in, out_channels: c_out, kernel_size: k, stride, padding, dilation, groups })
}

/// The W3 model: embedding, a strided grouped conv, a dilated grouped conv, a transposed
/// conv back to the input length, a 1×1 output conv fused with the loss.
pub struct W3Model {
    store: ParamStore,
    embedding: ParamId,
    conv1: Conv,
    conv2: Conv,
    deconv: Conv,
    conv_out: Conv,
}

impl W3Model {
    /// Builds W3 with parameters drawn from `rng` (72,064 parameters).
    pub fn new(rng: &mut impl Rng) -> Self {
        let (v, e, ..) = W3_DIMS;
        let mut store = ParamStore::new();
        let embedding = store.add("embedding.weight", Tensor::randn(vec![v, e], 1.0, rng));
        let conv1 = Conv::new(&mut store, "conv1", conv(e, 128, 3, 2, Padding::Symmetric(1), 1, 4), rng);
        let conv2 = Conv::new(&mut store, "conv2", conv(128, 128, 3, 1, Padding::Symmetric(2), 2, 2), rng);
        let deconv =
            ConvTranspose1dSpec { in_channels: 128, out_channels: 64, kernel_size: 4, stride: 2, padding: 1, output_padding: 0, dilation: 1, groups: 1 };
        let deconv = Conv::new(&mut store, "deconv", Spec::Transpose(deconv), rng);
        let conv_out = Conv::new(&mut store, "conv_out", conv(64, v, 1, 1, Padding::Symmetric(0), 1, 1), rng);
        W3Model { store, embedding, conv1, conv2, deconv, conv_out }
    }

    /// The parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Mean cross-entropy of predicting `tokens` (B, L) from themselves (W3 is not causal).
    fn loss(&self, g: &mut Graph, tokens: &[u32], targets: &[i64]) -> Result<Var> {
        let (_, _, batch, len) = W3_DIMS;
        let table = self.store.record(g, self.embedding);
        let h = g.embedding(table, tokens, &[batch, len])?; // (B, L, E)
        let h = self.conv1.forward(g, &self.store, h)?; // (B, L/2, 128)
        let h = g.relu(h);
        let h = self.conv2.forward(g, &self.store, h)?; // (B, L/2, 128)
        let h = g.relu(h);
        let h = self.deconv.forward(g, &self.store, h)?; // (B, L, 64)
        self.conv_out.loss(g, &self.store, h, targets) // (B·L, V) fused into the mean loss
    }

    /// One step on the fixed batch `tokens`: zero_grad, loss, backward, update, with the
    /// products in `precision`. Returns the loss before the update.
    pub fn step(&mut self, optimizer: &mut Optimizer, tokens: &[u32], targets: &[i64], precision: Precision) -> Result<f64> {
        let lr = optimizer.config().lr;
        threads::with_workers_awake(|| {
            self.store.zero_grad();
            let mut g = Graph::new(true);
            g.set_precision(precision)?;
            let loss = self.loss(&mut g, tokens, targets)?;
            g.backward(loss)?;
            self.store.accumulate_grads(&g);
            optimizer.step(&mut self.store, lr);
            Ok(g.value(loss).data()[0] as f64)
        })
    }
}
