//! Layer 2: layers owning named parameters (PyTorch state_dict names and layouts), and the
//! two backends a model forward runs on.

pub mod backend;
mod gemv;
pub mod layers;
pub mod params;
pub mod step;

pub use backend::{Backend, GraphBackend};
pub use layers::{BatchNorm1d, Buffers, CausalConv1d, Embedding, Linear, MaskedConv2d};
pub use params::{Param, ParamId, ParamStore};
pub use step::{StepBackend, StepState};
