//! makemore part 5's hierarchical "WaveNet": fusing pairs, then pairs of pairs, computed at
//! every position as kernel-2 causal convs with dilation 1, 2, 4, … plus BatchNorm and tanh.

use serde::{Deserialize, Serialize};

use super::{is_zero, require_positive, require_probability, Family};
use crate::error::{Error, Result};
use crate::nn::{Backend, BatchNorm1d, CausalConv1d, Embedding, Head, Linear, ModelBuilder};
use crate::tensor::Activation;

/// Configuration of the `hierarchical` family (reference/models.py `Hierarchical`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HierarchicalConfig {
    /// Context length; must be a power of two (log2 levels).
    pub block_size: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Hidden width of every level.
    pub n_hidden: usize,
    /// BatchNorm after each conv (convs then have no bias).
    pub batchnorm: bool,
    /// BatchNorm running-average momentum (PyTorch semantics).
    pub bn_momentum: f32,
    /// BatchNorm epsilon.
    pub bn_eps: f32,
    /// Dropout probability while training (0: none), after every tanh.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

impl Default for HierarchicalConfig {
    fn default() -> Self {
        HierarchicalConfig { block_size: 8, n_embd: 24, n_hidden: 128, batchnorm: true, bn_momentum: 0.1, bn_eps: 1e-5, dropout: 0.0 }
    }
}

impl HierarchicalConfig {
    /// Number of levels, log2(block_size); errors unless block_size is a power of two.
    pub fn levels(&self) -> Result<usize> {
        if !self.block_size.is_power_of_two() || self.block_size < 2 {
            return Err(Error::config("block_size", format!("{} is not a power of two ≥ 2", self.block_size)));
        }
        Ok(self.block_size.trailing_zeros() as usize)
    }
}

/// Embedding → per level (kernel-2 causal conv with dilation 2^i, BatchNorm, tanh) → head.
#[derive(Clone, Debug)]
pub struct Hierarchical {
    cfg: HierarchicalConfig,
    embedding: Embedding,
    convs: Vec<CausalConv1d>,
    norms: Vec<BatchNorm1d>,
    head: Linear,
}

impl Family for Hierarchical {
    const NAME: &'static str = "hierarchical";
    const ABOUT: &'static str = "makemore part 5's hierarchical WaveNet: kernel-2 convs, dilation 1, 2, 4, …, BatchNorm";
    type Config = HierarchicalConfig;

    fn validate(c: &HierarchicalConfig) -> Result<()> {
        require_probability("dropout", c.dropout)?;
        require_positive(&[("n_embd", c.n_embd), ("n_hidden", c.n_hidden), ("block_size", c.block_size)])?;
        c.levels().map(|_| ())
    }

    /// Registers the parameters in reference order (all convs, then all norms, then head).
    fn build(cfg: &HierarchicalConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let levels = cfg.levels()?;
        let embedding = Embedding::new(b, "embedding", vocab_size, cfg.n_embd)?;
        let convs = (0..levels)
            .map(|i| {
                let cin = if i == 0 { cfg.n_embd } else { cfg.n_hidden };
                CausalConv1d::new(b, &format!("convs.{i}"), cin, cfg.n_hidden, 2, 1 << i, !cfg.batchnorm)
            })
            .collect::<Result<_>>()?;
        let norms = if cfg.batchnorm {
            (0..levels).map(|i| BatchNorm1d::new(b, &format!("norms.{i}"), cfg.n_hidden, cfg.bn_eps, cfg.bn_momentum)).collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let head = Linear::new(b, "head", cfg.n_hidden, vocab_size)?;
        Ok(Hierarchical { cfg: cfg.clone(), embedding, convs, norms, head })
    }

    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        for (i, conv) in self.convs.iter().enumerate() {
            let mut z = b.causal_conv(conv, &h)?; // (B, T, H)
            if let Some(norm) = self.norms.get(i) {
                z = b.batchnorm(norm, &z)?;
            }
            let z = b.activation(&z, Activation::Tanh)?;
            h = b.dropout(&z, self.cfg.dropout)?;
        }
        Ok(h)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head) // (B, T, V)
    }

    /// block_size tokens.
    fn receptive_field(&self) -> usize {
        self.cfg.block_size
    }
}
