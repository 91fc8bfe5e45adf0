//! Layer 3: the model families of reference/models.py behind one [`Family`] trait and one
//! registry ([`REGISTRY`]).
//!
//! [`ModelConfig`] selects the family by name (`"family": "wavenet"` in JSON/TOML); the rest
//! of the program only sees [`Model`]: `forward` and `loss` over a batch, incremental `step`,
//! `receptive_field`, named parameters and buffers. Adding a family is one file implementing
//! [`Family`], one line in [`REGISTRY`] and its golden file (see docs/architecture.md).

mod causal_cnn;
mod config;
mod dilated;
mod family;
mod gated_cnn;
mod hierarchical;
mod hyena;
mod mlp;
mod model;
mod pixelcnn;
mod registry;
pub mod summary;
mod wavenet;

pub use causal_cnn::{CausalCnn, CausalCnnConfig};
pub use config::ModelConfig;
pub use dilated::{Dilated, DilatedConfig};
pub use family::{Family, Input};
pub use gated_cnn::{GatedCnn, GatedCnnConfig};
pub use hierarchical::{Hierarchical, HierarchicalConfig};
pub use hyena::{Hyena, HyenaConfig};
pub use mlp::{Mlp, MlpConfig};
pub use model::Model;
pub use pixelcnn::{PixelCnn, PixelCnnConfig};
pub use registry::{family, find, lookup, names, register, FamilyInfo, FAMILIES, REGISTRY};
pub use wavenet::{WaveNet, WaveNetConfig};

use crate::error::{Error, Result};

/// Errors naming `field` unless `p` is a probability in [0, 1) (a dropout rate).
pub(crate) fn require_probability(field: &str, p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(field, format!("must be in [0, 1), got {p}")))
    }
}

/// Serde's `skip_serializing_if` for a dropout rate: configs without dropout are saved as
/// before the field existed (the same file and fingerprint).
pub(crate) fn is_zero(p: &f32) -> bool {
    *p == 0.0
}

/// Serde's `skip_serializing_if` for an option that is off by default: configs without it are
/// saved as they were before it existed.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// Errors naming `field` unless every given size is at least 1.
pub(crate) fn require_positive(sizes: &[(&str, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, v)| *v == 0) {
        Some((field, _)) => Err(Error::config(*field, "must be at least 1")),
        None => Ok(()),
    }
}
