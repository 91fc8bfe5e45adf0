//! Text to token ids, the lower room of the data layer: tokenizers (characters, byte-level BPE)
//! with their named special tokens, normalization, and the [`Encoder`] that turns text of
//! any length into ids (BPE through the bulk encoder). Nothing here knows of corpora,
//! datasets or files other than a tokenizer's own `tokenizer.json`; the corpus room above
//! builds on it.

mod bpe;
mod bulk_encode;
mod char_tokenizer;
mod encode;
mod normalize;
mod tokenizer;

pub use bpe::BpeTokenizer;
pub use bulk_encode::{BulkEncoder, DEFAULT_CACHE_BYTES};
pub use char_tokenizer::{CharTokenizer, UnknownPolicy};
pub use encode::Encoder;
pub use normalize::Normalization;
pub use tokenizer::{train_bpe, Tokenizer};

/// Name of the padding token in every tokenizer vocabulary.
pub const PAD: &str = "<pad>";
/// Name of the beginning-of-sequence token.
pub const BOS: &str = "<bos>";
/// Name of the end-of-sequence token.
pub const EOS: &str = "<eos>";
/// Name of the unknown-character token.
pub const UNK: &str = "<unk>";
/// The four special tokens, in the order new tokenizers give them ids.
pub const SPECIAL_TOKEN_NAMES: [&str; 4] = [PAD, BOS, EOS, UNK];

/// Ids of the special tokens, looked up by name ([`SPECIAL_TOKEN_NAMES`]) in a tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpecialTokens {
    /// `<pad>`: fills batches and grids; its targets are [`IGNORE_INDEX`].
    pub pad: u32,
    /// `<bos>`: starts every line example.
    pub bos: u32,
    /// `<eos>`: ends every line example.
    pub eos: u32,
    /// `<unk>`: stands for characters outside the vocabulary.
    pub unk: u32,
}

impl SpecialTokens {
    /// Looks every special token up by name with `lookup`; the error names the missing ones.
    pub(crate) fn lookup(lookup: impl Fn(&str) -> Option<u32>) -> Result<Self, String> {
        let find = |name: &'static str| lookup(name).ok_or(name);
        match (find(PAD), find(BOS), find(EOS), find(UNK)) {
            (Ok(pad), Ok(bos), Ok(eos), Ok(unk)) => Ok(SpecialTokens { pad, bos, eos, unk }),
            (a, b, c, d) => {
                let missing: Vec<&str> = [a, b, c, d].into_iter().filter_map(|r| r.err()).collect();
                Err(format!("special token(s) {} missing from the vocabulary", missing.join(", ")))
            }
        }
    }

    /// Whether `id` is one of the four special tokens.
    pub fn contains(&self, id: u32) -> bool {
        id == self.pad || id == self.bos || id == self.eos || id == self.unk
    }
}
