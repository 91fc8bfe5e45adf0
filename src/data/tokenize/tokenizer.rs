//! The tokenizer used by the rest of convlm: characters or BPE, one file format each.

use std::path::Path;

use super::bpe::BpeTokenizer;
use super::char_tokenizer::{CharTokenizer, CHAR_TYPE};
use super::normalize::Normalization;
use super::SpecialTokens;
use crate::{Error, Result};

/// A character or BPE tokenizer; both carry the named special tokens of
/// [`super::SPECIAL_TOKEN_NAMES`].
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// One id per character ([`CharTokenizer`]).
    Char(CharTokenizer),
    /// A `tokenizers`-crate tokenizer, byte-level BPE when trained by convlm ([`BpeTokenizer`]).
    Bpe(BpeTokenizer),
}

impl Tokenizer {
    /// Number of ids a model's embedding and output layer must cover.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char(t) => t.vocab_size(),
            Tokenizer::Bpe(t) => t.vocab_size(),
        }
    }

    /// Ids of `<pad>`, `<bos>`, `<eos>` and `<unk>`.
    pub fn specials(&self) -> SpecialTokens {
        match self {
            Tokenizer::Char(t) => t.specials(),
            Tokenizer::Bpe(t) => t.specials(),
        }
    }

    /// Normalizes and encodes `text`; no special tokens are added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Char(t) => t.encode(text),
            Tokenizer::Bpe(t) => t.encode(text),
        }
    }

    /// Decodes `ids` to text, skipping the special tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Char(t) => t.decode(ids),
            Tokenizer::Bpe(t) => t.decode(ids),
        }
    }

    /// The text of one token, for plots and debugging.
    pub fn token_text(&self, id: u32) -> String {
        match self {
            Tokenizer::Char(t) => t.token_text(id),
            Tokenizer::Bpe(t) => t.token_text(id),
        }
    }

    /// The content of `tokenizer.json`: convlm's character format (`"type": "char"`, see
    /// [`CharTokenizer`]) or the `tokenizers` crate's format.
    pub fn to_json(&self) -> Result<String> {
        match self {
            Tokenizer::Char(t) => t.to_json(),
            Tokenizer::Bpe(t) => t.to_json(),
        }
    }

    /// Parses either format: a top-level `"type": "char"` means a character tokenizer,
    /// anything else is read as a `tokenizers` file. Errors name `source`.
    pub fn from_json(text: &str, source: &Path) -> Result<Tokenizer> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::bad_file(source, format!("tokenizer file is not valid JSON: {e}")))?;
        if value.get("type").and_then(|t| t.as_str()) == Some(CHAR_TYPE) {
            Ok(Tokenizer::Char(CharTokenizer::from_json(text, source)?))
        } else {
            Ok(Tokenizer::Bpe(BpeTokenizer::from_json(text, source)?))
        }
    }

    /// Reads and parses a tokenizer file (either format).
    pub fn load(path: &Path) -> Result<Tokenizer> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Writes [`Tokenizer::to_json`] to `path` atomically (a temporary file in the same folder,
    /// then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::atomic_write(path, self.to_json()?.as_bytes())
    }
}

/// Trains a byte-level BPE tokenizer on `texts` ([`BpeTokenizer::train`]).
pub fn train_bpe<S: AsRef<str> + Sync>(texts: &[S], vocab_size: usize, normalization: Normalization) -> Result<Tokenizer> {
    Ok(Tokenizer::Bpe(BpeTokenizer::train(texts, vocab_size, normalization)?))
}
