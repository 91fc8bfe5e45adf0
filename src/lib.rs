//! convlm: train, evaluate and sample convolutional language models on the CPU.
//!
//! Layers, each depending only on those above it: [`tensor`] (tensors, autograd, kernels),
//! [`nn`] (layers and backends), [`models`] (the eight families), `data` (tokenizers and
//! datasets), [`optim`] (optimizers, schedules), and the run-level modules.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod bench;
pub mod cancel;
pub mod data;
pub mod dist;
pub mod error;
pub mod generate;
pub mod io;
pub mod models;
pub mod nn;
pub mod optim;
pub mod report;
pub mod run;
pub mod tensor;

pub use cancel::CancelToken;
pub use error::{Error, Result};
pub use tensor::Tensor;
