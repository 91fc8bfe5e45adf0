//! Layer 1: f32 tensors, a tape autograd over a fixed set of ops, and the CPU kernels.

pub mod kernels;
mod tensor;
pub mod threads;

pub use tensor::Tensor;
