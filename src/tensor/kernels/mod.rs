//! CPU kernels: plain functions over slices, forward and backward. The autograd layer
//! (`tensor::ops`) wraps them.

pub mod bf16;
pub mod conv1d;
pub mod conv1d_loss;
pub mod conv2d_masked;
pub mod conv_transpose1d;
mod depthwise;
mod im2col;
pub mod long_conv;
mod mat;
pub mod matmul;
pub(crate) mod pointwise;
#[cfg(target_arch = "x86_64")]
mod sgemm;
pub mod softmax;
pub(crate) mod tap_gemm;
mod window_gemm;
#[cfg(target_arch = "x86_64")]
mod zgemm;
