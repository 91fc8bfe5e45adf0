//! PixelCNN (van den Oord et al. 2016): masked 2-D convs over a token grid.

use serde::{Deserialize, Serialize};

use super::{is_zero, require_positive, require_probability, Family, Input};
use crate::error::{Error, Result};
use crate::nn::{Backend, Embedding, Head, Linear, MaskedConv2d, ModelBuilder};
use crate::tensor::{Activation, MaskType};

/// Configuration of the `pixelcnn` family (reference/models.py `PixelCNN`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PixelCnnConfig {
    /// Embedding width.
    pub n_embd: usize,
    /// Hidden channels.
    pub channels: usize,
    /// Odd square kernel size.
    pub kernel_size: usize,
    /// Number of masked convs (mask A first, B after).
    pub n_layers: usize,
    /// Dropout probability while training (0: none), after every hidden activation.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

impl Default for PixelCnnConfig {
    fn default() -> Self {
        PixelCnnConfig { n_embd: 16, channels: 32, kernel_size: 5, n_layers: 4, dropout: 0.0 }
    }
}

/// Embedding → masked convs with ReLU → linear head, over (B, H, W) grids.
#[derive(Clone, Debug)]
pub struct PixelCnn {
    cfg: PixelCnnConfig,
    embedding: Embedding,
    convs: Vec<MaskedConv2d>,
    head: Linear,
}

impl Family for PixelCnn {
    const NAME: &'static str = "pixelcnn";
    const ABOUT: &'static str = "PixelCNN (van den Oord et al. 2016): masked 2-D convs over a token grid";
    const INPUT: Input = Input::Grid;
    type Config = PixelCnnConfig;

    fn validate(cfg: &PixelCnnConfig) -> Result<()> {
        require_probability("dropout", cfg.dropout)?;
        require_positive(&[("n_embd", cfg.n_embd), ("channels", cfg.channels), ("kernel_size", cfg.kernel_size)])?;
        if cfg.kernel_size.is_multiple_of(2) || cfg.kernel_size < 3 {
            // k = 1 would make the mask-A layer all zeros: the model would see nothing.
            return Err(Error::config("kernel_size", format!("{} must be odd and at least 3 for a PixelCNN", cfg.kernel_size)));
        }
        if cfg.n_layers == 0 {
            // Without a mask-A layer the head would read the embedding of the cell it predicts.
            return Err(Error::config("n_layers", "a PixelCNN needs at least one masked conv (mask A hides the predicted cell)"));
        }
        Ok(())
    }

    /// Registers the parameters in reference order.
    fn build(cfg: &PixelCnnConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let embedding = Embedding::new(b, "embedding", vocab_size, cfg.n_embd)?;
        let convs = (0..cfg.n_layers)
            .map(|i| {
                let cin = if i == 0 { cfg.n_embd } else { cfg.channels };
                let mask = if i == 0 { MaskType::A } else { MaskType::B };
                MaskedConv2d::new(b, &format!("convs.{i}"), cin, cfg.channels, cfg.kernel_size, mask)
            })
            .collect::<Result<_>>()?;
        let head = Linear::new(b, "head", cfg.channels, vocab_size)?;
        Ok(PixelCnn { cfg: cfg.clone(), embedding, convs, head })
    }

    /// Features (B, H, W, C) for a grid of the backend's shape (B, H, W).
    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let mut h = b.embedding(&self.embedding, ids)?; // (B, H, W, E)
        for conv in &self.convs {
            let z = b.masked_conv2d(conv, &h)?; // (B, H, W, C)
            let z = b.activation(&z, Activation::Relu)?;
            h = b.dropout(&z, self.cfg.dropout)?;
        }
        Ok(h)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head) // (B, H, W, V)
    }

    /// Rows of context, the current row included: a prediction at (i, j) can depend on cells
    /// of rows i - (k/2)·n_layers ..= i (each masked layer reaches k/2 rows further up), so
    /// this is 1 + (k/2)·n_layers. On its own row it sees the (k/2)·n_layers cells to its left;
    /// the cell itself and everything after it in raster order are invisible (mask A, then B).
    fn receptive_field(&self) -> usize {
        1 + (self.cfg.kernel_size / 2) * self.cfg.n_layers
    }
}
