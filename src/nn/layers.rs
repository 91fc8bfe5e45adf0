//! Layers: parameter handles plus hyper-parameters. They hold no tensors themselves; the
//! values live in the model's [`ParamStore`](super::ParamStore) and the maths in a
//! [`Backend`](super::Backend). Each constructor registers its parameters (PyTorch names,
//! shapes and default initialisation) and its summary row with a [`ModelBuilder`].

use crate::error::Result;
use crate::nn::builder::{Cost, Init, LayerKind, ModelBuilder};
use crate::nn::ParamId;
use crate::tensor::{MaskType, MaskedConv2dSpec};

/// PyTorch's default init bound for conv/linear weights and biases: 1/sqrt(fan_in).
fn default_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}

/// `a * b * …` for a summary's multiply-add count (saturating: only ever displayed).
fn product(dims: &[usize]) -> u64 {
    dims.iter().fold(1u64, |p, &d| p.saturating_mul(d as u64))
}

/// `nn.Embedding(vocab_size, n_embd)`, initialised N(0, 1).
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: ParamId,
    pub vocab_size: usize,
    pub n_embd: usize,
}

impl Embedding {
    /// Registers `{name}.weight` (vocab_size, n_embd), drawn N(0, 1) as PyTorch does.
    pub fn new(b: &mut ModelBuilder, name: &str, vocab_size: usize, n_embd: usize) -> Result<Self> {
        Self::with_std(b, name, vocab_size, n_embd, 1.0)
    }

    /// [`Embedding::new`] drawn N(0, std²) (a table that is also the output layer starts
    /// small, as GPT-2's does, so the first logits are near uniform).
    pub fn with_std(b: &mut ModelBuilder, name: &str, vocab_size: usize, n_embd: usize, std: f32) -> Result<Self> {
        let first = b.next_id();
        let weight = b.param(&format!("{name}.weight"), &[vocab_size, n_embd], Init::Normal(std))?;
        b.layer(name, LayerKind::Embedding, first, n_embd, Cost::PerPosition(0));
        Ok(Embedding { weight, vocab_size, n_embd })
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
    /// Registers `{name}.weight` (out, in) and `{name}.bias` (out).
    pub fn new(b: &mut ModelBuilder, name: &str, in_features: usize, out_features: usize) -> Result<Self> {
        Self::build(b, name, in_features, out_features, true)
    }

    /// `nn.Linear(in_features, out_features, bias=False)`: registers `{name}.weight` only.
    pub fn without_bias(b: &mut ModelBuilder, name: &str, in_features: usize, out_features: usize) -> Result<Self> {
        Self::build(b, name, in_features, out_features, false)
    }

    /// An output layer that shares `embedding`'s table as its weight (Press & Wolf, 2017):
    /// logits = x · embeddingᵀ + bias, (vocab_size) outputs from n_embd inputs. Registers
    /// `{name}.bias` and names the table `{name}.weight` a second time, so the state_dict
    /// loads into the untied PyTorch module. The table's gradient sums both uses.
    pub fn tied_to(b: &mut ModelBuilder, name: &str, embedding: &Embedding) -> Result<Self> {
        let first = b.next_id();
        let (in_features, out_features) = (embedding.n_embd, embedding.vocab_size);
        b.tie(&format!("{name}.weight"), embedding.weight)?;
        let bias = b.param(&format!("{name}.bias"), &[out_features], Init::Uniform(default_bound(in_features)))?;
        b.layer(name, LayerKind::Linear, first, out_features, Cost::PerPosition(product(&[out_features, in_features])));
        Ok(Linear { weight: embedding.weight, bias: Some(bias), in_features, out_features })
    }

    fn build(b: &mut ModelBuilder, name: &str, in_features: usize, out_features: usize, bias: bool) -> Result<Self> {
        let first = b.next_id();
        let bound = default_bound(in_features);
        let weight = b.param(&format!("{name}.weight"), &[out_features, in_features], Init::Uniform(bound))?;
        let bias = if bias { Some(b.param(&format!("{name}.bias"), &[out_features], Init::Uniform(bound))?) } else { None };
        b.layer(name, LayerKind::Linear, first, out_features, Cost::PerPosition(product(&[out_features, in_features])));
        Ok(Linear { weight, bias, in_features, out_features })
    }
}

/// A causal `nn.Conv1d`: pads `(kernel_size - 1) * dilation` zeros on the left only, so
/// output t sees inputs t - (k-1)·d ..= t. With `groups == in_channels == out_channels` it
/// is a depthwise conv (one filter per channel, weight (C, 1, k)).
#[derive(Clone, Debug)]
pub struct CausalConv1d {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: usize,
    pub dilation: usize,
    pub groups: usize,
    /// Index of this layer's ring buffer in incremental generation.
    pub slot: usize,
}

impl CausalConv1d {
    /// Registers `{name}.weight` (out, in, k) and, with `bias`, `{name}.bias`.
    pub fn new(b: &mut ModelBuilder, name: &str, in_channels: usize, out_channels: usize, kernel_size: usize, dilation: usize, bias: bool) -> Result<Self> {
        let first = b.next_id();
        let conv = Self::register(b, name, in_channels, out_channels, kernel_size, dilation, 1, bias)?;
        b.layer(name, LayerKind::Conv1d { kernel: kernel_size }, first, out_channels, Cost::PerPosition(product(&[out_channels, in_channels, kernel_size])));
        Ok(conv)
    }

    /// A causal depthwise conv of `channels` channels (`nn.Conv1d(C, C, k, groups=C)` with
    /// left padding k - 1): registers `{name}.weight` (C, 1, k) and `{name}.bias` (C).
    pub fn depthwise(b: &mut ModelBuilder, name: &str, channels: usize, kernel_size: usize) -> Result<Self> {
        let first = b.next_id();
        let conv = Self::register(b, name, channels, channels, kernel_size, 1, channels, true)?;
        b.layer(name, LayerKind::DepthwiseConv1d { kernel: kernel_size }, first, channels, Cost::PerPosition(product(&[channels, kernel_size])));
        Ok(conv)
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        b: &mut ModelBuilder,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        dilation: usize,
        groups: usize,
        bias: bool,
    ) -> Result<Self> {
        let per_group = in_channels / groups.max(1);
        let bound = default_bound(per_group * kernel_size);
        let weight = b.param(&format!("{name}.weight"), &[out_channels, per_group, kernel_size], Init::Uniform(bound))?;
        let bias = if bias { Some(b.param(&format!("{name}.bias"), &[out_channels], Init::Uniform(bound))?) } else { None };
        let slot = b.state_slot();
        Ok(CausalConv1d { weight, bias, in_channels, out_channels, kernel_size, dilation, groups, slot })
    }

    /// How many past positions (including the current one) the layer reads.
    pub fn span(&self) -> usize {
        (self.kernel_size - 1) * self.dilation + 1
    }

    /// The convolution as a tensor-level spec (stride 1, causal padding).
    pub fn spec(&self) -> crate::tensor::Conv1dSpec {
        crate::tensor::Conv1dSpec {
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            kernel_size: self.kernel_size,
            stride: 1,
            padding: crate::tensor::Padding::causal(self.kernel_size, self.dilation),
            dilation: self.dilation,
            groups: self.groups,
        }
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
    /// Registers `{name}.weight` (ones), `{name}.bias` (zeros) and the running statistics.
    pub fn new(b: &mut ModelBuilder, name: &str, channels: usize, eps: f32, momentum: f32) -> Result<Self> {
        let first = b.next_id();
        let slot = b.batchnorm_buffers(name, channels);
        let weight = b.param(&format!("{name}.weight"), &[channels], Init::Constant(1.0))?;
        let bias = b.param(&format!("{name}.bias"), &[channels], Init::Constant(0.0))?;
        b.layer(name, LayerKind::BatchNorm1d, first, channels, Cost::PerPosition(channels as u64));
        Ok(BatchNorm1d { weight, bias, channels, eps, momentum, slot })
    }
}

/// `nn.LayerNorm(channels)` over the channel axis.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: ParamId,
    pub bias: ParamId,
    pub channels: usize,
    pub eps: f32,
}

impl LayerNorm {
    /// Registers `{name}.weight` (ones) and `{name}.bias` (zeros).
    pub fn new(b: &mut ModelBuilder, name: &str, channels: usize, eps: f32) -> Result<Self> {
        let first = b.next_id();
        let weight = b.param(&format!("{name}.weight"), &[channels], Init::Constant(1.0))?;
        let bias = b.param(&format!("{name}.bias"), &[channels], Init::Constant(0.0))?;
        b.layer(name, LayerKind::LayerNorm, first, channels, Cost::PerPosition(channels as u64));
        Ok(LayerNorm { weight, bias, channels, eps })
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
    /// Registers `{name}.weight` (out, in, k, k) and `{name}.bias`.
    pub fn new(b: &mut ModelBuilder, name: &str, in_channels: usize, out_channels: usize, kernel_size: usize, mask: MaskType) -> Result<Self> {
        let first = b.next_id();
        let bound = default_bound(in_channels * kernel_size * kernel_size);
        let weight = b.param(&format!("{name}.weight"), &[out_channels, in_channels, kernel_size, kernel_size], Init::Uniform(bound))?;
        let bias = b.param(&format!("{name}.bias"), &[out_channels], Init::Uniform(bound))?;
        let spec = MaskedConv2dSpec { in_channels, out_channels, kernel_h: kernel_size, kernel_w: kernel_size, mask };
        let cost = Cost::PerPosition(product(&[out_channels, in_channels, kernel_size, kernel_size]));
        b.layer(name, LayerKind::MaskedConv2d { kernel: kernel_size }, first, out_channels, cost);
        Ok(MaskedConv2d { weight, bias, spec })
    }
}

/// The layer that produces the logits from a network's last features: a linear layer or a
/// causal conv. Training fuses it with the loss ([`GraphBackend::head_loss`](super::GraphBackend::head_loss)).
#[derive(Clone, Copy, Debug)]
pub enum Head<'a> {
    Linear(&'a Linear),
    Conv(&'a CausalConv1d),
}
