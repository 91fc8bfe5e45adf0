//! A plain stack of causal convolutions with a causal conv head.

use serde::{Deserialize, Serialize};

use super::{is_zero, require_positive, require_probability, Family};
use crate::error::Result;
use crate::nn::{Backend, CausalConv1d, Embedding, Head, ModelBuilder};
use crate::tensor::Activation;

/// Configuration of the `causal-cnn` family (reference/models.py `CausalCNN`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CausalCnnConfig {
    /// Embedding width.
    pub n_embd: usize,
    /// Hidden channels.
    pub channels: usize,
    /// Kernel size of every conv, head included.
    pub kernel_size: usize,
    /// Number of hidden convs.
    pub n_layers: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// Dropout probability while training (0: none), after every hidden activation.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

impl Default for CausalCnnConfig {
    fn default() -> Self {
        CausalCnnConfig { n_embd: 256, channels: 128, kernel_size: 3, n_layers: 6, activation: Activation::Relu, dropout: 0.0 }
    }
}

/// Embedding → n_layers × (causal conv, activation) → causal conv head.
#[derive(Clone, Debug)]
pub struct CausalCnn {
    cfg: CausalCnnConfig,
    embedding: Embedding,
    convs: Vec<CausalConv1d>,
    head: CausalConv1d,
}

impl Family for CausalCnn {
    const NAME: &'static str = "causal-cnn";
    const ABOUT: &'static str = "a plain stack of causal convolutions with a causal conv head";
    type Config = CausalCnnConfig;

    fn validate(c: &CausalCnnConfig) -> Result<()> {
        require_probability("dropout", c.dropout)?;
        require_positive(&[("n_embd", c.n_embd), ("channels", c.channels), ("kernel_size", c.kernel_size)])
    }

    /// Registers the parameters in reference order.
    fn build(cfg: &CausalCnnConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let embedding = Embedding::new(b, "embedding", vocab_size, cfg.n_embd)?;
        let convs = (0..cfg.n_layers)
            .map(|i| {
                let cin = if i == 0 { cfg.n_embd } else { cfg.channels };
                CausalConv1d::new(b, &format!("convs.{i}"), cin, cfg.channels, cfg.kernel_size, 1, true)
            })
            .collect::<Result<_>>()?;
        let head_in = if cfg.n_layers == 0 { cfg.n_embd } else { cfg.channels };
        let head = CausalConv1d::new(b, "head", head_in, vocab_size, cfg.kernel_size, 1, true)?;
        Ok(CausalCnn { cfg: cfg.clone(), embedding, convs, head })
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
        Head::Conv(&self.head) // (B, T, V)
    }

    /// 1 + (k - 1) · (n_layers + 1): every conv, the head included, adds k - 1 tokens.
    fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * (self.cfg.n_layers + 1)
    }
}
