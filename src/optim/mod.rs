//! Layer 5: optimizers (SGD with momentum, Adam, AdamW), learning-rate schedules and
//! gradient clipping, all following PyTorch's definitions and rounding.
//!
//! Weight decay applies only to parameters with [`Param::decay`](crate::nn::Param::decay)
//! set (conv/linear weights, not embeddings, biases or norms — the reference
//! `adamw_groups` rule), for every optimizer kind: L2 (`grad += wd * p`) for SGD and Adam,
//! decoupled (`p *= 1 - lr * wd`) for AdamW.

mod clip;
mod config;
#[cfg(feature = "gpu")]
pub mod device;
mod kernels;
mod optimizer;
mod schedule;

pub use clip::{clip_grad_norm, first_non_finite, grad_norm};
pub use config::{OptimizerConfig, OptimizerKind};
pub use optimizer::Optimizer;
pub use schedule::{Schedule, ScheduleConfig};
