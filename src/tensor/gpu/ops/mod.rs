//! The ops of [`GpuGraph`](super::GpuGraph), one file per group as in `tensor::ops`: each
//! records its forward kernels and a backward rule that records the gradient kernels.

mod conv;
mod elementwise;
mod linear;
mod long_conv;
mod loss;
mod norm;
mod shape;
