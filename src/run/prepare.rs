//! From a [`DataConfig`] to a tokenizer and a split dataset.

use crate::data::{builtin_corpus, read_corpus_with, train_bpe, CharTokenizer, Dataset, DatasetKind, LineOptions, SourceFingerprint, SourceOptions, Tokenizer};
use crate::error::Result;
use crate::run::config::{DataConfig, TokenizerKind};

/// A corpus in memory with the fingerprint of its files.
pub struct Corpus {
    pub text: String,
    pub fingerprint: SourceFingerprint,
}

/// The corpus: the configured file or folder, or the built-in word list.
pub fn load_corpus(cfg: &DataConfig) -> Result<Corpus> {
    match &cfg.path {
        Some(path) => {
            let opts = SourceOptions { allow_special_files: cfg.allow_special_files, special_file_limit: cfg.special_file_limit };
            let (text, fingerprint) = read_corpus_with(path, &opts)?;
            Ok(Corpus { text, fingerprint })
        }
        None => {
            let text = builtin_corpus();
            let fingerprint = SourceFingerprint::of_text("built-in word list", &text);
            Ok(Corpus { text, fingerprint })
        }
    }
}

/// Builds the tokenizer a run uses for `text` (characters or a freshly trained BPE).
pub fn build_tokenizer(cfg: &DataConfig, text: &str) -> Result<Tokenizer> {
    if let Some(file) = &cfg.tokenizer_file {
        return Tokenizer::load(file);
    }
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
