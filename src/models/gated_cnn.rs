//! Dauphin et al. (2017): GLU blocks over causal convs with a residual around each block.

use serde::{Deserialize, Serialize};

use super::{is_zero, require_positive, require_probability, Family};
use crate::error::Result;
use crate::nn::{Backend, CausalConv1d, Embedding, Head, Linear, ModelBuilder};

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
    /// Dropout probability while training (0: none), on every residual block's output.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

impl Default for GatedCnnConfig {
    fn default() -> Self {
        GatedCnnConfig { n_embd: 64, channels: 64, kernel_size: 4, n_blocks: 2, layers_per_block: 2, dropout: 0.0 }
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

impl Family for GatedCnn {
    const NAME: &'static str = "gated-cnn";
    const ABOUT: &'static str = "Dauphin et al. (2017): GLU blocks over causal convs with residuals";
    type Config = GatedCnnConfig;

    fn validate(c: &GatedCnnConfig) -> Result<()> {
        require_probability("dropout", c.dropout)?;
        require_positive(&[("n_embd", c.n_embd), ("channels", c.channels), ("kernel_size", c.kernel_size)])
    }

    /// Registers the parameters in reference order.
    fn build(cfg: &GatedCnnConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let c = cfg.channels;
        let embedding = Embedding::new(b, "embedding", vocab_size, cfg.n_embd)?;
        let proj = if cfg.n_embd != c { Some(Linear::new(b, "proj", cfg.n_embd, c)?) } else { None };
        let blocks = (0..cfg.n_blocks)
            .map(|i| {
                (0..cfg.layers_per_block)
                    .map(|j| CausalConv1d::new(b, &format!("blocks.{i}.convs.{j}"), c, 2 * c, cfg.kernel_size, 1, true))
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?;
        let head = Linear::new(b, "head", c, vocab_size)?;
        Ok(GatedCnn { cfg: cfg.clone(), embedding, proj, blocks, head })
    }

    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
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
            let r = b.dropout(&r, self.cfg.dropout)?;
            h = b.add(&h, &r)?;
        }
        Ok(h)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head) // (B, T, V)
    }

    /// 1 + (k - 1) · (every conv of every block).
    fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * self.cfg.n_blocks * self.cfg.layers_per_block
    }
}
