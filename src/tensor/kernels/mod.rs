//! CPU kernels: plain functions over slices, forward and backward. The autograd layer
//! (`tensor::ops`) wraps them.

pub mod matmul;
