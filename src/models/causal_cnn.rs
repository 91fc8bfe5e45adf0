//! A plain stack of causal convolutions with a causal conv head.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::nn::{Backend, Buffers, CausalConv1d, Embedding, ParamStore};
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
}

impl Default for CausalCnnConfig {
    fn default() -> Self {
        CausalCnnConfig { n_embd: 256, channels: 128, kernel_size: 3, n_layers: 6, activation: Activation::Relu }
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

impl CausalCnn {
    /// Registers the parameters in reference order.
    pub fn new(cfg: &CausalCnnConfig, vocab_size: usize, store: &mut ParamStore, _buffers: &mut Buffers, slots: &mut usize, rng: &mut impl Rng) -> Self {
        let embedding = Embedding::new(store, "embedding", vocab_size, cfg.n_embd, rng);
        let convs = (0..cfg.n_layers)
            .map(|i| {
                let cin = if i == 0 { cfg.n_embd } else { cfg.channels };
                CausalConv1d::new(store, &format!("convs.{i}"), cin, cfg.channels, cfg.kernel_size, 1, true, slots, rng)
            })
            .collect();
        let head_in = if cfg.n_layers == 0 { cfg.n_embd } else { cfg.channels };
        let head = CausalConv1d::new(store, "head", head_in, vocab_size, cfg.kernel_size, 1, true, slots, rng);
        CausalCnn { cfg: cfg.clone(), embedding, convs, head }
    }

    /// Logits (B, T, V).
    pub fn forward<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        for conv in &self.convs {
            let z = b.causal_conv(conv, &h)?; // (B, T, C)
            h = b.activation(&z, self.cfg.activation);
        }
        b.causal_conv(&self.head, &h) // (B, T, V)
    }

    /// 1 + (k - 1) per conv, head included.
    pub fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * (self.cfg.n_layers + 1)
    }
}
