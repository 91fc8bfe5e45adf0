//! Layer 6: sampling text (and grids) from a trained model.
//!
//! Sequence families generate with [`generate`]: every sample is fed token by token through
//! [`Model::step`], whose per-layer ring buffers make one new token cost O(layers) instead of
//! O(T · layers) (Paine et al. 2016, "Fast Wavenet Generation"). [`generate_naive`] re-runs the
//! full forward pass over the sequence so far for every new token; it exists as the reference
//! the cached path is tested and benchmarked against ([`bench_generation`]), and returns
//! exactly the same tokens for the same seed. PixelCNN grids use [`generate_grid`].
//!
//! Randomness: sample `i` of a request draws from its own ChaCha8 stream (`seed`, stream `i`),
//! one uniform number per sampled token, so the text depends only on the seed, the model and
//! the prompt — not on the thread count, the batch composition or the code path.

mod bench;
mod grid;
mod sampling;
mod sequence;

use crate::cancel::CancelToken;

pub use bench::{bench_generation, GenerationBench};
pub use grid::{generate_grid, generate_grid_on};
pub use sampling::{argmax, sample_token, SamplingConfig};
pub use sequence::{generate, generate_naive, generate_on};

/// Where generation runs.
#[derive(Clone, Copy, Debug, Default)]
pub enum Engine<'a> {
    /// The CPU engine, reading the model's own parameters.
    #[default]
    Cpu,
    /// A GPU holding the model's parameters (uploaded from the same model).
    #[cfg(feature = "gpu")]
    Gpu(&'a crate::nn::device::DeviceParams),
    /// Keeps the lifetime in a build without GPU support; cannot be made (uninhabited).
    #[cfg(not(feature = "gpu"))]
    #[doc(hidden)]
    NoGpu(std::convert::Infallible, std::marker::PhantomData<&'a ()>),
}

/// What to generate: one sample per prompt.
#[derive(Clone, Debug)]
pub struct GenerateRequest<'a> {
    /// One prompt per sample, consumed before sampling starts; the caller puts `<bos>` first.
    /// Prompts may have different lengths but none may be empty.
    pub prompts: Vec<Vec<u32>>,
    /// Token that ends a sample (`<eos>`); it is not included in the output.
    pub stop: Option<u32>,
    /// Temperature, top-k/top-p, maximum length and seed.
    pub sampling: &'a SamplingConfig,
    /// Ids that are never sampled (e.g. `<pad>`, `<bos>`, `<unk>`): their logits are set to -inf.
    pub banned: Vec<u32>,
    /// Stops generation between tokens with [`Error::Cancelled`](crate::Error::Cancelled).
    pub cancel: Option<CancelToken>,
}
