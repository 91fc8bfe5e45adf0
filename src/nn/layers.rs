//! Layers: parameter handles plus hyper-parameters. They hold no tensors themselves; the
//! values live in the model's [`ParamStore`] and the maths in a [`Backend`](super::Backend).

use rand::Rng;

use crate::nn::{ParamId, ParamStore};
use crate::tensor::kernels::conv2d_masked::{MaskType, MaskedConv2dSpec};
use crate::tensor::Tensor;

/// PyTorch's default init bound for conv/linear weights and biases: 1/sqrt(fan_in).
fn default_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}

/// `nn.Embedding(vocab_size, n_embd)`, initialised N(0, 1).
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: ParamId,
    pub vocab_size: usize,
    pub n_embd: usize,
}

impl Embedding {
    /// Registers `{prefix}.weight`.
    pub fn new(store: &mut ParamStore, prefix: &str, vocab_size: usize, n_embd: usize, rng: &mut impl Rng) -> Self {
        let weight = store.add(format!("{prefix}.weight"), Tensor::randn(vec![vocab_size, n_embd], 1.0, rng));
        Embedding { weight, vocab_size, n_embd }
    }
}

/// `nn.Linear(in_features, out_features)` over the last (channel) axis.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    /// Registers `{prefix}.weight` (out, in) and `{prefix}.bias` (out).
    pub fn new(store: &mut ParamStore, prefix: &str, in_features: usize, out_features: usize, rng: &mut impl Rng) -> Self {
        let bound = default_bound(in_features);
        let weight = store.add(format!("{prefix}.weight"), Tensor::uniform(vec![out_features, in_features], bound, rng));
        let bias = Some(store.add(format!("{prefix}.bias"), Tensor::uniform(vec![out_features], bound, rng)));
        Linear { weight, bias, in_features, out_features }
    }
}

/// A causal `nn.Conv1d`: pads `(kernel_size - 1) * dilation` zeros on the left only, so
/// output t sees inputs t - (k-1)·d ..= t.
#[derive(Clone, Debug)]
pub struct CausalConv1d {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: usize,
    pub dilation: usize,
    /// Index of this layer's ring buffer in incremental generation.
    pub slot: usize,
}

impl CausalConv1d {
    /// Registers `{prefix}.weight` (out, in, k) and, with `bias`, `{prefix}.bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        dilation: usize,
        bias: bool,
        slot: &mut usize,
        rng: &mut impl Rng,
    ) -> Self {
        let bound = default_bound(in_channels * kernel_size);
        let shape = vec![out_channels, in_channels, kernel_size];
        let weight = store.add(format!("{prefix}.weight"), Tensor::uniform(shape, bound, rng));
        let bias = bias.then(|| store.add(format!("{prefix}.bias"), Tensor::uniform(vec![out_channels], bound, rng)));
        *slot += 1;
        CausalConv1d { weight, bias, in_channels, out_channels, kernel_size, dilation, slot: *slot - 1 }
    }

    /// How many past positions (including the current one) the layer reads.
    pub fn span(&self) -> usize {
        (self.kernel_size - 1) * self.dilation + 1
    }
}

/// `nn.BatchNorm1d(channels)` over batch and time, with running statistics.
#[derive(Clone, Debug)]
pub struct BatchNorm1d {
    pub weight: ParamId,
    pub bias: ParamId,
    pub channels: usize,
    pub eps: f32,
    pub momentum: f32,
    /// Index of this layer's running statistics in the model's buffers.
    pub slot: usize,
}

impl BatchNorm1d {
    /// Registers `{prefix}.weight` (ones) and `{prefix}.bias` (zeros).
    pub fn new(store: &mut ParamStore, prefix: &str, channels: usize, eps: f32, momentum: f32, slot: usize) -> Self {
        let weight = store.add(format!("{prefix}.weight"), Tensor::full(vec![channels], 1.0));
        let bias = store.add(format!("{prefix}.bias"), Tensor::zeros(vec![channels]));
        BatchNorm1d { weight, bias, channels, eps, momentum, slot }
    }
}

/// A PixelCNN masked `nn.Conv2d` (padding kernel_size / 2).
#[derive(Clone, Debug)]
pub struct MaskedConv2d {
    pub weight: ParamId,
    pub bias: ParamId,
    pub spec: MaskedConv2dSpec,
}

impl MaskedConv2d {
    /// Registers `{prefix}.weight` (out, in, k, k) and `{prefix}.bias`.
    pub fn new(store: &mut ParamStore, prefix: &str, in_channels: usize, out_channels: usize, kernel_size: usize, mask: MaskType, rng: &mut impl Rng) -> Self {
        let bound = default_bound(in_channels * kernel_size * kernel_size);
        let shape = vec![out_channels, in_channels, kernel_size, kernel_size];
        let weight = store.add(format!("{prefix}.weight"), Tensor::uniform(shape, bound, rng));
        let bias = store.add(format!("{prefix}.bias"), Tensor::uniform(vec![out_channels], bound, rng));
        let spec = MaskedConv2dSpec { in_channels, out_channels, kernel_h: kernel_size, kernel_w: kernel_size, mask };
        MaskedConv2d { weight, bias, spec }
    }
}

/// Running statistics of every batchnorm layer (`running_mean`, `running_var`), by slot.
#[derive(Clone, Debug, Default)]
pub struct Buffers {
    /// (layer prefix, running_mean, running_var)
    pub entries: Vec<(String, Tensor, Tensor)>,
}

impl Buffers {
    /// Adds a batchnorm's statistics (mean 0, var 1) and returns its slot.
    pub fn add(&mut self, prefix: &str, channels: usize) -> usize {
        self.entries.push((prefix.to_string(), Tensor::zeros(vec![channels]), Tensor::full(vec![channels], 1.0)));
        self.entries.len() - 1
    }

    /// The buffers as named tensors (`{prefix}.running_mean`, `{prefix}.running_var`).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (p, m, v) in &self.entries {
            out.push((format!("{p}.running_mean"), m.clone()));
            out.push((format!("{p}.running_var"), v.clone()));
        }
        out
    }
}
