//! Dauphin et al. (2017): GLU blocks over causal convs with a residual around each block.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::nn::{Backend, Buffers, CausalConv1d, Embedding, Linear, ParamStore};

/// Configuration of the `gated-cnn` family (reference/models.py `GatedCNN`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatedCnnConfig {
    /// Embedding width (projected to `channels` when different).
    pub n_embd: usize,
    /// Width of the residual stream.
    pub channels: usize,
    /// Kernel size of every conv.
    pub kernel_size: usize,
    /// Number of residual blocks.
    pub n_blocks: usize,
    /// Convs per block.
    pub layers_per_block: usize,
}

impl Default for GatedCnnConfig {
    fn default() -> Self {
        GatedCnnConfig { n_embd: 64, channels: 64, kernel_size: 4, n_blocks: 2, layers_per_block: 2 }
    }
}

/// Embedding → optional projection → blocks of (causal conv to 2C, GLU)… + residual → head.
#[derive(Clone, Debug)]
pub struct GatedCnn {
    cfg: GatedCnnConfig,
    embedding: Embedding,
    proj: Option<Linear>,
    blocks: Vec<Vec<CausalConv1d>>,
    head: Linear,
}

impl GatedCnn {
    /// Registers the parameters in reference order.
    pub fn new(cfg: &GatedCnnConfig, vocab_size: usize, store: &mut ParamStore, _buffers: &mut Buffers, slots: &mut usize, rng: &mut impl Rng) -> Self {
        let c = cfg.channels;
        let embedding = Embedding::new(store, "embedding", vocab_size, cfg.n_embd, rng);
        let proj = (cfg.n_embd != c).then(|| Linear::new(store, "proj", cfg.n_embd, c, rng));
        let blocks = (0..cfg.n_blocks)
            .map(|i| {
                (0..cfg.layers_per_block)
                    .map(|j| CausalConv1d::new(store, &format!("blocks.{i}.convs.{j}"), c, 2 * c, cfg.kernel_size, 1, true, slots, rng))
                    .collect()
            })
            .collect();
        let head = Linear::new(store, "head", c, vocab_size, rng);
        GatedCnn { cfg: cfg.clone(), embedding, proj, blocks, head }
    }

    /// Logits (B, T, V).
    pub fn forward<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        if let Some(proj) = &self.proj {
            h = b.linear(proj, &h)?; // (B, T, C)
        }
        for block in &self.blocks {
            let mut r = h.clone();
            for conv in block {
                let z = b.causal_conv(conv, &r)?; // (B, T, 2C)
                r = b.glu(&z)?; // (B, T, C)
            }
            h = b.add(&h, &r)?;
        }
        b.linear(&self.head, &h) // (B, T, V)
    }

    /// 1 + (k - 1) per conv.
    pub fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * self.cfg.n_blocks * self.cfg.layers_per_block
    }
}
