//! Text to token ids, the one way every corpus is tokenized: [`Encoder`] encodes a text of any
//! length, directly for characters and through the bulk encoder for BPE, a long stream in
//! parallel chunks cut where the tokenizer allows. The corpus room cuts a corpus's text into
//! documents with it (`corpus/documents.rs`).

use rayon::prelude::*;

use super::bulk_encode::BulkEncoder;
use super::tokenizer::Tokenizer;
use crate::Result;

/// Encodes with a tokenizer: character tokenizers directly, BPE through the bulk encoder
/// (the same ids as `Tokenizer::encode`, many times faster).
pub struct Encoder<'a> {
    tokenizer: &'a Tokenizer,
    bulk: Option<BulkEncoder<'a>>,
}

impl<'a> Encoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Result<Self> {
        let bulk = match tokenizer {
            Tokenizer::Bpe(b) => Some(BulkEncoder::new(b)?),
            Tokenizer::Char(_) => None,
        };
        Ok(Encoder { tokenizer, bulk })
    }

    /// The ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.bulk {
            Some(b) => b.encode(text),
            None => self.tokenizer.encode(text),
        }
    }

    /// The ids of a long stream text, in parallel chunks cut where the tokenizer allows
    /// (ids equal to encoding the text whole).
    pub fn encode_stream(&self, text: &str) -> Result<Vec<u32>> {
        match &self.bulk {
            Some(b) => b.encode_parallel(text),
            None => {
                // Characters are encoded one by one: any line boundary is a safe cut.
                let pieces = split_after_newlines(text, 1 << 20);
                let parts: Vec<Vec<u32>> = pieces.par_iter().map(|p| self.tokenizer.encode(p)).collect::<Result<_>>()?;
                Ok(parts.concat())
            }
        }
    }

    /// Where a stream text may be cut at or after byte `near` so that encoding the pieces
    /// equals encoding it whole; `None` when no such place is known.
    pub fn split_point(&self, text: &str, near: usize) -> Option<usize> {
        match &self.bulk {
            Some(b) => b.split_point(text, near),
            None => text.get(near..)?.find('\n').map(|i| near + i + 1),
        }
    }
}

/// `text` in pieces of about `target` bytes, each ending after a newline (the last may not).
pub(crate) fn split_after_newlines(text: &str, target: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > target {
        let Some(cut) = rest[target..].find('\n').map(|i| target + i + 1) else { break };
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}
