//! The data layer, in two rooms:
//!
//! * `tokenize` — text to ids. Tokenizers ([`Tokenizer`]): characters ([`CharTokenizer`]) or
//!   byte-level BPE ([`BpeTokenizer`], trained with the `tokenizers` crate by [`train_bpe`]).
//!   Both carry the four named special tokens of [`SPECIAL_TOKEN_NAMES`] in their
//!   vocabulary; every other module asks the tokenizer for their ids
//!   ([`Tokenizer::specials`]) — no id is hard-coded. Text of any length is encoded by an
//!   [`Encoder`] (BPE through the [`BulkEncoder`]).
//! * `corpus` — storing and serving ids. Corpora: [`read_corpus`] (a file or a folder,
//!   validated and CRLF-normalized), [`builtin_corpus`] (an English word list compiled into
//!   the binary) and [`prepare`] (a corpus of any size into a prepared-corpus folder, opened
//!   by [`open_corpus`] as a [`TokenStore`]). Datasets ([`Dataset`]): one example per
//!   line, a continuous stream cut into windows, or 2-D grids; split by a seed ([`Splits`])
//!   and batched so that every position of a sequence is trained in one step ([`Batch`]).
//!
//! `corpus` builds on `tokenize`, never the other way round, and neither goes through this
//! file, which only publishes both (tests/layering.rs checks it).
//!
//! Everything random takes an explicit seed or generator and draws from it with
//! platform-independent integer arithmetic, so a run is reproducible on any machine.

mod corpus;
mod tokenize;

pub use corpus::*;
pub use tokenize::*;

/// Target value of positions that must not contribute to the loss (padding); the same
/// constant the loss in `tensor` ignores.
pub use crate::tensor::IGNORE_INDEX;
