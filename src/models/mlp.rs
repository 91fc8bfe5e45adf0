//! Bengio et al. (2003) written as a causal convolution of kernel `block_size`.

use serde::{Deserialize, Serialize};

use super::{is_zero, require_positive, require_probability, Family};
use crate::error::Result;
use crate::nn::{Backend, CausalConv1d, Embedding, Head, Linear, ModelBuilder};
use crate::tensor::Activation;

/// Configuration of the `mlp` family (reference/models.py `MLP`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    /// Number of previous tokens the window sees.
    pub block_size: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Hidden layer width.
    pub n_hidden: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// Dropout probability while training (0: none), on the hidden layer's output.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig { block_size: 3, n_embd: 10, n_hidden: 64, activation: Activation::Tanh, dropout: 0.0 }
    }
}

/// The Bengio MLP: embedding → causal conv (kernel block_size) → activation → linear head.
#[derive(Clone, Debug)]
pub struct Mlp {
    cfg: MlpConfig,
    embedding: Embedding,
    hidden: CausalConv1d,
    head: Linear,
}

impl Family for Mlp {
    const NAME: &'static str = "mlp";
    const ABOUT: &'static str = "Bengio MLP: the embeddings of the last block_size tokens through one hidden layer";
    type Config = MlpConfig;

    fn validate(c: &MlpConfig) -> Result<()> {
        require_probability("dropout", c.dropout)?;
        require_positive(&[("block_size", c.block_size), ("n_embd", c.n_embd), ("n_hidden", c.n_hidden)])
    }

    fn build(cfg: &MlpConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let embedding = Embedding::new(b, "embedding", vocab_size, cfg.n_embd)?;
        let hidden = CausalConv1d::new(b, "hidden", cfg.n_embd, cfg.n_hidden, cfg.block_size, 1, true)?;
        let head = Linear::new(b, "head", cfg.n_hidden, vocab_size)?;
        Ok(Mlp { cfg: cfg.clone(), embedding, hidden, head })
    }

    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        let h = b.causal_conv(&self.hidden, &h)?; // (B, T, H)
        let h = b.activation(&h, self.cfg.activation)?;
        b.dropout(&h, self.cfg.dropout)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head) // (B, T, V)
    }

    /// Tokens each prediction sees.
    fn receptive_field(&self) -> usize {
        self.cfg.block_size
    }
}
