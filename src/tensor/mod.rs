//! Layer 1: f32 tensors, a tape autograd over a fixed set of ops, and the CPU kernels.
//!
//! The layers above use what this module re-exports (the [`Graph`] ops, [`Tensor`], the
//! convolution specs, [`matmul`]); [`kernels`] is public for the engine's own benchmarks and
//! tests, not for the other layers.

pub mod cpu;
mod dense;
mod device;
#[cfg(feature = "gpu")]
pub mod gpu;
mod graph;
pub mod kernels;
pub mod memory;
pub(crate) mod ops;
pub mod peak;
mod precision;
pub mod profile;
pub mod threads;
pub mod tune;

pub use dense::{all_finite, Tensor};
pub use device::Device;
pub use graph::{Graph, ParamHook, Var};
pub use kernels::conv1d::{conv_output_len, Conv1dSpec, Padding};
pub use kernels::conv2d_masked::{MaskType, MaskedConv2dSpec};
pub use kernels::conv_transpose1d::{conv_transpose_output_len, ConvTranspose1dSpec};
pub use kernels::matmul::{matmul, Gemm, Mat, Par};
pub use kernels::softmax::exp_nonpos;
pub use ops::activation::{sigmoid, Activation};
pub(crate) use ops::linear::add_bias_rows;
pub use ops::loss::{log_softmax_row, IGNORE_INDEX};
pub use ops::mlp::Dense;
pub(crate) use ops::norm::layernorm_row;
pub use ops::norm::BatchStats;
pub use precision::Precision;
