//! Causal convolutions with growing dilation and a linear head.

use serde::{Deserialize, Serialize};

use super::{is_zero, require_positive, require_probability, Family};
use crate::error::Result;
use crate::nn::{Backend, CausalConv1d, Embedding, Head, Linear, ModelBuilder};
use crate::tensor::Activation;

/// Configuration of the `dilated` family (reference/models.py `DilatedCNN`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DilatedConfig {
    /// Embedding width.
    pub n_embd: usize,
    /// Hidden channels.
    pub channels: usize,
    /// Kernel size of every conv.
    pub kernel_size: usize,
    /// Dilation of each conv, in order.
    pub dilations: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// Dropout probability while training (0: none), after every hidden activation.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

impl Default for DilatedConfig {
    fn default() -> Self {
        DilatedConfig { n_embd: 24, channels: 128, kernel_size: 2, dilations: vec![1, 2, 4, 8], activation: Activation::Tanh, dropout: 0.0 }
    }
}

/// Embedding → (dilated causal conv, activation) per dilation → linear head.
#[derive(Clone, Debug)]
pub struct Dilated {
    cfg: DilatedConfig,
    embedding: Embedding,
    convs: Vec<CausalConv1d>,
    head: Linear,
}

impl Family for Dilated {
    const NAME: &'static str = "dilated";
    const ABOUT: &'static str = "causal convolutions with growing dilation and a linear head";
    type Config = DilatedConfig;

    fn validate(c: &DilatedConfig) -> Result<()> {
        require_probability("dropout", c.dropout)?;
        let mut sizes = vec![("n_embd", c.n_embd), ("channels", c.channels), ("kernel_size", c.kernel_size)];
        sizes.extend(c.dilations.iter().map(|&d| ("dilations", d)));
        require_positive(&sizes)
    }

    /// Registers the parameters in reference order.
    fn build(cfg: &DilatedConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let embedding = Embedding::new(b, "embedding", vocab_size, cfg.n_embd)?;
        let convs = cfg
            .dilations
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let cin = if i == 0 { cfg.n_embd } else { cfg.channels };
                CausalConv1d::new(b, &format!("convs.{i}"), cin, cfg.channels, cfg.kernel_size, d, true)
            })
            .collect::<Result<_>>()?;
        let head_in = if cfg.dilations.is_empty() { cfg.n_embd } else { cfg.channels };
        let head = Linear::new(b, "head", head_in, vocab_size)?;
        Ok(Dilated { cfg: cfg.clone(), embedding, convs, head })
    }

    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        for conv in &self.convs {
            let z = b.causal_conv(conv, &h)?; // (B, T, C)
            let z = b.activation(&z, self.cfg.activation)?;
            h = b.dropout(&z, self.cfg.dropout)?;
        }
        Ok(h)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head) // (B, T, V)
    }

    /// 1 + (k - 1) · Σ dilations.
    fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * self.cfg.dilations.iter().sum::<usize>()
    }
}
