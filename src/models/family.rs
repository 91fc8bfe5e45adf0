//! The [`Family`] trait: what one model family is. A family declares its name and
//! hyper-parameters, registers its layers with a [`ModelBuilder`], and writes its forward
//! once, generic over the [`Backend`] (the tape for training, one cached position for
//! generation). Everything else — configs, checkpoints, training, summaries, generation —
//! works on any family through [`Model`](super::Model).

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Result;
use crate::nn::{Backend, GraphBackend, Head, ModelBuilder, StepBackend};
use crate::tensor::{Tensor, Var};

/// The token layout a family reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Sequences (B, T) → logits (B, T, V); causal, so a cached `step` exists.
    Sequence,
    /// 2-D grids (B, H, W) → logits (B, H, W, V) (PixelCNN); generation recomputes.
    Grid,
}

/// One model family of `reference/models.py`. Adding a family is one file implementing this
/// trait, one line in the registry ([`crate::models::REGISTRY`]) and its golden file.
pub trait Family: Sized + Send + Sync + Debug + 'static {
    /// The name in configs (`"family": "..."`) and on the command line (`--model`).
    const NAME: &'static str;
    /// One line describing the family (for `--help` and docs).
    const ABOUT: &'static str;
    /// The token layout it reads.
    const INPUT: Input = Input::Sequence;

    /// The hyper-parameters: every field has a default and unknown fields are errors
    /// (`#[serde(default, deny_unknown_fields)]`).
    type Config: Clone + Debug + Default + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Rejects configurations that would build an empty or ill-formed network (errors name
    /// the field). Called before anything is built.
    fn validate(config: &Self::Config) -> Result<()>;

    /// Registers the layers, in the parameter order of the reference module, and returns the
    /// network.
    fn build(config: &Self::Config, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self>;

    /// The features the head reads, (B, T, C) (grids: (B, H, W, C)), on any backend.
    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value>;

    /// The output layer: logits = head(body). Training fuses it with the loss.
    fn head(&self) -> Head<'_>;

    /// Tokens each prediction can see (grids: rows of context).
    fn receptive_field(&self) -> usize;

    /// The longest sequence the network accepts, when it has a limit.
    fn max_len(&self) -> Option<usize> {
        None
    }
}

/// A built network behind a pointer: the object-safe face of a [`Family`] that
/// [`Model`](super::Model) holds.
pub(crate) trait Network: Send + Sync + Debug {
    /// Logits on the tape.
    fn logits(&self, b: &mut GraphBackend<'_>, ids: &[u32]) -> Result<Var>;
    /// The mean cross-entropy against `targets` on the tape, the head fused with the loss.
    fn loss(&self, b: &mut GraphBackend<'_>, ids: &[u32], targets: &[i64]) -> Result<Var>;
    /// Next-token logits of one cached position.
    fn step(&self, b: &mut StepBackend<'_>, ids: &[u32]) -> Result<Tensor>;
    /// Logits on a GPU tape.
    #[cfg(feature = "gpu")]
    fn gpu_logits(&self, b: &mut crate::nn::device::GpuBackend<'_>, ids: &[u32]) -> Result<Var>;
    /// The mean cross-entropy on a GPU tape, the head fused with the loss.
    #[cfg(feature = "gpu")]
    fn gpu_loss(&self, b: &mut crate::nn::device::GpuBackend<'_>, ids: &[u32], targets: &[i64]) -> Result<Var>;
    /// Next-token logits of one cached position on a GPU.
    #[cfg(feature = "gpu")]
    fn gpu_step(&self, b: &mut crate::nn::device::GpuStepBackend<'_>, ids: &[u32]) -> Result<Var>;
    fn receptive_field(&self) -> usize;
    fn max_len(&self) -> Option<usize>;
}

impl<F: Family> Network for F {
    fn logits(&self, b: &mut GraphBackend<'_>, ids: &[u32]) -> Result<Var> {
        let h = self.body(b, ids)?;
        b.head(self.head(), &h)
    }

    fn loss(&self, b: &mut GraphBackend<'_>, ids: &[u32], targets: &[i64]) -> Result<Var> {
        let h = self.body(b, ids)?;
        b.head_loss(self.head(), &h, targets)
    }

    fn step(&self, b: &mut StepBackend<'_>, ids: &[u32]) -> Result<Tensor> {
        let h = self.body(b, ids)?;
        b.head(self.head(), &h)
    }

    #[cfg(feature = "gpu")]
    fn gpu_logits(&self, b: &mut crate::nn::device::GpuBackend<'_>, ids: &[u32]) -> Result<Var> {
        let h = self.body(b, ids)?;
        b.head(self.head(), &h)
    }

    #[cfg(feature = "gpu")]
    fn gpu_loss(&self, b: &mut crate::nn::device::GpuBackend<'_>, ids: &[u32], targets: &[i64]) -> Result<Var> {
        let h = self.body(b, ids)?;
        b.head_loss(self.head(), &h, targets)
    }

    #[cfg(feature = "gpu")]
    fn gpu_step(&self, b: &mut crate::nn::device::GpuStepBackend<'_>, ids: &[u32]) -> Result<Var> {
        let h = self.body(b, ids)?;
        b.head(self.head(), &h)
    }

    fn receptive_field(&self) -> usize {
        Family::receptive_field(self)
    }

    fn max_len(&self) -> Option<usize> {
        Family::max_len(self)
    }
}
