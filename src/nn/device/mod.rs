//! The GPU side of layer 2 (feature `gpu`): a model's parameters, gradients and BatchNorm
//! statistics in device memory ([`DeviceParams`]), and [`GpuBackend`], the sibling of
//! [`GraphBackend`](crate::nn::GraphBackend) that records a family's forward on a
//! [`GpuGraph`](crate::tensor::gpu::GpuGraph) — so every family trains on the GPU with the
//! forward it already wrote.

mod backend;
mod params;
mod step;

pub use backend::GpuBackend;
pub use params::DeviceParams;
pub use step::{GpuStepBackend, GpuStepState};
