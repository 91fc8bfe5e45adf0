//! From a [`DataConfig`] to a tokenizer and a split dataset.

use crate::data::{builtin_corpus, read_corpus, train_bpe, CharTokenizer, Dataset, DatasetKind, LineOptions, Tokenizer};
use crate::error::Result;
use crate::run::config::{DataConfig, TokenizerKind};

/// The corpus text: the configured file or folder, or the built-in word list.
pub fn load_text(cfg: &DataConfig) -> Result<String> {
    match &cfg.path {
        Some(path) => read_corpus(path),
        None => Ok(builtin_corpus()),
    }
}

/// Builds the tokenizer a run uses for `text` (characters or a freshly trained BPE).
pub fn build_tokenizer(cfg: &DataConfig, text: &str) -> Result<Tokenizer> {
    Ok(match cfg.tokenizer {
        TokenizerKind::Char if cfg.kind == DatasetKind::Stream => Tokenizer::Char(CharTokenizer::from_corpus(text, cfg.normalization, cfg.unknown)),
        TokenizerKind::Char => Tokenizer::Char(CharTokenizer::from_lines(text, cfg.normalization, cfg.unknown)),
        TokenizerKind::Bpe => train_bpe(&[text], cfg.bpe_vocab_size, cfg.normalization)?,
    })
}

/// Cuts `text` into the configured dataset with `tokenizer`, split by `seed`.
pub fn build_dataset(cfg: &DataConfig, text: &str, tokenizer: &Tokenizer, seed: u64) -> Result<Dataset> {
    match cfg.kind {
        DatasetKind::Lines => {
            let opts = LineOptions { dedupe: cfg.dedupe, max_line_len: cfg.max_line_len, splits: cfg.splits, seed };
            Dataset::lines(text, tokenizer, &opts)
        }
        DatasetKind::Stream => Dataset::stream(text, tokenizer, cfg.block_size, &cfg.splits, seed),
        DatasetKind::Grid => Dataset::grid(text, tokenizer, cfg.grid_width, cfg.grid_height, &cfg.splits, seed),
    }
}
