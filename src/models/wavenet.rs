//! van den Oord et al. (2016): gated tanh·sigmoid causal convs with residual and skip paths.

use serde::{Deserialize, Serialize};

use super::{is_zero, require_positive, require_probability, Family};
use crate::error::{Error, Result};
use crate::nn::{Backend, CausalConv1d, Embedding, Head, Linear, ModelBuilder};
use crate::tensor::Activation;

/// Configuration of the `wavenet` family (reference/models.py `WaveNet`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaveNetConfig {
    /// Width of the residual stream (and of the embedding).
    pub residual_channels: usize,
    /// Width of the gated filter/gate convs.
    pub dilation_channels: usize,
    /// Width of the skip sum.
    pub skip_channels: usize,
    /// Kernel size of the dilated convs.
    pub kernel_size: usize,
    /// Layers per stack, dilations 1, 2, …, 2^(n_layers-1).
    pub n_layers: usize,
    /// Number of stacks.
    pub n_stacks: usize,
    /// Dropout probability while training (0: none), on every block's gated output.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

impl Default for WaveNetConfig {
    fn default() -> Self {
        WaveNetConfig { residual_channels: 64, dilation_channels: 64, skip_channels: 128, kernel_size: 2, n_layers: 8, n_stacks: 1, dropout: 0.0 }
    }
}

/// One gated block; the last block has no residual projection.
#[derive(Clone, Debug)]
struct Block {
    filter: CausalConv1d,
    gate: CausalConv1d,
    residual: Option<Linear>,
    skip: Linear,
}

/// Embedding → gated residual blocks (skip outputs summed) → ReLU → 1×1 → ReLU → head.
#[derive(Clone, Debug)]
pub struct WaveNet {
    cfg: WaveNetConfig,
    embedding: Embedding,
    blocks: Vec<Block>,
    post: Linear,
    head: Linear,
}

impl WaveNet {
    /// Dilations of every block in order.
    fn dilations(cfg: &WaveNetConfig) -> Vec<usize> {
        (0..cfg.n_stacks).flat_map(|_| (0..cfg.n_layers).map(|i| 1usize << i)).collect()
    }
}

impl Family for WaveNet {
    const NAME: &'static str = "wavenet";
    const ABOUT: &'static str = "van den Oord et al. (2016): gated tanh·sigmoid dilated convs with residual and skip paths";
    type Config = WaveNetConfig;

    fn validate(c: &WaveNetConfig) -> Result<()> {
        require_probability("dropout", c.dropout)?;
        require_positive(&[
            ("residual_channels", c.residual_channels),
            ("dilation_channels", c.dilation_channels),
            ("skip_channels", c.skip_channels),
            ("kernel_size", c.kernel_size),
            ("n_layers", c.n_layers),
            ("n_stacks", c.n_stacks),
        ])?;
        if c.n_layers > 62 {
            return Err(Error::config("n_layers", format!("{} layers would need dilations beyond 2^62", c.n_layers)));
        }
        Ok(())
    }

    /// Registers the parameters in reference order.
    fn build(cfg: &WaveNetConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let (r, dc, s, k) = (cfg.residual_channels, cfg.dilation_channels, cfg.skip_channels, cfg.kernel_size);
        let embedding = Embedding::new(b, "embedding", vocab_size, r)?;
        let dilations = Self::dilations(cfg);
        let blocks = dilations
            .iter()
            .enumerate()
            .map(|(j, &d)| {
                let p = format!("blocks.{j}");
                let filter = CausalConv1d::new(b, &format!("{p}.filter"), r, dc, k, d, true)?;
                let gate = CausalConv1d::new(b, &format!("{p}.gate"), r, dc, k, d, true)?;
                let last = j + 1 == dilations.len();
                let residual = if last { None } else { Some(Linear::new(b, &format!("{p}.residual"), dc, r)?) };
                let skip = Linear::new(b, &format!("{p}.skip"), dc, s)?;
                Ok(Block { filter, gate, residual, skip })
            })
            .collect::<Result<_>>()?;
        let post = Linear::new(b, "post", s, s)?;
        let head = Linear::new(b, "head", s, vocab_size)?;
        Ok(WaveNet { cfg: cfg.clone(), embedding, blocks, post, head })
    }

    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, T, R)
        let mut skips: Option<B::Value> = None;
        for block in &self.blocks {
            let f = b.causal_conv(&block.filter, &h)?; // (B, T, D)
            let f = b.activation(&f, Activation::Tanh)?;
            let g = b.causal_conv(&block.gate, &h)?; // (B, T, D)
            let g = b.activation(&g, Activation::Sigmoid)?;
            let z = b.mul(&f, &g)?; // (B, T, D)
            let z = b.dropout(&z, self.cfg.dropout)?;
            if let Some(res) = &block.residual {
                let r = b.linear(res, &z)?; // (B, T, R)
                h = b.add(&h, &r)?;
            }
            let s = b.linear(&block.skip, &z)?; // (B, T, S)
            skips = Some(match skips {
                None => s,
                Some(acc) => b.add(&acc, &s)?,
            });
        }
        let skips = skips.ok_or_else(|| Error::config("n_layers", "a WaveNet needs at least one block"))?;
        let x = b.activation(&skips, Activation::Relu)?;
        let x = b.linear(&self.post, &x)?; // (B, T, S)
        b.activation(&x, Activation::Relu)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head) // (B, T, V)
    }

    /// 1 + (k - 1) · Σ dilations over all stacks.
    fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * Self::dilations(&self.cfg).iter().sum::<usize>()
    }
}
