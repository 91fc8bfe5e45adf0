//! Causal convolutions with growing dilation and a linear head.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::nn::{Backend, Buffers, CausalConv1d, Embedding, Linear, ParamStore};
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
}

impl Default for DilatedConfig {
    fn default() -> Self {
        DilatedConfig { n_embd: 24, channels: 128, kernel_size: 2, dilations: vec![1, 2, 4, 8], activation: Activation::Tanh }
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

impl Dilated {
    /// Registers the parameters in reference order.
    pub fn new(cfg: &DilatedConfig, vocab_size: usize, store: &mut ParamStore, _buffers: &mut Buffers, slots: &mut usize, rng: &mut impl Rng) -> Self {
        let embedding = Embedding::new(store, "embedding", vocab_size, cfg.n_embd, rng);
        let convs = cfg
            .dilations
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let cin = if i == 0 { cfg.n_embd } else { cfg.channels };
                CausalConv1d::new(store, &format!("convs.{i}"), cin, cfg.channels, cfg.kernel_size, d, true, slots, rng)
            })
            .collect();
        let head_in = if cfg.dilations.is_empty() { cfg.n_embd } else { cfg.channels };
        let head = Linear::new(store, "head", head_in, vocab_size, rng);
        Dilated { cfg: cfg.clone(), embedding, convs, head }
    }

    /// Logits (B, T, V).
    pub fn forward<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        for conv in &self.convs {
            let z = b.causal_conv(conv, &h)?; // (B, T, C)
            h = b.activation(&z, self.cfg.activation);
        }
        b.linear(&self.head, &h) // (B, T, V)
    }

    /// 1 + (k - 1) · Σ dilations.
    pub fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * self.cfg.dilations.iter().sum::<usize>()
    }
}
