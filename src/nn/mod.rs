//! Layer 2: modules owning named parameters (PyTorch state_dict names and layouts).

pub mod params;

pub use params::{Param, ParamId, ParamStore};
