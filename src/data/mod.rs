//! The data layer: tokenizers, corpora, datasets, splits and batching.
//!
//! * Tokenizers ([`Tokenizer`]): characters ([`CharTokenizer`]) or byte-level BPE
//!   ([`BpeTokenizer`], trained with the `tokenizers` crate by [`train_bpe`]). Both carry the
//!   four named special tokens of [`SPECIAL_TOKEN_NAMES`] in their vocabulary; every other
//!   module asks the tokenizer for their ids ([`Tokenizer::specials`]) — no id is hard-coded.
//! * Corpora: [`read_corpus`] (a file or a folder, validated and CRLF-normalized) and
//!   [`builtin_corpus`] (an English word list compiled into the binary).
//! * Datasets ([`Dataset`]): one example per line, a continuous stream cut into windows, or
//!   2-D grids; split by a seed ([`Splits`]) and batched so that every position of a sequence
//!   is trained in one step ([`Batch`]).
//!
//! Everything random takes an explicit seed or generator and draws from it with
//! platform-independent integer arithmetic, so a run is reproducible on any machine.

mod batch;
mod bpe;
mod bulk_encode;
mod char_tokenizer;
mod construct;
mod corpus;
mod corpus_file;
mod corpus_names;
mod dataset;
mod encode;
mod normalize;
mod prepare;
mod reader;
mod source;
mod split;
mod store;
mod tokenizer;

pub use batch::Batch;
pub use bpe::BpeTokenizer;
pub use bulk_encode::{BulkEncoder, DEFAULT_CACHE_BYTES};
pub use char_tokenizer::{CharTokenizer, UnknownPolicy};
pub use construct::Layout;
pub use corpus::{builtin_corpus, read_corpus, read_corpus_with};
pub use corpus_file::{is_corpus, open_corpus, CorpusMeta, CorpusWriter, Dtype};
pub use corpus_names::{corpus_state, holds_only_corpus_files, CorpusState, CORPUS_META, CORPUS_TOKENIZER, DOCS_FILE, TOKENS_FILE};
pub use dataset::{Dataset, DatasetKind, LineOptions};
pub use encode::{Encoder, LineEncoder, LineRules, MemorySink, TokenSink};
pub use normalize::Normalization;
pub use prepare::{prepare, PrepareOptions, PrepareProgress, Source, TokenizerSpec};
pub use source::{fingerprint_files, list_sources, FileFingerprint, SourceFile, SourceFingerprint, SourceOptions};
pub use split::{Split, SplitMode, Splits};
pub use store::{ids_hash, TokenStore};
pub use tokenizer::{train_bpe, train_bpe_from_path, Tokenizer};

/// Target value of positions that must not contribute to the loss (padding); the same
/// constant the loss in `tensor` ignores.
pub use crate::tensor::IGNORE_INDEX;

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
