//! The GPU device (feature `gpu`): adapters, device memory, WGSL kernels and [`GpuGraph`],
//! the tape that is the sibling of [`Graph`](crate::tensor::Graph) with the same ops and
//! backward rules, its values and gradients kept in device memory (docs/gpu.md).
//!
//! Runs on whatever wgpu finds: Vulkan (NVIDIA, AMD, Intel, Mesa's lavapipe on the CPU),
//! Metal, DX12. The Vulkan loader is opened at run time, so a machine without it still runs
//! the CPU engine; asking for the GPU there is an error saying what to install.

mod adapters;
mod graph;
pub(crate) mod launch;
mod ops;
mod pool;
mod runtime;
mod shaders;
mod tensor;

pub use adapters::{list_adapters, AdapterInfo, AdapterKind};
pub use graph::GpuGraph;
pub use pool::{pool_usage, trim_pool};
pub use runtime::{GpuDevice, Traffic};
pub use tensor::{GpuIndex, GpuTensor};
