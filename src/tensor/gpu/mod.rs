//! The GPU device (feature `gpu`): adapters, device memory, WGSL kernels and [`GpuGraph`],
//! the tape that is the sibling of [`Graph`](crate::tensor::Graph) with the same ops and
//! backward rules, its values and gradients kept in device memory (docs/gpu.md).
//!
//! Runs on whatever wgpu finds: Vulkan (NVIDIA, AMD, Intel, Mesa's lavapipe on the CPU),
//! Metal, DX12. The Vulkan loader is opened at run time, so a machine without it still runs
//! the CPU engine; asking for the GPU there is an error saying what to install.

mod adapters;
mod free_list;
mod graph;
pub(crate) mod launch;
mod ops;
mod pool;
mod runtime;
mod shaders;
pub mod step;
mod tensor;

pub use adapters::{list_adapters, AdapterInfo, AdapterKind};

/// Runs `f` with the GEMM kernel forced on this thread — `direct` (no workgroup memory, what
/// software adapters run) or tiled (what GPUs run) — so both are checked on any adapter.
pub fn with_gemm_variant<T>(direct: bool, f: impl FnOnce() -> T) -> T {
    launch::gemm::with_variant(direct, f)
}
pub use graph::GpuGraph;
pub use pool::DeviceBuffer;
pub use runtime::{GpuDevice, Traffic};
pub use tensor::{GpuIndex, GpuTensor};
