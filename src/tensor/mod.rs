//! Layer 1: f32 tensors, a tape autograd over a fixed set of ops, and the CPU kernels.

pub mod cpu;
mod graph;
pub mod kernels;
pub(crate) mod ops;
mod tensor;
pub mod threads;

pub use graph::{Graph, Var};
pub use ops::activation::{sigmoid, Activation};
pub(crate) use ops::linear::add_bias_rows;
pub use ops::loss::{log_softmax_row, IGNORE_INDEX};
pub use ops::norm::BatchStats;
pub use tensor::Tensor;
