//! The library's error type: every failure a user can cause is one of these variants.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in convlm, each variant naming what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tensor shapes or op parameters do not fit together (mismatched channels, bad groups…).
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },

    /// Reading or writing a file failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file exists but its contents are not what convlm expects (truncated, corrupted,
    /// another family, wrong vocabulary…).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },

    /// A configuration value is invalid; `field` names the setting or flag.
    #[error("invalid {field}: {msg}")]
    Config { field: String, msg: String },

    /// Training data cannot be used as given.
    #[error("data: {0}")]
    Data(String),

    /// Tokenizer failure (unknown character, bad tokenizer file, library error).
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Training produced a NaN or infinite loss or gradient.
    #[error("training diverged at step {step}: {what} is not finite")]
    NonFinite { step: u64, what: String },

    /// A run directory cannot be used as asked (not a run, already a run, locked by another
    /// process, or its files no longer match the run that wrote them).
    #[error("{}: {msg}", path.display())]
    RunDir { path: PathBuf, msg: String },

    /// The model and its batches would not fit in memory; `msg` shows the estimate and what
    /// is available.
    #[error("not enough memory: {0}")]
    Memory(String),

    /// Training was interrupted (Ctrl-C) after the last checkpoint was saved.
    #[error("interrupted at step {step}; checkpoint saved")]
    Interrupted { step: u64 },

    /// Work other than training was stopped through its [`CancelToken`](crate::CancelToken)
    /// (Ctrl-C) before it wrote anything.
    #[error("interrupted")]
    Cancelled,

    /// Data-parallel training across processes failed: a rank timed out or was stopped
    /// while waiting for the others, MPI reported an error, or the ranks disagree on their
    /// setup.
    #[error("distributed training: {0}")]
    Distributed(String),

    /// The GPU cannot do what was asked: no adapter, an index past the adapters found, an op
    /// without a GPU kernel, a buffer larger than the device allows, a driver error; the
    /// message names the device and what to do.
    #[error("device: {0}")]
    Device(String),

    /// Another rank of a data-parallel run failed, and that rank reports why: this one stops
    /// with it, saying nothing more.
    #[error("another rank failed (it reports the error)")]
    PeerFailed,
}

impl Error {
    /// Shorthand for a [`Error::Shape`] error.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }

    /// Shorthand for an [`Error::Config`] error.
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { field: field.into(), msg: msg.into() }
    }

    /// Shorthand for an [`Error::Io`] error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Shorthand for an [`Error::RunDir`] error.
    pub fn run_dir(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::RunDir { path: path.into(), msg: msg.into() }
    }

    /// Shorthand for an [`Error::Distributed`] error.
    pub fn distributed(msg: impl Into<String>) -> Self {
        Error::Distributed(msg.into())
    }

    /// Shorthand for an [`Error::Device`] error.
    pub fn device(msg: impl Into<String>) -> Self {
        Error::Device(msg.into())
    }

    /// Shorthand for an [`Error::BadFile`] error.
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), msg: msg.into() }
    }
}
