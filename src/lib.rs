//! convlm: train, evaluate and sample convolutional language models on the CPU.
//!
//! Layers, each depending only on those above it: [`tensor`] (tensors, autograd, kernels),
//! `nn`, `models`, `data`, `optim`, and the run-level modules.

pub mod error;
pub mod generate;
pub mod models;
pub mod nn;
pub mod tensor;

pub use error::{Error, Result};
pub use tensor::Tensor;
