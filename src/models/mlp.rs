//! Bengio et al. (2003) written as a causal convolution of kernel `block_size`.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::nn::{Backend, Buffers, CausalConv1d, Embedding, Linear, ParamStore};
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
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig { block_size: 3, n_embd: 10, n_hidden: 64, activation: Activation::Tanh }
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

impl Mlp {
    /// Registers the parameters in reference order.
    pub fn new(cfg: &MlpConfig, vocab_size: usize, store: &mut ParamStore, _buffers: &mut Buffers, slots: &mut usize, rng: &mut impl Rng) -> Self {
        let embedding = Embedding::new(store, "embedding", vocab_size, cfg.n_embd, rng);
        let hidden = CausalConv1d::new(store, "hidden", cfg.n_embd, cfg.n_hidden, cfg.block_size, 1, true, slots, rng);
        let head = Linear::new(store, "head", cfg.n_hidden, vocab_size, rng);
        Mlp { cfg: cfg.clone(), embedding, hidden, head }
    }

    /// Logits (B, T, V) for tokens of the backend's shape.
    pub fn forward<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        let h = b.causal_conv(&self.hidden, &h)?; // (B, T, H)
        let h = b.activation(&h, self.cfg.activation);
        b.linear(&self.head, &h) // (B, T, V)
    }

    /// Tokens each prediction sees.
    pub fn receptive_field(&self) -> usize {
        self.cfg.block_size
    }
}
