//! Layer 2: layers owning named parameters (PyTorch state_dict names and layouts), the
//! builder that registers them, and the two backends a model forward runs on.

pub mod backend;
pub mod builder;
#[cfg(feature = "gpu")]
pub mod device;
mod gemv;
pub mod layers;
pub mod long_conv;
pub mod params;
pub mod step;

pub use backend::{Backend, GraphBackend};
pub use builder::{Built, Cost, Init, LayerInfo, LayerKind, ModelBuilder, Plan};
pub use layers::{BatchNorm1d, CausalConv1d, Embedding, Head, LayerNorm, Linear, MaskedConv2d};
pub use long_conv::{LongConv, LongConvSpec, LongConvState};
pub use params::{Buffers, Param, ParamId, ParamStore};
pub use step::{StepBackend, StepState};
