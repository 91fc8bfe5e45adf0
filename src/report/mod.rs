//! Pictures of a run as SVG text, written by hand (no plotting crate): loss curves from
//! metrics records and a 2-D PCA view of token embeddings. This module only draws; the run
//! layer (`run::plots`) reads a run directory and writes the files.

mod embeddings;
mod loss;
mod pca;
pub mod svg;

pub use embeddings::{embeddings_svg, visible_token, MAX_LABELS};
pub use loss::{ema, ema_beta, loss_curves_svg, series, NO_RECORDS};
pub use pca::{embedding_pca, pca2, Pca2};
