//! van den Oord et al. (2016): gated tanh·sigmoid causal convs with residual and skip paths.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::nn::{Backend, Buffers, CausalConv1d, Embedding, Linear, ParamStore};
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
}

impl Default for WaveNetConfig {
    fn default() -> Self {
        WaveNetConfig { residual_channels: 64, dilation_channels: 64, skip_channels: 128, kernel_size: 2, n_layers: 8, n_stacks: 1 }
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

    /// Registers the parameters in reference order.
    pub fn new(cfg: &WaveNetConfig, vocab_size: usize, store: &mut ParamStore, _buffers: &mut Buffers, slots: &mut usize, rng: &mut impl Rng) -> Self {
        let (r, dc, s, k) = (cfg.residual_channels, cfg.dilation_channels, cfg.skip_channels, cfg.kernel_size);
        let embedding = Embedding::new(store, "embedding", vocab_size, r, rng);
        let dilations = Self::dilations(cfg);
        let blocks = dilations
            .iter()
            .enumerate()
            .map(|(j, &d)| {
                let p = format!("blocks.{j}");
                let filter = CausalConv1d::new(store, &format!("{p}.filter"), r, dc, k, d, true, slots, rng);
                let gate = CausalConv1d::new(store, &format!("{p}.gate"), r, dc, k, d, true, slots, rng);
                let last = j + 1 == dilations.len();
                let residual = (!last).then(|| Linear::new(store, &format!("{p}.residual"), dc, r, rng));
                let skip = Linear::new(store, &format!("{p}.skip"), dc, s, rng);
                Block { filter, gate, residual, skip }
            })
            .collect();
        let post = Linear::new(store, "post", s, s, rng);
        let head = Linear::new(store, "head", s, vocab_size, rng);
        WaveNet { cfg: cfg.clone(), embedding, blocks, post, head }
    }

    /// Logits (B, T, V).
    pub fn forward<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, T, R)
        let mut skips: Option<B::Value> = None;
        for block in &self.blocks {
            let f = b.causal_conv(&block.filter, &h)?; // (B, T, D)
            let f = b.activation(&f, Activation::Tanh);
            let g = b.causal_conv(&block.gate, &h)?; // (B, T, D)
            let g = b.activation(&g, Activation::Sigmoid);
            let z = b.mul(&f, &g)?; // (B, T, D)
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
        let skips = match skips {
            Some(s) => s,
            None => return Err(crate::error::Error::config("n_layers", "a WaveNet needs at least one block")),
        };
        let x = b.activation(&skips, Activation::Relu);
        let x = b.linear(&self.post, &x)?; // (B, T, S)
        let x = b.activation(&x, Activation::Relu);
        b.linear(&self.head, &x) // (B, T, V)
    }

    /// 1 + (k - 1) · Σ dilations over all stacks.
    pub fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size - 1) * Self::dilations(&self.cfg).iter().sum::<usize>()
    }
}
