//! Layer 6: runs — configuration, data preparation, the training loop, evaluation,
//! sampling and the run directory.

pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod events;
pub mod flags;
pub mod memory;
pub mod metrics;
mod milestones;
pub mod ownership;
pub mod plots;
pub mod prepare;
mod ranks;
mod same_data;
pub mod samples;
mod session;
pub mod step;
pub mod trained;
pub mod trainer;

pub use checkpoint::RunDir;
pub use config::{DataConfig, RunConfig, TokenizerKind, TrainConfig};
pub use eval::{evaluate, evaluate_in, EvalReport};
pub use events::{CancelToken, OnEvent, TrainEvent};
pub use flags::TrainFlags;
pub use session::ResumeOptions;
pub use trainer::{resume, train, StepReport, TrainOptions, TrainSummary, Trainer};
